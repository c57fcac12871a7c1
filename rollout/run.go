package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// run drives one rollout in this process. It is the one place where the
// rollout's phase changes: requests from elsewhere (a halt) reach it as
// Halt values, and it turns them into the next phase.
type run struct {
	e      *Engine
	w      *writer
	lease  *lease
	stages []Stage
	haltCh chan struct{} // closed when r.Halt is first set
	wake   chan struct{} // an override came: a wait looks again
	// promoteCh wakes a drive waiting at a gate when a promote for it came.
	promoteCh chan struct{}

	mu          sync.Mutex
	r           Rollout // the run's view; copies go out in events
	results     []HostResult
	counts      Counts
	segFailures int // failures counted toward the current stage's threshold
	segSize     int
	stageDone   int
	fatal       error // the store refused us for good (lease lost)
	recent      []HostResult
	openUntil   time.Time // when the window hosts start in closes; zero: no limit
	waitSince   time.Time // when the current hold began, here
}

func newRun(e *Engine, r *Rollout, results []HostResult, claimed time.Time) *run {
	ru := &run{e: e, r: *r, results: results, stages: r.StageList(), haltCh: make(chan struct{}), wake: make(chan struct{}, 1),
		promoteCh: make(chan struct{}, 1)}
	ru.lease = newLease(claimed, e.cfg.LeaseTTL)
	ru.counts = CountResults(results)
	ru.recent = RecentFailures(results)
	if r.Halt != nil {
		close(ru.haltCh)
	}
	return ru
}

func (ru *run) haltLocked(h Halt) {
	if ru.r.Halt != nil {
		return
	}
	ru.r.Halt = &h
	close(ru.haltCh)
	ru.emit(EventHalting, nil, ru.stages[ru.r.Stage], 0)
}

func (ru *run) snapshot() Rollout {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.r
}

func (ru *run) drive(ctx context.Context) (*Rollout, error) {
	log := ru.e.log.With("rollout_id", ru.r.ID)
	// In-flight hosts outlive ctx by the grace period, so a shutdown lets them finish.
	hostCtx, cancelHosts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHosts()
	stopGrace := context.AfterFunc(ctx, func() {
		ru.notify(EventStopping, nil, ru.stages[ru.r.Stage], ru.e.cfg.Grace)
		ru.mu.Lock()
		inFlight := ru.counts.Updating
		ru.mu.Unlock()
		if inFlight > 0 {
			ru.e.log.Info("shutting down: waiting for the hosts in flight", "rollout_id", ru.r.ID, "hosts", inFlight, "grace", ru.e.cfg.Grace)
		}
		t := time.NewTimer(ru.e.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelHosts()
		case <-ru.e.hurry:
			cancelHosts()
		case <-hostCtx.Done():
		}
	})
	defer stopGrace()

	ru.w = newWriter(ru.e.cfg.Store, ru.e.cfg.Owner, ru.e.cfg.WriteDelay, log)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); ru.w.loop(hostCtx) }()
	defer func() { cancelHosts(); <-writerDone }()

	watchCtx, stopWatch := context.WithCancel(hostCtx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); ru.watch(watchCtx) }()
	defer func() { stopWatch(); <-watchDone }()

	ru.notify(EventStarted, nil, ru.stages[ru.r.Stage], 0)
	// A takeover first finishes what the previous driver left in flight,
	// whatever the rollout does next: halted or not, no host stays updating.
	if err := ru.recheck(ctx, hostCtx); err != nil {
		return ru.stopped(ctx, err)
	}
	for {
		r := ru.snapshot()
		ru.mu.Lock()
		fatal := ru.fatal
		ru.mu.Unlock()
		switch {
		case fatal != nil:
			return ru.stopped(ctx, fatal)
		case r.Phase == PhaseRollingBack && r.Halt == nil && ctx.Err() == nil:
			return ru.undo(ctx, hostCtx)
		case r.Halt != nil:
			return ru.settleHalt(ctx, hostCtx)
		case ctx.Err() != nil:
			return ru.stopped(ctx, ctx.Err())
		}
		st := ru.stages[r.Stage]
		if r.Phase.Holding() {
			if ru.waitHold(ctx, r) {
				if err := ru.setPhase(hostCtx, PhaseRunning, r.Stage, time.Time{}); err != nil {
					return ru.stopped(ctx, err)
				}
			}
			continue
		}
		switch r.Phase {
		case PhaseBaking:
			ru.bake(ctx, r, st)
			if out, done, err := ru.pastChecks(ctx, hostCtx, st); done {
				return out, err
			}
			continue
		case PhaseGated:
			ru.waitAtGate(ctx, r)
			if r = ru.snapshot(); !promoted(r) {
				continue // halted, timed out or shut down: the loop's top decides
			}
			log.InfoContext(ctx, "promoted", "stage", st.Percent, "actor", r.Promote.By)
			ru.notify(EventPromoted, nil, st, 0)
			if out, done, err := ru.goOn(ctx, hostCtx, r.Stage); done {
				return out, err
			}
			continue
		}
		if r.Phase == PhasePaused {
			select {
			case <-ru.e.clock.After(r.WaitUntil.Sub(ru.e.clock.Now())):
			case <-ru.haltCh:
				continue
			case <-ctx.Done():
				continue
			}
			if out, done, err := ru.goOn(ctx, hostCtx, r.Stage); done {
				return out, err
			}
			continue
		}

		if held, err := ru.holdIfNeeded(ctx, hostCtx); err != nil {
			return ru.stopped(ctx, err)
		} else if held {
			continue
		}
		ru.beginStage(st)
		log.InfoContext(ctx, "stage started", "stage", st.Percent, "hosts", st.Size())
		ru.notify(EventStageStarted, nil, st, 0)
		ru.runStage(ctx, hostCtx, st)

		ru.mu.Lock()
		halt, fatal := ru.r.Halt, ru.fatal
		failures := ru.segFailures
		remaining := st.Size() - ru.stageDone
		// A host left updating (its result not stored) is for a re-check, not a wait.
		closed := ru.windowClosedLocked() && ru.counts.Updating == 0
		ru.mu.Unlock()
		next := ru.nextStage(r.Stage)
		switch {
		case fatal != nil:
			return ru.stopped(ctx, fatal)
		case halt != nil && (remaining > 0 || next >= 0 || halt.Auto() || ru.snapshot().Undo != nil):
			return ru.settleHalt(ctx, hostCtx)
		case remaining > 0 && ctx.Err() != nil:
			return ru.stopped(ctx, ctx.Err())
		case remaining > 0 && closed:
			continue // the window closed mid-stage: wait for the next
		case remaining > 0:
			// A host whose result could not be stored stays for a re-check.
			return ru.stopped(ctx, errors.New("hosts of the stage were not settled"))
		}
		log.InfoContext(ctx, "stage done", "stage", st.Percent, "failures", failures)
		ru.notify(EventStageDone, nil, st, 0)
		if len(ru.e.cfg.Checks) == 0 {
			if next < 0 {
				return ru.finish(hostCtx, PhaseCompleted)
			}
			if err := ru.afterChecks(hostCtx, ru.snapshot(), st); err != nil {
				return ru.stopped(ctx, err)
			}
			continue
		}
		// Checks follow every stage, the last too: a rollout completes only
		// once they passed with all its hosts on the new version.
		if bake := r.Settings.Bake; bake > 0 {
			if err := ru.setPhase(hostCtx, PhaseBaking, r.Stage, ru.e.clock.Now().Add(bake)); err != nil {
				return ru.stopped(ctx, err)
			}
			ru.notify(EventBaking, nil, st, bake)
			continue
		}
		ru.runChecks(ctx, st)
		if out, done, err := ru.pastChecks(ctx, hostCtx, st); done {
			return out, err
		}
	}
}

// pastChecks goes on from stage st once its checks (and bake) passed: to
// the end when st was the last stage, else to what comes before the next.
// A halt, or a shutdown, asked for while they ran is left to the loop. done
// says the drive ends here, with out and err.
func (ru *run) pastChecks(ctx, hostCtx context.Context, st Stage) (out *Rollout, done bool, err error) {
	r := ru.snapshot()
	switch {
	case r.Halt != nil || ctx.Err() != nil:
		return nil, false, nil
	case ru.nextStage(r.Stage) < 0:
		out, err = ru.finish(hostCtx, PhaseCompleted)
		return out, true, err
	}
	if err := ru.afterChecks(hostCtx, r, st); err != nil {
		out, err = ru.stopped(ctx, err)
		return out, true, err
	}
	return nil, false, nil
}

// afterChecks takes a rollout whose stage st is done and checked to what
// comes before the next stage: its gate, the pause, or the next stage.
func (ru *run) afterChecks(ctx context.Context, r Rollout, st Stage) error {
	next := ru.nextStage(r.Stage)
	switch {
	case r.Settings.GatedAt(st.Percent):
		return ru.enterGate(ctx, r, st)
	case r.Settings.Pause > 0:
		err := ru.setPhase(ctx, PhasePaused, r.Stage, ru.e.clock.Now().Add(r.Settings.Pause))
		ru.notify(EventPaused, nil, st, r.Settings.Pause)
		return err
	}
	return ru.setPhase(ctx, PhaseRunning, next, time.Time{})
}

// goOn moves the rollout past stage k, once it may go on: to the next stage,
// or to its end. done says the drive ends here, with out and err.
func (ru *run) goOn(ctx, hostCtx context.Context, k int) (out *Rollout, done bool, err error) {
	next := ru.nextStage(k)
	if next < 0 {
		out, err = ru.finish(hostCtx, PhaseCompleted)
		return out, true, err
	}
	if err := ru.setPhase(hostCtx, PhaseRunning, next, time.Time{}); err != nil {
		out, err = ru.stopped(ctx, err)
		return out, true, err
	}
	return nil, false, nil
}

// setPhase moves the rollout to phase at stage k and persists it; a new
// stage's threshold counts all of it.
func (ru *run) setPhase(ctx context.Context, phase Phase, k int, until time.Time) error {
	ru.mu.Lock()
	if k != ru.r.Stage {
		ru.r.Segment = Segment{}
	}
	ru.r.Phase, ru.r.Stage, ru.r.WaitUntil, ru.r.WaitFor = phase, k, until, ""
	ru.r.UpdatedAt = ru.e.clock.Now()
	r := ru.r
	ru.mu.Unlock()
	return ru.persistRollout(ctx, &r)
}

// recheck settles the hosts a previous driver left updating, before anything
// else is done, at the rollout's concurrency.
func (ru *run) recheck(ctx, hostCtx context.Context) error {
	var todo []int
	for i, hr := range ru.results {
		if hr.Status == StatusUpdating {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ru.e.log.InfoContext(ctx, "re-checking hosts the previous driver left in flight", "rollout_id", ru.r.ID, "hosts", len(todo))
	st := ru.stages[ru.r.Stage]
	ru.beginStage(st)
	ru.runHosts(ctx, hostCtx, st, todo, true)
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.fatal != nil {
		return ru.fatal
	}
	for _, i := range todo {
		if ru.results[i].Status == StatusUpdating {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("host %s could not be re-checked", ru.results[i].Host.ID)
		}
	}
	return nil
}

// settleHalt ends the rollout as halted, with the halt it was asked for,
// once no host is in flight; or, when a rollback was asked for too, goes on
// to roll it back. A halted rollback first finishes the hosts a previous
// driver left being put back, as a takeover does with updates.
func (ru *run) settleHalt(ctx, hostCtx context.Context) (*Rollout, error) {
	r := ru.snapshot()
	ru.mu.Lock()
	restoring := ru.counts.Undo.Restoring
	ru.mu.Unlock()
	if r.Phase == PhaseRollingBack && restoring > 0 {
		return ru.undo(ctx, hostCtx)
	}
	if r.Undo != nil && r.Phase != PhaseRollingBack {
		if err := ru.beginUndo(hostCtx); err != nil {
			return ru.stopped(ctx, err)
		}
		if ctx.Err() != nil {
			return ru.stopped(ctx, ctx.Err())
		}
		return ru.undo(ctx, hostCtx)
	}
	return ru.finish(hostCtx, PhaseHalted)
}

// nextStage is the index of the next non-empty stage after k, or -1.
func (ru *run) nextStage(k int) int {
	for j := k + 1; j < len(ru.stages); j++ {
		if ru.stages[j].Size() > 0 {
			return j
		}
	}
	return -1
}

// beginStage sets up the threshold accounting of a stage from the results,
// which after a crash or a resume already hold some of its hosts.
func (ru *run) beginStage(st Stage) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	seg := ru.r.Segment
	ru.segSize = st.Size() - seg.Done
	ru.segFailures, ru.stageDone = -seg.Failures, 0
	for _, hr := range ru.results[st.Start:st.End] {
		if hr.Status.Done() {
			ru.stageDone++
		}
		if hr.Status.Failure() {
			ru.segFailures++
		}
	}
	ru.checkThreshold(st)
}

// checkThreshold halts the rollout when the stage's failures cross its
// threshold; mu is held.
func (ru *run) checkThreshold(st Stage) {
	if Exceeds(ru.segFailures, ru.segSize, ru.r.Settings.Threshold) {
		ru.haltLocked(Halt{By: AutoHalter, At: ru.e.clock.Now(), Reason: fmt.Sprintf(
			"stage %d%%: %d of %d hosts failed, more than the %d%% threshold",
			st.Percent, ru.segFailures, ru.segSize, ru.r.Settings.Threshold)})
	}
}

// runStage updates the stage's unfinished hosts, at most Concurrency at once,
// and returns when none is in flight.
func (ru *run) runStage(ctx, hostCtx context.Context, st Stage) {
	var todo []int
	for i := st.Start; i < st.End; i++ {
		if !ru.results[i].Status.Done() {
			todo = append(todo, i)
		}
	}
	ru.runHosts(ctx, hostCtx, st, todo, false)
}

// runHosts takes the hosts todo through their update (re-checks when
// recheck), at most Concurrency at once.
func (ru *run) runHosts(ctx, hostCtx context.Context, st Stage, todo []int, recheck bool) {
	rechecks := 0
	if recheck {
		rechecks = len(todo)
	}
	ru.pool(ctx, hostCtx, todo, rechecks, ru.updateHost, func(before, res HostResult, err error) { ru.record(st, before, res, err) })
}

// pool runs do on the hosts todo, at most Concurrency at once, and hands each
// outcome, once stored, to record. It starts no host once a halt is asked for
// (the threshold's included), the lease is lost or ctx is cancelled; but the
// first rechecks hosts of todo, which a previous driver left in flight, go on
// until the lease is lost or hostCtx ends: they are finished, whatever comes.
func (ru *run) pool(ctx, hostCtx context.Context, todo []int, rechecks int,
	do func(context.Context, HostResult) (HostResult, error), record func(before, res HostResult, err error)) {
	next := 0
	ru.mu.Lock()
	undo := ru.r.Phase == PhaseRollingBack
	ru.mu.Unlock()
	// A host that ended well is stored while its worker goes on to the next
	// host, with the writer's next group commit: only starts and failures
	// (which may halt the stage) hold the worker until they are durable. A
	// result is reported once stored either way, and a crash before that
	// leaves the host for a re-check.
	var wg, saves sync.WaitGroup
	defer saves.Wait()
	defer ru.w.flush() // the last results: nothing else comes to join them
	for range min(ru.r.Settings.Concurrency, len(todo)) {
		wg.Go(func() {
			for {
				ru.mu.Lock()
				stop := ru.fatal != nil || hostCtx.Err() != nil
				if next >= rechecks {
					stop = stop || ru.r.Halt != nil || ctx.Err() != nil || ru.windowClosedLocked()
				}
				if next >= len(todo) || stop {
					ru.mu.Unlock()
					return
				}
				i := todo[next]
				next++
				hr := ru.results[i]
				if ru.r.Phase == PhaseRollingBack {
					ru.counts.Undo.Add(hr.Undo.Status, -1)
					ru.counts.Undo.Add(UndoRunning, 1)
				} else {
					ru.counts.Add(hr.Status, -1)
					ru.counts.Add(StatusUpdating, 1)
				}
				ru.emit(EventHostStarted, &hr, ru.stages[ru.r.Stage], 0)
				ru.mu.Unlock()

				res, err := do(hostCtx, hr)
				if err == nil && endedWell(res, undo) {
					stored := ru.w.enqueue(res)
					saves.Go(func() { record(hr, res, <-stored) })
					continue
				}
				if err == nil {
					err = ru.w.save(hostCtx, res)
				}
				record(hr, res, err)
			}
		})
	}
	wg.Wait()
}

// endedWell reports whether a host's result is an end that cannot halt
// anything: updated or skipped, or (in a rollback) put back or already back.
func endedWell(res HostResult, undo bool) bool {
	if undo {
		return res.Undo.Status == UndoRestored || res.Undo.Status == UndoNotNeeded
	}
	return res.Status == StatusSuccess || res.Status == StatusSkipped
}

// record takes a host's result into the run's accounting; err means it was
// not settled (its result could not be stored, or the host was left for a
// re-check), so the host stays as the store has it.
func (ru *run) record(st Stage, before, res HostResult, err error) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.counts.Add(StatusUpdating, -1)
	if err != nil {
		ru.counts.Add(before.Status, 1)
		if (errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrFenced)) && ru.fatal == nil {
			ru.fatal = ErrLeaseLost
		}
		switch {
		case errors.Is(err, errCutOff):
			ru.e.log.Info("host cut off mid-update; the next driver re-checks it", "rollout_id", ru.r.ID,
				"host", before.Host.ID, "step", res.Step, "err", err)
		default:
			ru.e.log.Warn("host result not stored; the host will be re-checked", "rollout_id", ru.r.ID,
				"host", before.Host.ID, "status", res.Status, "err", err)
		}
		if res.Status == StatusUpdating && before.Status != StatusUpdating {
			// Its start was stored: the store has it updating now.
			ru.counts.Add(before.Status, -1)
			ru.counts.Add(StatusUpdating, 1)
			ru.results[res.Index] = res
		}
		return
	}
	ru.results[res.Index] = res
	ru.counts.Add(res.Status, 1)
	if res.Index >= st.Start && res.Index < st.End && res.Status.Done() {
		ru.stageDone++
	}
	if res.Status.Failure() {
		ru.recent = appendRecent(ru.recent, res)
		if res.Index >= st.Start && res.Index < st.End {
			ru.segFailures++
			ru.checkThreshold(st)
		}
	}
	ru.emit(EventHostDone, &res, st, 0)
}

func appendRecent(recent []HostResult, hr HostResult) []HostResult {
	recent = append(recent, hr)
	if len(recent) > maxRecent {
		recent = slices.Delete(recent, 0, len(recent)-maxRecent)
	}
	return recent
}

// finish persists how the rollout ended, then reports it.
func (ru *run) finish(ctx context.Context, phase Phase) (*Rollout, error) {
	ru.mu.Lock()
	ru.r.Phase, ru.r.WaitUntil, ru.r.WaitFor = phase, time.Time{}, ""
	ru.r.FinishedAt = ru.e.clock.Now()
	ru.r.UpdatedAt = ru.r.FinishedAt
	r := ru.r
	ru.mu.Unlock()
	if err := ru.persistRollout(ctx, &r); err != nil {
		return ru.stopped(ctx, err)
	}
	ru.mu.Lock()
	ru.r.Halt = r.Halt // the stored halt, if another was asked for first
	ru.mu.Unlock()
	if phase == PhaseHalted && r.Halt != nil && r.Halt.Auto() {
		ru.e.Audit(ctx, AuditEntry{Actor: AutoHalter, Source: r.Source, Action: "auto-halt", RolloutID: r.ID, Allowed: true, Detail: r.Halt.Reason})
	}
	ru.release()
	ru.e.log.InfoContext(ctx, "rollout ended", "rollout_id", r.ID, "phase", phase, "outcome", Outcome(&r, ru.counts), "hosts", ru.counts.String())
	ru.notify(EventEnded, nil, ru.stages[r.Stage], 0)
	if phase != PhaseRolledBack {
		ru.undoAskedAtTheEnd(ctx)
	}
	return &r, nil
}

// stopped ends the drive without ending the rollout: shutdown or a lost lease.
func (ru *run) stopped(ctx context.Context, cause error) (*Rollout, error) {
	if !errors.Is(cause, ErrLeaseLost) {
		ru.release()
	}
	ru.mu.Lock()
	r := ru.r
	ru.emit(EventStopped, nil, ru.stages[r.Stage], 0)
	ru.mu.Unlock()
	if ctx.Err() != nil && errors.Is(cause, ctx.Err()) {
		ru.e.log.Info("stopped driving rollout; the next start resumes it", "rollout_id", r.ID, "hosts", ru.counts.String())
	} else {
		ru.e.log.Warn("stopped driving rollout", "rollout_id", r.ID, "err", cause)
	}
	return &r, cause
}

func (ru *run) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ru.e.cfg.Store.ReleaseRollout(ctx, ru.r.ID, ru.e.cfg.Owner); err != nil {
		ru.e.log.Warn("release rollout lease", "rollout_id", ru.r.ID, "err", err)
	}
}

// persistRollout writes the rollout row, retrying while the store is away.
func (ru *run) persistRollout(ctx context.Context, r *Rollout) error {
	return retry(ctx, ru.e.log, "save rollout", func(ctx context.Context) error {
		return ru.e.cfg.Store.UpdateRollout(ctx, ru.e.cfg.Owner, r)
	})
}

// watch renews the lease and looks for halts asked of another process. It
// wakes often enough to renew close to a third of the lease, so a short
// lease is not lost to a late tick. A lease that ran out (the store was
// away or slow, or this process was stopped) is not given up at once: no
// command starts until the store renews it, which it does only while
// nobody else has claimed the rollout, and the run goes on where it was.
// Another owner, or a rollout ended elsewhere, stops the run.
func (ru *run) watch(ctx context.Context) {
	tick := time.NewTicker(min(ru.e.cfg.PollInterval, ru.e.cfg.LeaseTTL/6))
	defer tick.Stop()
	lastRenew := time.Now()
	failing, slow, ranOut := false, false, false // said once per streak
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var cur *Rollout
		var err error
		if gap := time.Since(lastRenew); gap >= ru.e.cfg.LeaseTTL*2/3 && !slow {
			ru.e.log.WarnContext(ctx, "lease renewal late", "rollout_id", ru.r.ID, "since_renewal", gap.Round(time.Millisecond))
			slow = true
		}
		if !ranOut && ru.lease.ranOut(time.Now()) {
			ru.e.log.WarnContext(ctx, "lease ran out; no host command starts until it is renewed", "rollout_id", ru.r.ID,
				"since_renewal", time.Since(lastRenew).Round(time.Millisecond))
			ranOut = true
			ru.mu.Lock()
			ru.emit(EventLeaseRanOut, nil, ru.stages[ru.r.Stage], 0)
			ru.mu.Unlock()
		}
		if time.Since(lastRenew) >= ru.e.cfg.LeaseTTL/3 {
			sent := time.Now()
			cur, err = ru.e.cfg.Store.RenewRollout(ctx, ru.r.ID, ru.e.cfg.Owner, ru.e.cfg.LeaseTTL)
			if err == nil {
				ru.lease.renewed(sent)
				if ranOut {
					ru.e.log.InfoContext(ctx, "lease renewed after it ran out; nobody took the rollout over", "rollout_id", ru.r.ID,
						"since_renewal", time.Since(lastRenew).Round(time.Millisecond), "renewal_took", time.Since(sent).Round(time.Millisecond))
				}
				lastRenew, failing, slow, ranOut = sent, false, false, false
			}
		} else {
			cur, err = ru.e.cfg.Store.Rollout(ctx, ru.r.ID)
		}
		switch {
		case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrNotRunning), err == nil && cur.Owner != ru.e.cfg.Owner:
			if ru.ended() {
				return // this driver ended the rollout and let it go
			}
			owner := ""
			if cur != nil {
				owner = cur.Owner
			}
			ru.e.log.WarnContext(ctx, "lease lost", "rollout_id", ru.r.ID, "err", err, "owner", owner,
				"since_renewal", time.Since(lastRenew).Round(time.Millisecond))
			ru.loseLease()
			return
		case err != nil:
			if !failing {
				ru.e.log.WarnContext(ctx, "lease renewal failed; retrying", "rollout_id", ru.r.ID, "err", err,
					"since_renewal", time.Since(lastRenew).Round(time.Millisecond))
			}
			failing = true
			continue // the store is away; writes wait for it, and so do commands once the lease runs out
		default:
			ru.request(cur)
		}
	}
}

// ended reports whether this driver has ended the rollout.
func (ru *run) ended() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.r.Phase.Ended()
}

// loseLease stops the run for good: another process may drive the rollout now.
func (ru *run) loseLease() {
	ru.lease.lost()
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.fatal == nil {
		ru.fatal = ErrLeaseLost
	}
}

// notify sends an event with a snapshot of the progress.
func (ru *run) notify(kind EventKind, hr *HostResult, st Stage, pause time.Duration) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.emit(kind, hr, st, pause)
}

// emit is notify with mu held.
func (ru *run) emit(kind EventKind, hr *HostResult, st Stage, pause time.Duration) {
	if ru.e.cfg.Notifier == nil {
		return
	}
	ru.e.cfg.Notifier.Notify(Event{
		Kind:  kind,
		At:    ru.e.clock.Now(),
		Host:  hr,
		Stage: st,
		Pause: pause,
		Progress: Progress{
			Rollout:       ru.r,
			Stages:        ru.stages,
			Counts:        ru.counts,
			StageDone:     ru.stageDone,
			StageFailures: ru.segFailures,
			Recent:        slices.Clone(ru.recent),
		},
	})
}
