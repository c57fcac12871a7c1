package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// UndoCounts is the number of hosts in each state of a rollback.
type UndoCounts struct {
	Pending, Restoring, Restored, Failed, Left, NotNeeded int
}

// Add counts d more hosts in undo status s.
func (c *UndoCounts) Add(s UndoStatus, d int) {
	switch s {
	case UndoPending:
		c.Pending += d
	case UndoRunning:
		c.Restoring += d
	case UndoRestored:
		c.Restored += d
	case UndoFailed:
		c.Failed += d
	case UndoLeft:
		c.Left += d
	case UndoNotNeeded:
		c.NotNeeded += d
	}
}

// Total is the number of hosts the rollback concerns.
func (c UndoCounts) Total() int {
	return c.Pending + c.Restoring + c.Restored + c.Failed + c.Left + c.NotNeeded
}

// Done is the number of hosts whose rollback has ended.
func (c UndoCounts) Done() int { return c.Restored + c.Failed + c.Left + c.NotNeeded }

// String is a short tally, e.g. "118 restored, 2 failed, 1 left alone".
func (c UndoCounts) String() string {
	var t tally
	t.add(c.Restored, "restored")
	t.add(c.Failed, "failed")
	t.add(c.Left, "left alone (changed by hand)")
	t.add(c.NotNeeded, "already back")
	t.add(c.Restoring, "in flight")
	t.add(c.Pending, "to go")
	return t.or("no hosts to put back")
}

// RollbackRequest asks to put back every host a rollout changed.
type RollbackRequest struct {
	Actor  string
	Source Source
	Reason string
	ID     int64 // 0: the latest rollout
}

// RollbackPlan says what a rollback would do, before anyone asks for it.
type RollbackPlan struct {
	Rollout *Rollout
	// Back is, by previous version, how many hosts the rollout updated
	// and would put back.
	Back map[string]int
	// Recheck is how many hosts whose update failed would be read first and
	// put back only if they still run the rollout's version.
	Recheck int
}

// Hosts is the number of hosts the rollback would read and put back.
func (p RollbackPlan) Hosts() int {
	n := p.Recheck
	for _, c := range p.Back {
		n += c
	}
	return n
}

// String is the plan for people.
func (p RollbackPlan) String() string {
	r := p.Rollout
	var b strings.Builder
	fmt.Fprintf(&b, "rollback of rollout #%d (%s, %s): %d %s to check\n", r.ID, r.Version, r.Label(), p.Hosts(), Plural(p.Hosts(), "host", "hosts"))
	versions := make([]string, 0, len(p.Back))
	for v := range p.Back {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		fmt.Fprintf(&b, "  %d back from %s to %s\n", p.Back[v], r.Version, v)
	}
	if p.Recheck > 0 {
		fmt.Fprintf(&b, "  %d whose update failed: put back to their previous version if they still run %s\n", p.Recheck, r.Version)
	}
	b.WriteString("  newest first, " + fmt.Sprint(r.Settings.Concurrency) + " at once, no stages; a host that runs neither version is left alone and listed\n")
	if r.Phase.Active() {
		b.WriteString("  the rollout is running: it halts first, and the hosts in flight finish\n")
	}
	return b.String()
}

// Plural is one or many, as n says: "1 host", "3 hosts".
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// undoTarget reports whether a rollback concerns the host: its update may be
// applied. The store marks the same hosts (StartUndo).
func undoTarget(hr HostResult) bool {
	switch hr.Status {
	case StatusSuccess, StatusRolledBack, StatusUpdating:
		return true
	case StatusFailed:
		return hr.Step == StepUpdate || hr.Step == StepHealth || hr.Step == StepRollback
	}
	return false
}

// PlanRollback lays out a rollback of rollout id (0: the latest).
func (e *Engine) PlanRollback(ctx context.Context, id int64) (RollbackPlan, error) {
	r, results, err := e.rollbackTarget(ctx, id)
	if err != nil {
		return RollbackPlan{}, err
	}
	p := RollbackPlan{Rollout: r, Back: map[string]int{}}
	for _, hr := range results {
		switch {
		case !undoTarget(hr):
		case hr.Status == StatusSuccess:
			p.Back[hr.PrevVersion]++
		default:
			p.Recheck++
		}
	}
	return p, nil
}

// rollbackTarget finds the rollout a rollback of id (0: the latest) would
// put back, and refuses one that a later rollout touched since.
func (e *Engine) rollbackTarget(ctx context.Context, id int64) (*Rollout, []HostResult, error) {
	latest, err := e.cfg.Store.Rollouts(ctx, 1)
	if err != nil {
		return nil, nil, fmt.Errorf("read rollouts: %w", err)
	}
	if len(latest) == 0 {
		return nil, nil, fmt.Errorf("no rollout to roll back: %w", ErrNotFound)
	}
	r := latest[0]
	if id != 0 && id != r.ID {
		if r, err = e.cfg.Store.Rollout(ctx, id); errors.Is(err, ErrNotFound) {
			return nil, nil, fmt.Errorf("there is no rollout #%d: %w", id, ErrNotFound)
		} else if err != nil {
			return nil, nil, err
		}
	}
	results, err := e.cfg.Store.HostResults(ctx, r.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("read hosts of rollout #%d: %w", r.ID, err)
	}
	if r.ID == latest[0].ID {
		return r, results, nil
	}
	// An older rollout: only when no later one touched its hosts, or its
	// rollback would undo what came after.
	changed := map[string]bool{}
	for _, hr := range results {
		if undoTarget(hr) {
			changed[hr.Host.ID] = true
		}
	}
	later, err := e.cfg.Store.Rollouts(ctx, int(latest[0].ID-r.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("read rollouts: %w", err)
	}
	for _, l := range later {
		if l.ID <= r.ID {
			continue
		}
		lr, err := e.cfg.Store.HostResults(ctx, l.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("read hosts of rollout #%d: %w", l.ID, err)
		}
		n := 0
		for _, hr := range lr {
			// A skipped host was commanded too (its version read): it now
			// refuses the older rollout's commands (its fence), even once
			// the later rollout is rolled back.
			if hr.Status != StatusPending && changed[hr.Host.ID] {
				n++
			}
		}
		if n > 0 {
			return nil, nil, fmt.Errorf("%w: rollout #%d (%s) touched %d of the hosts #%d changed since; roll back #%d, or roll out the version wanted",
				ErrLaterRollout, l.ID, l.Version, n, r.ID, l.ID)
		}
	}
	return r, results, nil
}

// ErrLaterRollout refuses the rollback of a rollout whose hosts a later one touched.
var ErrLaterRollout = errors.New("a later rollout touched the same hosts")

// Rollback puts back every host a rollout changed, each on its own recorded
// previous version: the latest rollout, or an older one no later rollout
// touched. A running rollout halts first (the hosts in flight finish), then
// rolls back; an ended one starts rolling back at once, leased to this
// engine (Serve drives it, or Run). Like Start, it does not drive it.
func (e *Engine) Rollback(ctx context.Context, req RollbackRequest) (*Rollout, error) {
	r, err := e.rollback(ctx, req)
	e.auditRequest(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "rollback", Detail: req.Reason}, r, err)
	if err == nil {
		e.log.InfoContext(ctx, "rollback requested", "rollout_id", r.ID, "actor", req.Actor, "reason", req.Reason, "phase", r.Phase)
		e.Kick()
	}
	return r, err
}

func (e *Engine) rollback(ctx context.Context, req RollbackRequest) (*Rollout, error) {
	r, _, err := e.rollbackTarget(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	// A request its driver never took up (Epoch 0), because the rollout
	// ended first, is begun now; StartUndo keeps who asked and why.
	if r.Undo != nil && (r.Undo.Epoch > 0 || r.Phase.Active()) {
		return r, fmt.Errorf("rollout #%d: %w (asked by %s at %s; %s)", r.ID, ErrRolledBack, r.Undo.By,
			r.Undo.At.Local().Format(time.DateTime), r.Label())
	}
	u := Undo{By: req.Actor, Reason: req.Reason, At: e.clock.Now()}
	id := r.ID // r is what the store answers next, nil on some errors
	if r.Phase.Active() {
		if r, err = e.cfg.Store.RequestUndo(ctx, id, u); err != nil {
			return r, fmt.Errorf("record rollback of rollout #%d: %w", id, err)
		}
		e.tellLocal(r)
		return r, nil
	}
	r, err = e.cfg.Store.StartUndo(ctx, id, u, e.cfg.Owner, e.cfg.LeaseTTL)
	var ae *ActiveError
	if errors.As(err, &ae) {
		return r, err
	} else if err != nil {
		return r, fmt.Errorf("start the rollback of rollout #%d: %w", id, err)
	}
	return r, nil
}

// undoAskedAtTheEnd begins the rollback asked for as the rollout ended: the
// request reached the store after the driver had decided to end it, so no
// driver would act on it. Serve drives it from here.
func (ru *run) undoAskedAtTheEnd(ctx context.Context) {
	cur, err := ru.e.cfg.Store.Rollout(ctx, ru.r.ID)
	if err != nil || cur.Undo == nil || cur.Undo.Epoch != 0 || !cur.Phase.Ended() {
		return
	}
	if _, err := ru.e.cfg.Store.StartUndo(ctx, cur.ID, *cur.Undo, ru.e.cfg.Owner, ru.e.cfg.LeaseTTL); err != nil {
		ru.e.log.Warn("start the rollback asked for as the rollout ended", "rollout_id", cur.ID, "err", err)
		return
	}
	ru.e.log.Info("rollback asked for as the rollout ended; rolling back", "rollout_id", cur.ID, "actor", cur.Undo.By, "phase", cur.Phase)
	ru.e.Kick()
}

// request takes a halt, and a rollback to follow it, asked for elsewhere.
func (ru *run) request(cur *Rollout) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if cur.Undo != nil && ru.r.Undo == nil {
		u := *cur.Undo
		ru.r.Undo = &u
	}
	if cur.Halt != nil {
		ru.haltLocked(*cur.Halt)
	}
	ru.takeOverridesLocked(cur)
	ru.takePromote(cur.Promote)
}

// beginUndo turns the halted run into its rollback: the store marks the hosts
// it concerns, the halt that came first is cleared, and a new epoch begins.
func (ru *run) beginUndo(ctx context.Context) error {
	ru.mu.Lock()
	u := *ru.r.Undo
	ru.mu.Unlock()
	var r *Rollout
	err := retry(ctx, ru.e.log, "start the rollback", func(ctx context.Context) error {
		var err error
		r, err = ru.e.cfg.Store.StartUndo(ctx, ru.r.ID, u, ru.e.cfg.Owner, ru.e.cfg.LeaseTTL)
		return err
	})
	if err != nil {
		return err
	}
	return ru.reload(ctx, r)
}

// reload takes the rollout and its hosts as stored.
func (ru *run) reload(ctx context.Context, r *Rollout) error {
	var results []HostResult
	err := retry(ctx, ru.e.log, "read hosts", func(ctx context.Context) error {
		var err error
		results, err = ru.e.cfg.Store.HostResults(ctx, r.ID)
		return err
	})
	if err != nil {
		return err
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	// Only what StartUndo changes: the watch and the shutdown grace read
	// the rollout's ID and stage without the lock.
	ru.r.Phase, ru.r.Undo, ru.r.Halt, ru.r.Error = r.Phase, r.Undo, r.Halt, r.Error
	ru.r.Epoch, ru.r.Owner, ru.r.LeaseUntil = r.Epoch, r.Owner, r.LeaseUntil
	ru.r.WaitUntil, ru.r.FinishedAt, ru.r.UpdatedAt = r.WaitUntil, r.FinishedAt, r.UpdatedAt
	ru.results = results
	ru.counts = CountResults(results)
	ru.haltCh = make(chan struct{})
	if r.Halt != nil {
		close(ru.haltCh)
	}
	return nil
}

// undo drives the rollback: first the hosts a previous driver left being
// put back, then the others, the most recently updated first, at the
// rollout's concurrency, with no stages and no threshold: a failure is
// reported, not a reason to stop. A halt stops it like an update.
func (ru *run) undo(ctx, hostCtx context.Context) (*Rollout, error) {
	ru.mu.Lock()
	var again, todo []int
	for i, hr := range ru.results {
		switch hr.Undo.Status {
		case UndoRunning:
			again = append(again, i)
		case UndoPending:
			todo = append(todo, i)
		}
	}
	slices.SortStableFunc(todo, func(a, b int) int {
		if c := ru.results[b].FinishedAt.Compare(ru.results[a].FinishedAt); c != 0 {
			return c
		}
		return cmp.Compare(b, a)
	})
	todo = append(again, todo...)
	ru.mu.Unlock()
	ru.e.log.InfoContext(ctx, "rolling back", "rollout_id", ru.r.ID, "hosts", len(todo))
	ru.notify(EventUndoStarted, nil, ru.stages[ru.r.Stage], 0)
	ru.pool(ctx, hostCtx, todo, len(again), ru.undoHost, ru.recordUndo)

	ru.mu.Lock()
	fatal, halt := ru.fatal, ru.r.Halt
	remaining := ru.counts.Undo.Pending + ru.counts.Undo.Restoring
	ru.mu.Unlock()
	switch {
	case fatal != nil:
		return ru.stopped(ctx, fatal)
	case halt != nil && remaining > 0:
		return ru.finish(hostCtx, PhaseHalted)
	case remaining > 0 && ctx.Err() != nil:
		return ru.stopped(ctx, ctx.Err())
	case remaining > 0:
		return ru.stopped(ctx, errors.New("hosts of the rollback were not settled"))
	}
	return ru.finish(hostCtx, PhaseRolledBack)
}

// recordUndo takes a host's rollback result into the run's accounting.
func (ru *run) recordUndo(before, res HostResult, err error) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.counts.Undo.Add(UndoRunning, -1)
	if err != nil {
		ru.counts.Undo.Add(before.Undo.Status, 1)
		if (errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrFenced)) && ru.fatal == nil {
			ru.fatal = ErrLeaseLost
		}
		ru.e.log.Info("host's rollback not settled; the next driver re-checks it", "rollout_id", ru.r.ID,
			"host", before.Host.ID, "err", err)
		if res.Undo.Status == UndoRunning && before.Undo.Status != UndoRunning {
			ru.counts.Undo.Add(before.Undo.Status, -1)
			ru.counts.Undo.Add(UndoRunning, 1)
			ru.results[res.Index] = res
		}
		return
	}
	ru.results[res.Index] = res
	ru.counts.Undo.Add(res.Undo.Status, 1)
	if res.Undo.Status == UndoFailed || res.Undo.Status == UndoLeft {
		ru.recent = appendRecent(ru.recent, res)
	}
	ru.emit(EventHostDone, &res, ru.stages[ru.r.Stage], 0)
}

// undoHost puts one host back on its previous version: it reads the host's
// version (waiting for whatever still runs there) and its record of the last
// rollback, records the start, runs the rollback command and the health
// check. A host on neither version was changed by hand and is left alone.
func (ru *run) undoHost(ctx context.Context, hr HostResult) (HostResult, error) {
	log := ru.e.log.With("rollout_id", ru.r.ID, "host", hr.Host.ID)
	target, prev := ru.r.Version, hr.PrevVersion
	recheck := hr.Undo.Status == UndoRunning
	if hr.Undo.StartedAt.IsZero() {
		hr.Undo.StartedAt = ru.e.clock.Now()
	}
	conn, hs, res, err := ru.openAs(ctx, hr, func(hr HostResult, step Step, err error) HostResult {
		if step == StepVersion {
			err = fmt.Errorf("read the version: %w", err)
		}
		return ru.undoFailed(hr, err, "")
	})
	if conn == nil {
		return res, err
	}
	defer func() { conn.Close() }()
	if recheck {
		last := hs.Last
		ours := last.Of(ru.fence()) && last.Step == StepRollback && ru.r.Undo != nil && last.Fence.Epoch >= ru.r.Undo.Epoch
		switch {
		case ours && last.Finished && last.Exit == 0, hs.Version == prev:
			log.InfoContext(ctx, "re-check: the rollback ran; checking health", "version", hs.Version)
			return ru.undoHealth(ctx, conn, hr, "")
		case ours && last.Finished:
			return ru.undoFailed(hr, fmt.Errorf("rollback to %s exited with status %d (under the previous driver)", prev, last.Exit), ""), nil
		case hs.Version != target:
			return ru.undoFailed(hr, fmt.Errorf("its rollback was cut off and it runs %s, neither %s nor %s", firstLine(hs.Version), target, prev), ""), nil
		}
		log.InfoContext(ctx, "re-check: the rollback did not run; rolling back", "version", hs.Version)
		return ru.undoNow(ctx, conn, hr)
	}
	switch {
	case hs.Version == prev:
		hr.Undo.Status = UndoNotNeeded
		hr.Undo.FinishedAt = ru.e.clock.Now()
		return hr, nil
	case hs.Version != target:
		hr.Undo.Status = UndoLeft
		hr.Undo.Error = fmt.Sprintf("runs %s, not %s as the rollout left it: changed by hand? left alone", firstLine(hs.Version), target)
		hr.Undo.FinishedAt = ru.e.clock.Now()
		return hr, nil
	}
	hr.Undo.Status = UndoRunning
	if err := ru.w.save(ctx, hr); err != nil {
		return hr, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	return ru.undoNow(ctx, conn, hr)
}

// undoNow runs a host's recorded rollback, then its health check.
func (ru *run) undoNow(ctx context.Context, conn Conn, hr HostResult) (HostResult, error) {
	out, err := ru.command(ctx, func() (string, error) { return conn.Rollback(ctx, hr.PrevVersion) })
	if cut := ru.cutOff(ctx, err); cut != nil {
		return hr, cut
	}
	if err != nil {
		return ru.undoFailed(hr, fmt.Errorf("rollback to %s failed: %w", hr.PrevVersion, err), out), nil
	}
	return ru.undoHealth(ctx, conn, hr, out)
}

// undoHealth checks a host just put back.
func (ru *run) undoHealth(ctx context.Context, conn Conn, hr HostResult, out string) (HostResult, error) {
	hout, err := ru.waitHealthy(ctx, conn)
	if cut := ru.cutOff(ctx, err); cut != nil {
		return hr, cut
	}
	if err != nil {
		return ru.undoFailed(hr, fmt.Errorf("put back on %s but unhealthy: %w", hr.PrevVersion, err), hout), nil
	}
	hr.Undo.Status, hr.Undo.Error, hr.Undo.Output = UndoRestored, "", ""
	hr.Undo.FinishedAt = ru.e.clock.Now()
	return hr, nil
}

func (ru *run) undoFailed(hr HostResult, err error, out string) HostResult {
	hr.Undo.Status, hr.Undo.Error = UndoFailed, err.Error()
	if out != "" {
		hr.Undo.Output = out
	}
	hr.Undo.FinishedAt = ru.e.clock.Now()
	return hr
}
