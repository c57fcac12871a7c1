package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// fleet is a hand-written fake of the hosts, backed by real state: versions,
// scripted failures, gates that hold a host's update until the test lets it
// go, and counters for what was done to each host.
type fleet struct {
	watched      // mu guards the rest; every change signals
	version      map[string]string
	initial      map[string]string
	behavior     map[string]string        // "", "update-fails", "health-fails", "rollback-fails", "unreachable", "drop"
	gates        map[string]chan struct{} // hold an update
	vgates       map[string]chan struct{} // hold the version read
	versionsRead int                      // version reads answered
	updates      map[string]int
	last         map[string]rollout.LastCommand // each host's record of its last update or rollback
	rollbacks    map[string]int                 // rollback commands per host
	rolledBack   []string                       // hosts in the order their rollback began
	rbgates      map[string]chan struct{}       // hold a rollback
	started      []string                       // hosts in the order their update began
	connected    int                            // connections open now
	maxConn      int
	healthRun    int
	slowChecks   int // health checks of health-slow-fails hosts
	versionReads int
}

func newFleet() *fleet {
	return &fleet{version: map[string]string{}, initial: map[string]string{},
		behavior: map[string]string{}, gates: map[string]chan struct{}{}, vgates: map[string]chan struct{}{}, updates: map[string]int{},
		last: map[string]rollout.LastCommand{}, rollbacks: map[string]int{}, rbgates: map[string]chan struct{}{}}
}

// watched is state that mu guards and tests wait on: each change signals,
// closing the channel the waiters hold and making a new one.
type watched struct {
	mu      sync.Mutex
	changed chan struct{}
}

// signal wakes the waiters; mu is held.
func (w *watched) signal() {
	if w.changed != nil {
		close(w.changed)
	}
	w.changed = make(chan struct{})
}

// waitUntil waits until cond holds under mu, woken by each change, for at
// most limit; then it fails t with failure.
func (w *watched) waitUntil(t *testing.T, limit time.Duration, cond func() bool, failure string) {
	t.Helper()
	deadline := time.After(limit)
	for {
		w.mu.Lock()
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal(failure)
		}
	}
}

// waitFor polls cond under the lock each time the fleet changes, for at most 10 s.
func (f *fleet) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	f.waitUntil(t, 10*time.Second, cond, "timed out waiting for "+what)
}

// gate makes host id's update wait for release.
func (f *fleet) gate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gates[id] = make(chan struct{})
}

func (f *fleet) release(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g, ok := f.gates[id]; ok {
		close(g)
		delete(f.gates, id)
	}
}

func (f *fleet) Connect(ctx context.Context, h rollout.Host, fence rollout.Fence) (rollout.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.behavior[h.ID] == "unreachable" {
		return nil, fmt.Errorf("ssh dial %s: connection refused", h.Addr())
	}
	f.connected++
	f.maxConn = max(f.maxConn, f.connected)
	f.signal()
	return &fakeConn{f: f, id: h.ID, fence: fence}, nil
}

type fakeConn struct {
	f      *fleet
	id     string
	fence  rollout.Fence
	closed bool
	lost   bool
	read   string // the version the last Version read found
}

// pass waits for gate g to open, if there is one.
func pass(ctx context.Context, g chan struct{}) error {
	if g == nil {
		return nil
	}
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *fakeConn) Version(ctx context.Context) (rollout.HostState, error) {
	c.f.mu.Lock()
	g := c.f.vgates[c.id]
	c.f.versionReads++
	c.f.signal()
	c.f.mu.Unlock()
	if err := pass(ctx, g); err != nil {
		return rollout.HostState{}, err
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.versionsRead++
	c.f.signal()
	c.read = c.f.version[c.id]
	return rollout.HostState{Version: c.f.version[c.id], Last: c.f.last[c.id]}, nil
}

// record keeps the host's record of an update or rollback, as a host does.
func (c *fakeConn) record(step rollout.Step, finished bool, exit int) {
	l := rollout.LastCommand{Fence: c.fence, Step: step, Finished: finished, Exit: exit}
	if step == rollout.StepUpdate {
		l.From = c.read
	}
	c.f.last[c.id] = l
}

func (c *fakeConn) Update(ctx context.Context, v string) (string, error) {
	c.f.mu.Lock()
	c.f.updates[c.id]++
	c.f.started = append(c.f.started, c.id)
	c.record(rollout.StepUpdate, false, 0)
	g := c.f.gates[c.id]
	c.f.signal()
	c.f.mu.Unlock()
	if err := pass(ctx, g); err != nil {
		return "", err
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.signal()
	switch c.f.behavior[c.id] {
	case "update-fails":
		c.record(rollout.StepUpdate, true, 1)
		return "E: disk full\n", errors.New("exit status 1")
	case "drop":
		c.f.version[c.id] = v
		c.record(rollout.StepUpdate, true, 0)
		c.lost = true
		return "", fmt.Errorf("update: %w", rollout.ErrConnLost)
	}
	c.f.version[c.id] = v
	c.record(rollout.StepUpdate, true, 0)
	return "updated\n", nil
}

func (c *fakeConn) Health(ctx context.Context) (string, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.lost {
		return "", rollout.ErrConnLost
	}
	c.f.healthRun++
	if c.f.behavior[c.id] == "health-slow-fails" && c.f.version[c.id] != c.f.initial[c.id] {
		// The first check says "unhealthy" at once; the next ones answer
		// nothing until they are cut off.
		c.f.slowChecks++
		if c.f.slowChecks == 1 {
			return "unhealthy: port 443 closed\n", errors.New("exit status 1")
		}
		c.f.mu.Unlock()
		<-ctx.Done()
		c.f.mu.Lock()
		return "", ctx.Err()
	}
	if c.f.behavior[c.id] == "health-hangs" && c.f.version[c.id] != c.f.initial[c.id] {
		// The check never answers on the new version; only ctx ends it.
		c.f.mu.Unlock()
		<-ctx.Done()
		c.f.mu.Lock()
		return "", ctx.Err()
	}
	switch c.f.behavior[c.id] {
	case "health-fails", "rollback-fails", "drop":
		if c.f.version[c.id] != c.f.initial[c.id] {
			return "unhealthy\n", errors.New("exit status 1")
		}
	}
	return "", nil
}

func (c *fakeConn) Rollback(ctx context.Context, v string) (string, error) {
	c.f.mu.Lock()
	if c.lost {
		c.f.mu.Unlock()
		return "", rollout.ErrConnLost
	}
	c.f.rollbacks[c.id]++
	c.f.rolledBack = append(c.f.rolledBack, c.id)
	c.record(rollout.StepRollback, false, 0)
	g := c.f.rbgates[c.id]
	c.f.signal()
	c.f.mu.Unlock()
	if err := pass(ctx, g); err != nil {
		return "", err
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.behavior[c.id] == "rollback-fails" {
		c.record(rollout.StepRollback, true, 2)
		return "rollback: no such version\n", errors.New("exit status 2")
	}
	c.f.version[c.id] = v
	c.record(rollout.StepRollback, true, 0)
	c.f.signal()
	return "", nil
}

func (c *fakeConn) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.f.connected--
		c.f.signal()
	}
	return nil
}

// recorder is a Notifier that keeps every event.
type recorder struct {
	watched
	events []rollout.Event
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) Notify(ev rollout.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	r.signal()
}

func (r *recorder) waitFor(t *testing.T, what string, cond func([]rollout.Event) bool) {
	t.Helper()
	r.waitUntil(t, 10*time.Second, func() bool { return cond(r.events) }, "timed out waiting for "+what)
}

func (r *recorder) kinds(kind rollout.EventKind) []rollout.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rollout.Event
	for _, ev := range r.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func hasEvent(kind rollout.EventKind) func([]rollout.Event) bool {
	return func(evs []rollout.Event) bool {
		for _, ev := range evs {
			if ev.Kind == kind {
				return true
			}
		}
		return false
	}
}

// harness is an engine over a fake fleet and a real SQLite store.
type harness struct {
	t     *testing.T
	db    *store.DB
	fleet *fleet
	rec   *recorder
	eng   *rollout.Engine
	ids   []string
	cfg   rollout.Config
}

func newHarness(t *testing.T, n int, s rollout.Settings) *harness {
	t.Helper()
	return newHarnessOn(t, "sqlite:"+filepath.Join(t.TempDir(), "r.db"), n, s)
}

// newHarnessOn is newHarness on the store dsn names.
func newHarnessOn(t *testing.T, dsn string, n int, s rollout.Settings) *harness {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	f := newFleet()
	var hosts []rollout.Host
	var ids []string
	for i := range n {
		id := fmt.Sprintf("h%03d", i)
		hosts = append(hosts, rollout.Host{ID: id, Address: "192.0.2.1", Port: 2000 + i})
		ids = append(ids, id)
		f.version[id], f.initial[id] = "v1", "v1"
	}
	if err := db.PutHosts(context.Background(), hosts); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, fleet: f, rec: newRecorder(), ids: ids}
	h.cfg = rollout.Config{
		Store: db, Inventory: db, Updater: f, Notifier: h.rec, Defaults: s, Seed: func() int64 { return 7 },
		HealthTimeout: 50 * time.Millisecond, HealthInterval: 10 * time.Millisecond, Owner: "test",
		// No test here waits a lease out (takeovers release it, or take it
		// as the same owner); a short one would only be lost to a loaded
		// machine's stalls (tests that lose a lease set their own).
		PollInterval: 20 * time.Millisecond, LeaseTTL: 15 * time.Second,
	}
	h.eng = rollout.New(h.cfg)
	return h
}

// order is the shuffled host order of a rollout with the harness's seed.
func (h *harness) order() []string {
	hosts, _ := h.db.ActiveHosts(context.Background())
	var out []string
	for _, x := range rollout.Shuffle(hosts, 7) {
		out = append(out, x.ID)
	}
	return out
}

func (h *harness) start(version string) *rollout.Rollout {
	h.t.Helper()
	r, err := h.eng.Start(context.Background(), rollout.StartRequest{Version: version, Actor: "U1", Source: rollout.SourceCLI})
	if err != nil {
		h.t.Fatalf("start: %v", err)
	}
	return r
}

// runAsync drives the rollout in the background; the channel yields its end.
func (h *harness) runAsync(ctx context.Context, id int64) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		r, err := h.eng.Run(ctx, id)
		ch <- runResult{r, err}
	}()
	return ch
}

type runResult struct {
	r   *rollout.Rollout
	err error
}

func wait(t *testing.T, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("rollout did not end")
		return runResult{}
	}
}

func (h *harness) results(id int64) map[string]rollout.HostResult {
	h.t.Helper()
	rs, err := h.db.HostResults(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]rollout.HostResult{}
	for _, r := range rs {
		out[r.Host.ID] = r
	}
	return out
}

// fakeClock is a clock the test moves: After fires once the clock reaches
// its time (set, Advance), so a pause, a gate's timeout, a bake or a wait for
// a window ends without waiting, and a test can wait until the engine sleeps
// on it (waitForWaiter).
type fakeClock struct {
	watched // signals when a waiter comes
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{c.now.Add(d), ch})
	c.signal()
	return ch
}

// set moves the clock to t and fires the waiters due by then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// Advance moves the clock on by d and fires the waiters it passed.
func (c *fakeClock) Advance(d time.Duration) { c.set(c.Now().Add(d)) }

// waitForWaiter waits until something waits on the clock until at least
// the clock's now plus d.
func (c *fakeClock) waitForWaiter(t *testing.T, d time.Duration) {
	t.Helper()
	c.waitUntil(t, 10*time.Second, func() bool {
		for _, w := range c.waiters {
			if !w.at.Before(c.now.Add(d)) {
				return true
			}
		}
		return false
	}, fmt.Sprintf("timed out waiting for a wait of %s on the clock", d))
}
