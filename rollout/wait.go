package rollout

import (
	"context"
	"time"
)

// The run's waits for the calendar: a freeze holds it at a stage boundary, a
// closed window before any host starts. Both are phases (PhaseFrozen,
// PhaseWindow) with WaitUntil and WaitFor, so a takeover goes on waiting;
// the overrides on the rollout (FreezeOverride, Anytime) lift them, and a
// request that changes them (wake) makes the wait look again.

// mayStart decides whether the run may start hosts now: the hold that keeps
// it, or nil and until when hosts may start (zero: no limit). Freezes hold
// only at a stage boundary: before any host of the stage started. A store
// that cannot be read for freezes holds nothing back here: the run's writes
// wait for it anyway.
func (ru *run) mayStart(ctx context.Context) (*Hold, time.Time) {
	r := ru.snapshot()
	if r.Phase == PhaseRollingBack {
		return nil, time.Time{} // a rollback is never held back
	}
	h, until, err := ru.e.Hold(ctx, &r, ru.atBoundary())
	if err != nil {
		ru.e.log.WarnContext(ctx, "read freezes", "rollout_id", r.ID, "err", err)
		return nil, time.Time{}
	}
	return h, until
}

// atBoundary reports whether no host of the current stage has started.
func (ru *run) atBoundary() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	st := ru.stages[ru.r.Stage]
	for _, hr := range ru.results[st.Start:st.End] {
		if hr.Status != StatusPending {
			return false
		}
	}
	return true
}

// pendingInStage reports whether a host of the current stage has yet to start.
func (ru *run) pendingInStage() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	st := ru.stages[ru.r.Stage]
	for _, hr := range ru.results[st.Start:st.End] {
		if hr.Status == StatusPending {
			return true
		}
	}
	return false
}

// holdIfNeeded puts the run in the waiting phase that holds it, if one
// does, and reports whether it did; else it sets until when hosts may start.
func (ru *run) holdIfNeeded(ctx, hostCtx context.Context) (bool, error) {
	if !ru.pendingInStage() {
		return false, nil // nothing left to start: the stage ends
	}
	h, until := ru.mayStart(ctx)
	if h == nil {
		ru.mu.Lock()
		ru.openUntil = until
		ru.mu.Unlock()
		return false, nil
	}
	ru.mu.Lock()
	ru.r.Phase, ru.r.WaitUntil, ru.r.WaitFor = h.Phase, h.Until, h.For
	ru.r.UpdatedAt = ru.e.clock.Now()
	r := ru.r
	if ru.waitSince.IsZero() {
		ru.waitSince = ru.e.clock.Now()
	}
	ru.mu.Unlock()
	if err := ru.persistRollout(hostCtx, &r); err != nil {
		return true, err
	}
	ru.e.log.InfoContext(ctx, "rollout waits", "rollout_id", r.ID, "phase", r.Phase, "for", r.WaitFor)
	ru.notify(EventWaiting, nil, ru.stages[r.Stage], 0)
	return true, nil
}

// windowClosed reports, with mu held, whether the window hosts may start in
// has closed; never in a rollback.
func (ru *run) windowClosedLocked() bool {
	return ru.r.Phase != PhaseRollingBack && !ru.openUntil.IsZero() && !ru.e.clock.Now().Before(ru.openUntil)
}

// waitHold sleeps through a frozen or window phase. It returns true when the
// wait is over: its end came, or what holds the rollout changed (a freeze
// set, ended or overridden, looked for every poll interval); false when a
// halt or shutdown came first. Either way EventWaitOver says how long this
// process waited.
func (ru *run) waitHold(ctx context.Context, r Rollout) bool {
	ru.mu.Lock()
	takenOver := ru.waitSince.IsZero()
	if takenOver {
		ru.waitSince = ru.e.clock.Now()
	}
	ru.mu.Unlock()
	if takenOver {
		ru.notify(EventWaiting, nil, ru.stages[r.Stage], 0) // taken over, or resumed, while waiting
	}
	over := ru.sleepHold(ctx, r)
	ru.mu.Lock()
	waited := ru.e.clock.Now().Sub(ru.waitSince)
	ru.waitSince = time.Time{}
	ru.mu.Unlock()
	ru.notify(EventWaitOver, nil, ru.stages[r.Stage], waited)
	return over
}

func (ru *run) sleepHold(ctx context.Context, r Rollout) bool {
	var due <-chan time.Time
	if !r.WaitUntil.IsZero() {
		due = ru.e.clock.After(r.WaitUntil.Sub(ru.e.clock.Now()))
	}
	poll := time.NewTicker(ru.e.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-due:
			return true
		case <-ru.wake:
			return true
		case <-ru.haltCh:
			return false
		case <-ctx.Done():
			return false
		case <-poll.C:
			h, _ := ru.mayStart(ctx)
			if h == nil || h.Phase != r.Phase || !h.Until.Equal(r.WaitUntil) || h.For != r.WaitFor {
				return true
			}
		}
	}
}

// takeOverrides takes up overrides recorded by another process (promote,
// anytime) and wakes a wait to look again; mu is held.
func (ru *run) takeOverridesLocked(cur *Rollout) {
	changed := false
	if cur.FreezeOverride != nil && (ru.r.FreezeOverride == nil || !cur.FreezeOverride.At.Equal(ru.r.FreezeOverride.At)) {
		o := *cur.FreezeOverride
		ru.r.FreezeOverride, changed = &o, true
	}
	if cur.Anytime != nil && ru.r.Anytime == nil {
		o := *cur.Anytime
		ru.r.Anytime, changed = &o, true
	}
	if changed {
		ru.openUntil = time.Time{}
		signal(ru.wake)
	}
}
