package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// memStore is a store that keeps everything in memory, no I/O: the baseline
// that shows what a real store adds to a rollout's wall time.
type memStore struct {
	id       string
	mu       sync.Mutex
	hosts    []rollout.Host
	rollouts []*rollout.Rollout
	results  map[int64][]rollout.HostResult
}

func newMemStore(hosts []rollout.Host) *memStore {
	// Each its own name: the fleet is shared by the benchmark's stores,
	// whose rollout numbers start at 1 each.
	return &memStore{id: fmt.Sprintf("mem-%p", &hosts), hosts: hosts, results: map[int64][]rollout.HostResult{}}
}

func (m *memStore) ID() string { return m.id }

func (m *memStore) ActiveHosts(context.Context) ([]rollout.Host, error) {
	return slices.Clone(m.hosts), nil
}

func (m *memStore) CreateRollout(_ context.Context, r *rollout.Rollout, hosts []rollout.Host, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.rollouts {
		if x.Phase.Active() {
			return &rollout.ActiveError{Rollout: x}
		}
	}
	r.ID = int64(len(m.rollouts) + 1)
	r.LeaseUntil, r.Epoch = time.Now().Add(ttl), 1
	cp := *r
	m.rollouts = append(m.rollouts, &cp)
	rs := make([]rollout.HostResult, len(hosts))
	for i, h := range hosts {
		rs[i] = rollout.HostResult{RolloutID: r.ID, Index: i, Host: h, Status: rollout.StatusPending}
	}
	m.results[r.ID] = rs
	return nil
}

func (m *memStore) get(id int64) (*rollout.Rollout, error) {
	if id < 1 || int(id) > len(m.rollouts) {
		return nil, rollout.ErrNotFound
	}
	return m.rollouts[id-1], nil
}

func (m *memStore) Rollout(_ context.Context, id int64) (*rollout.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.get(id)
	if err != nil {
		return nil, err
	}
	cp := *r
	return &cp, nil
}

func (m *memStore) ActiveRollout(context.Context) (*rollout.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rollouts {
		if r.Phase.Active() {
			cp := *r
			return &cp, nil
		}
	}
	return nil, rollout.ErrNotFound
}

func (m *memStore) Rollouts(_ context.Context, limit int) ([]*rollout.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*rollout.Rollout
	for i := len(m.rollouts) - 1; i >= 0 && len(out) < limit; i-- {
		cp := *m.rollouts[i]
		out = append(out, &cp)
	}
	return out, nil
}

func (m *memStore) HostResults(_ context.Context, id int64) ([]rollout.HostResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.results[id]), nil
}

func (m *memStore) SaveHostResults(_ context.Context, owner string, rs []rollout.HostResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, hr := range rs {
		m.results[hr.RolloutID][hr.Index] = hr
	}
	return nil
}

func (m *memStore) UpdateRollout(_ context.Context, owner string, r *rollout.Rollout) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, err := m.get(r.ID)
	if err != nil {
		return err
	}
	cur.Phase, cur.Stage, cur.Segment, cur.WaitUntil, cur.Error = r.Phase, r.Stage, r.Segment, r.WaitUntil, r.Error
	if cur.Halt == nil {
		cur.Halt = r.Halt
	}
	r.Halt = cur.Halt
	cur.FinishedAt, cur.UpdatedAt = r.FinishedAt, r.UpdatedAt
	return nil
}

func (m *memStore) ClaimRollout(_ context.Context, id int64, owner string, ttl time.Duration) (*rollout.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if !r.Phase.Active() {
		return nil, rollout.ErrNotRunning
	}
	if r.Owner != owner {
		r.Epoch++
	}
	r.Owner, r.LeaseUntil = owner, time.Now().Add(ttl)
	cp := *r
	return &cp, nil
}

func (m *memStore) RenewRollout(_ context.Context, id int64, owner string, ttl time.Duration) (*rollout.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.get(id)
	switch {
	case err != nil:
		return nil, err
	case !r.Phase.Active():
		return nil, rollout.ErrNotRunning
	case r.Owner != owner:
		return nil, rollout.ErrLeaseLost
	}
	r.LeaseUntil = time.Now().Add(ttl)
	cp := *r
	return &cp, nil
}

func (m *memStore) ReleaseRollout(_ context.Context, id int64, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, err := m.get(id); err == nil && r.Owner == owner {
		r.Owner = ""
	}
	return nil
}

func (m *memStore) RequestHalt(context.Context, int64, rollout.Halt) (*rollout.Rollout, error) {
	return nil, rollout.ErrNotRunning
}
func (m *memStore) ResumeRollout(context.Context, *rollout.Rollout, time.Duration) error {
	return rollout.ErrNotHalted
}
func (m *memStore) Audit(context.Context, rollout.AuditEntry) error { return nil }
func (m *memStore) StartUndo(context.Context, int64, rollout.Undo, string, time.Duration) (*rollout.Rollout, error) {
	return nil, rollout.ErrNotRunning
}
func (m *memStore) RequestUndo(context.Context, int64, rollout.Undo) (*rollout.Rollout, error) {
	return nil, rollout.ErrNotRunning
}
func (m *memStore) RequestPromote(context.Context, int64, rollout.Promote) (*rollout.Rollout, error) {
	return nil, rollout.ErrNotGated
}

// counting wraps a store and counts the writes a rollout makes.
type counting struct {
	rollout.Store
	txns, rows atomic.Int64
}

func (c *counting) SaveHostResults(ctx context.Context, owner string, rs []rollout.HostResult) error {
	c.txns.Add(1)
	c.rows.Add(int64(len(rs)))
	return c.Store.SaveHostResults(ctx, owner, rs)
}

func (c *counting) UpdateRollout(ctx context.Context, owner string, r *rollout.Rollout) error {
	c.txns.Add(1)
	c.rows.Add(1)
	return c.Store.UpdateRollout(ctx, owner, r)
}
