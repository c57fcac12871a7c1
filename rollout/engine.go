package rollout

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// Config wires an Engine. Store, Inventory and Updater are required.
type Config struct {
	Store     Store
	Inventory Inventory
	Updater   Updater
	Notifier  Notifier
	Logger    *slog.Logger
	Clock     Clock        // nil: real time
	Seed      func() int64 // shuffle seeds; nil: random
	Owner     string       // this process's name in leases; empty: host-pid-random
	// Latest answers the version to roll out when a request names none; nil
	// means a version is always required.
	Latest func(context.Context) (string, error)
	// Calendar holds rollouts to windows and recurring freezes; Freezes
	// keeps the freezes set ad hoc (nil: none can be set).
	Calendar Calendar
	Freezes  FreezeStore

	Defaults       Settings      // for rollouts that do not say otherwise
	HealthTimeout  time.Duration // how long a host may take to pass its health check (default 60s)
	HealthInterval time.Duration // between health attempts (default 2s)
	LeaseTTL       time.Duration // a driver that stops renewing is replaced after this (default 15s)
	PollInterval   time.Duration // how often a driver looks for a halt from another process (default 500ms)
	Grace          time.Duration // on shutdown, how long in-flight hosts may take to finish (default 30s)
	// WriteDelay is how long a host result that nobody waits for yet may stay
	// unwritten, so that results go to the store together (default 50ms).
	WriteDelay time.Duration
	// Checks run after each stage, before the next or, after the last,
	// before the rollout completes; a bad result halts the rollout.
	Checks []Check
	// CheckInterval is how often the checks run during a bake (default 30s).
	CheckInterval time.Duration
}

// Engine starts, drives, halts and resumes rollouts.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	kick  chan struct{}

	hurryOnce sync.Once
	hurry     chan struct{} // closed by StopNow

	mu   sync.Mutex
	runs map[int64]*run

	auditMu    sync.Mutex
	auditQueue []AuditEntry  // entries the store could not take yet, oldest first
	auditDone  chan struct{} // closed when the queue's writer has emptied it; nil when none runs
}

// New returns an engine; zero durations take their defaults.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Seed == nil {
		cfg.Seed = randomSeed
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultOwner()
	}
	if cfg.Defaults.Stages == nil {
		cfg.Defaults = DefaultSettings()
	}
	cfg.HealthTimeout = cmp.Or(cfg.HealthTimeout, 60*time.Second)
	cfg.HealthInterval = cmp.Or(cfg.HealthInterval, 2*time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 15*time.Second)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 500*time.Millisecond)
	cfg.Grace = cmp.Or(cfg.Grace, 30*time.Second)
	cfg.WriteDelay = cmp.Or(cfg.WriteDelay, 50*time.Millisecond)
	cfg.CheckInterval = cmp.Or(cfg.CheckInterval, 30*time.Second)
	return &Engine{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, kick: make(chan struct{}, 1), hurry: make(chan struct{}),
		runs: map[int64]*run{}}
}

// Owner is this engine's name in rollout leases.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Defaults are the settings a rollout gets when its request names none.
func (e *Engine) Defaults() Settings { return e.cfg.Defaults }

// Plan lays out a rollout of version over today's inventory without starting it.
func (e *Engine) Plan(ctx context.Context, version string, s *Settings) (Plan, error) {
	version, err := e.version(ctx, version)
	if err != nil {
		return Plan{}, err
	}
	hosts, err := e.cfg.Inventory.ActiveHosts(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("read inventory: %w", err)
	}
	p, err := NewPlan(version, len(hosts), e.settings(s))
	p.Checks = e.cfg.Checks
	return p, err
}

func (e *Engine) settings(s *Settings) Settings {
	if s == nil {
		return e.cfg.Defaults
	}
	return *s
}

// StartRequest asks for a new rollout.
type StartRequest struct {
	Version  string
	Actor    string
	Source   Source
	Settings *Settings // nil: the engine's defaults
	// Override, when not empty, starts during a freeze, for this reason:
	// the rollout goes through the freezes that began before it.
	Override string
	// Anytime lets the rollout start hosts outside the rollout windows.
	Anytime bool
	// Starter is who counts as having started it for the two-person rule,
	// when not Actor: a schedule's creator.
	Starter string
}

// Start validates the request, snapshots and shuffles the inventory and records
// the rollout, leased to this engine. It does not drive it: call Run, or let
// Serve pick it up. A running rollout makes it fail with an *ActiveError.
func (e *Engine) Start(ctx context.Context, req StartRequest) (*Rollout, error) {
	frozen, _ := e.FrozenNow(ctx)
	r, err := e.start(ctx, &req)
	entry := AuditEntry{Actor: req.Actor, Source: req.Source, Action: "start", Allowed: err == nil, Detail: req.Version}
	if err != nil {
		entry.Detail = fmt.Sprintf("%s refused: %v", req.Version, err)
		if ae := (*ActiveError)(nil); errors.As(err, &ae) && ae.Rollout != nil {
			entry.RolloutID = ae.Rollout.ID
		}
	} else {
		entry.RolloutID = r.ID
	}
	e.Audit(ctx, entry)
	if err != nil {
		return nil, err
	}
	e.auditOverrides(ctx, req, r, frozen)
	e.log.InfoContext(ctx, "rollout started", "rollout_id", r.ID, "version", r.Version, "hosts", r.Hosts,
		"seed", r.Seed, "actor", req.Actor, "source", req.Source)
	e.Kick()
	return r, nil
}

// ErrNoVersion means a start named no version and there is no way to find the latest.
var ErrNoVersion = errors.New("no version given")

// version returns v, or the latest version when v is empty, validated.
func (e *Engine) version(ctx context.Context, v string) (string, error) {
	if v == "" {
		if e.cfg.Latest == nil {
			return "", ErrNoVersion
		}
		latest, err := e.cfg.Latest(ctx)
		if err != nil {
			return "", fmt.Errorf("find the latest version: %w", err)
		}
		v = latest
	}
	return v, ValidateVersion(v)
}

func (e *Engine) start(ctx context.Context, req *StartRequest) (*Rollout, error) {
	var err error
	if req.Version, err = e.version(ctx, req.Version); err != nil {
		return nil, err
	}
	s := e.settings(req.Settings)
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if cur, err := e.cfg.Store.ActiveRollout(ctx); err == nil {
		return nil, &ActiveError{Rollout: cur}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("look for a running rollout: %w", err)
	}
	var overrides Rollout
	if err := e.checkFreeze(ctx, req, &overrides); err != nil {
		return nil, err
	}
	hosts, err := e.cfg.Inventory.ActiveHosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if len(hosts) == 0 {
		return nil, ErrNoHosts
	}
	seed := e.cfg.Seed()
	hosts = Shuffle(hosts, seed)
	stages := Stages(len(hosts), s.Stages)
	first := 0
	for first < len(stages)-1 && stages[first].Size() == 0 {
		first++
	}
	now := e.clock.Now()
	r := &Rollout{
		Version:   req.Version,
		Settings:  s,
		Seed:      seed,
		Hosts:     len(hosts),
		Phase:     PhaseRunning,
		Stage:     first,
		StartedBy: req.Actor,
		Starter:   cmp.Or(req.Starter, req.Actor),
		Source:    req.Source,
		Owner:     e.cfg.Owner,
		CreatedAt: now,
		UpdatedAt: now,
	}
	r.FreezeOverride, r.Anytime = overrides.FreezeOverride, overrides.Anytime
	if err := e.cfg.Store.CreateRollout(ctx, r, hosts, e.cfg.LeaseTTL); err != nil {
		return nil, fmt.Errorf("record rollout: %w", err)
	}
	return r, nil
}

// Shuffle orders hosts by ID, then shuffles them with seed: the same inventory
// and seed always give the same order.
func Shuffle(hosts []Host, seed int64) []Host {
	out := slices.Clone(hosts)
	slices.SortFunc(out, func(a, b Host) int { return cmp.Compare(a.ID, b.ID) })
	rng := rand.New(rand.NewPCG(uint64(seed), 0x726f6c6c6f7574))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// HaltRequest asks the running rollout to stop starting hosts.
type HaltRequest struct {
	Actor  string
	Source Source
	Reason string
}

// Halt asks the running rollout to stop starting hosts. The driver lets the
// hosts in flight finish, then settles it as halted: at once when this engine
// drives it, within its poll interval when another process does. When its
// driver died, the rollout stays halting until a process takes it over (Serve
// does once the lease runs out; so does Run), re-checks the hosts the dead
// driver left in flight, and settles it. Halt returns before any of that; the
// notifier reports the end. A second halt keeps the first and fails with
// ErrHalting.
func (e *Engine) Halt(ctx context.Context, req HaltRequest) (*Rollout, error) {
	r, err := e.halt(ctx, req)
	e.auditRequest(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "halt", Detail: req.Reason}, r, err)
	return r, err
}

func (e *Engine) halt(ctx context.Context, req HaltRequest) (*Rollout, error) {
	r, err := e.cfg.Store.ActiveRollout(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotRunning
	} else if err != nil {
		return nil, fmt.Errorf("look for the running rollout: %w", err)
	}
	r, err = e.cfg.Store.RequestHalt(ctx, r.ID, Halt{By: req.Actor, Reason: req.Reason, At: e.clock.Now()})
	if errors.Is(err, ErrHalting) && r != nil && r.Halt != nil {
		return r, fmt.Errorf("rollout #%d: %w (%s)", r.ID, ErrHalting, r.Halt)
	} else if err != nil {
		return r, fmt.Errorf("record halt: %w", err)
	}
	e.log.InfoContext(ctx, "halt requested", "rollout_id", r.ID, "actor", req.Actor, "reason", req.Reason)
	if !e.tellLocal(r) {
		e.Kick() // if its driver died, Serve settles it once the lease runs out
	}
	return r, nil
}

// ErrHalting means a halt was asked for already; the first one is kept.
var ErrHalting = errors.New("the rollout is already halting")

// ResumeRequest asks to continue the most recent rollout, which must be halted.
type ResumeRequest struct {
	Actor  string
	Source Source
}

// Resume makes the latest rollout, if halted, active again from the next
// pending host of the stage it stopped in. That stage's threshold then counts
// only the hosts run after the resume. Like Start it does not drive the rollout.
func (e *Engine) Resume(ctx context.Context, req ResumeRequest) (*Rollout, error) {
	r, err := e.resume(ctx, req)
	e.auditRequest(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "resume"}, r, err)
	if err == nil {
		e.log.InfoContext(ctx, "rollout resumed", "rollout_id", r.ID, "actor", req.Actor, "stage", r.Label())
		e.Kick()
	}
	return r, err
}

func (e *Engine) resume(ctx context.Context, req ResumeRequest) (*Rollout, error) {
	if cur, err := e.cfg.Store.ActiveRollout(ctx); err == nil {
		return nil, &ActiveError{Rollout: cur}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("look for a running rollout: %w", err)
	}
	latest, err := e.cfg.Store.Rollouts(ctx, 1)
	if err != nil {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	if len(latest) == 0 || latest[0].Phase != PhaseHalted {
		return nil, ErrNotHalted
	}
	r := latest[0]
	if r.Undo != nil && r.Undo.Epoch == 0 {
		// Its rollback was asked for as it halted, too late for its driver
		// to take up: resuming it is beginning that rollback.
		started, err := e.cfg.Store.StartUndo(ctx, r.ID, *r.Undo, e.cfg.Owner, e.cfg.LeaseTTL)
		if err != nil {
			return r, fmt.Errorf("start the rollback of rollout #%d: %w", r.ID, err)
		}
		return started, nil
	}
	results, err := e.cfg.Store.HostResults(ctx, r.ID)
	if err != nil {
		return r, fmt.Errorf("read hosts of rollout #%d: %w", r.ID, err)
	}
	// Continue the stage it stopped in, its threshold counting only the
	// hosts that had not ended; when that stage is done (halted in the pause
	// after it), go straight on to the next: resuming is the operator
	// saying "go on now".
	stages := r.StageList()
	for k := r.Stage; k < len(stages); k++ {
		st := stages[k]
		var seg Segment
		for _, hr := range results[st.Start:st.End] {
			if hr.Status.Done() {
				seg.Done++
			}
			if hr.Status.Failure() {
				seg.Failures++
			}
		}
		// The last stage stays even when it is done: the drive then completes.
		r.Stage, r.Segment = k, seg
		if seg.Done < st.Size() {
			break
		}
	}
	r.Phase, r.Halt, r.WaitUntil = PhaseRunning, nil, time.Time{}
	if r.Undo != nil {
		r.Phase = PhaseRollingBack // a halted rollback goes on rolling back
	}
	r.Owner = e.cfg.Owner
	r.UpdatedAt = e.clock.Now()
	if err := e.cfg.Store.ResumeRollout(ctx, r, e.cfg.LeaseTTL); err != nil {
		return r, fmt.Errorf("resume rollout #%d: %w", r.ID, err)
	}
	return r, nil
}

// StopNow ends the shutdown grace at once: the hosts still in flight are cut
// off (their commands may run on, on the hosts) and left updating, for the
// next driver to re-check. An operator's second Ctrl-C calls it.
func (e *Engine) StopNow() {
	e.hurryOnce.Do(func() { close(e.hurry) })
}

// Grace is how long in-flight hosts may take to finish on shutdown.
func (e *Engine) Grace() time.Duration { return e.cfg.Grace }

// Kick makes Serve look for work now rather than at its next poll.
func (e *Engine) Kick() { signal(e.kick) }

// Serve drives whatever rollout is active and not driven by a live process:
// one it started, one left by a crash, one whose driver went away. It returns
// when ctx is cancelled, after in-flight hosts finished or the grace period ran out.
func (e *Engine) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(2 * e.cfg.PollInterval)
	defer tick.Stop()
	var mu sync.Mutex
	waiting := int64(0) // the rollout last seen leased elsewhere, to log it once
	for {
		r, err := e.cfg.Store.ActiveRollout(ctx)
		switch {
		case err == nil && e.reserve(r.ID):
			wg.Go(func() {
				defer e.unreserve(r.ID)
				_, err := e.drive(ctx, r.ID)
				switch {
				case errors.Is(err, ErrLeaseLost):
					mu.Lock()
					if waiting != r.ID {
						e.log.InfoContext(ctx, "rollout is driven by another process; taking over if its lease runs out",
							"rollout_id", r.ID, "owner", r.Owner)
						waiting = r.ID
					}
					mu.Unlock()
				case err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotRunning):
					e.log.ErrorContext(ctx, "drive rollout", "rollout_id", r.ID, "err", err)
				}
			})
		case err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil:
			e.log.WarnContext(ctx, "look for an active rollout", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
		case <-tick.C:
		}
	}
}

// reserve marks rollout id as driven here, or reports that it already is.
func (e *Engine) reserve(id int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.runs[id]; ok {
		return false
	}
	e.runs[id] = nil // starting; drive fills it in
	return true
}

func (e *Engine) unreserve(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.runs, id)
}

// Run drives rollout id until it completes, halts or fails, and returns it as
// it ended. When ctx is cancelled (shutdown) it stops starting hosts, lets the
// hosts in flight finish within the grace period, releases the rollout for the
// next start to resume, and returns ctx's error.
func (e *Engine) Run(ctx context.Context, id int64) (*Rollout, error) {
	if !e.reserve(id) {
		return nil, fmt.Errorf("rollout #%d is already driven by this process", id)
	}
	defer e.unreserve(id)
	return e.drive(ctx, id)
}

func (e *Engine) drive(ctx context.Context, id int64) (*Rollout, error) {
	sent := time.Now()
	r, err := e.cfg.Store.ClaimRollout(ctx, id, e.cfg.Owner, e.cfg.LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("claim rollout #%d: %w", id, err)
	}
	results, err := e.cfg.Store.HostResults(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read hosts of rollout #%d: %w", id, err)
	}
	if len(results) != r.Hosts {
		return nil, fmt.Errorf("rollout #%d: %d host rows for %d hosts", id, len(results), r.Hosts)
	}
	ru := newRun(e, r, results, sent)
	e.mu.Lock()
	e.runs[id] = ru
	e.mu.Unlock()
	return ru.drive(ctx)
}

// auditRequest records a request on rollout r (nil when none was found), as
// refused when err is not nil.
func (e *Engine) auditRequest(ctx context.Context, entry AuditEntry, r *Rollout, err error) {
	entry.Allowed = err == nil
	if r != nil {
		entry.RolloutID = r.ID
	}
	if err != nil {
		entry.Detail = fmt.Sprintf("refused: %v", err)
	}
	e.Audit(ctx, entry)
}

// Audit records an entry in the audit log. While the store is away entries
// wait in memory, in order, and a background writer retries them until the
// store is back, as results are retried: an outage loses no audit entry.
func (e *Engine) Audit(ctx context.Context, entry AuditEntry) {
	entry.At = e.clock.Now()
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	if len(e.auditQueue) == 0 {
		err := e.cfg.Store.Audit(context.WithoutCancel(ctx), entry)
		if err == nil {
			return
		}
		e.log.WarnContext(ctx, "audit entry not written; retrying until the store is back",
			"action", entry.Action, "actor", entry.Actor, "err", err)
	}
	e.auditQueue = append(e.auditQueue, entry)
	if e.auditDone == nil {
		e.auditDone = make(chan struct{})
		go e.flushAudit(e.auditDone)
	}
}

// flushAudit writes the queued audit entries in order, retrying each, and
// closes done when the queue is empty.
func (e *Engine) flushAudit(done chan struct{}) {
	defer close(done)
	for {
		e.auditMu.Lock()
		if len(e.auditQueue) == 0 {
			e.auditDone = nil
			e.auditMu.Unlock()
			return
		}
		entry := e.auditQueue[0]
		e.auditMu.Unlock()
		_ = retry(context.Background(), e.log, "write audit entry", func(ctx context.Context) error {
			return e.cfg.Store.Audit(ctx, entry)
		})
		e.auditMu.Lock()
		e.auditQueue = e.auditQueue[1:]
		e.auditMu.Unlock()
	}
}

// FlushAudit waits until the audit entries held back by a store outage are
// written, or ctx ends; a process calls it before it exits.
func (e *Engine) FlushAudit(ctx context.Context) error {
	e.auditMu.Lock()
	done := e.auditDone
	n := len(e.auditQueue)
	e.auditMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d audit entries not written: %w", n, ctx.Err())
	}
}

func randomSeed() int64 {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 1)
}

func defaultOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), randomSeed()&0xffff)
}

// tellLocal hands a request just stored for r (a halt, a rollback, an
// override) to r's driver when it runs in this process, at once instead of
// at its next poll. It reports whether there was one.
func (e *Engine) tellLocal(r *Rollout) bool {
	e.mu.Lock()
	local := e.runs[r.ID]
	e.mu.Unlock()
	if local != nil {
		local.request(r)
	}
	return local != nil
}
