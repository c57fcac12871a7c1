package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// run drives one rollout in this process.
type run struct {
	e      *Engine
	w      *writer
	stages []Stage
	haltCh chan struct{}

	mu          sync.Mutex
	r           Rollout // the run's view; copies go out in events
	results     []HostResult
	counts      Counts
	segFailures int // failures counted toward the current stage's threshold
	segSize     int
	stageDone   int
	tripped     bool // the current stage's threshold was crossed
	halted      bool
	haltBy      string
	haltReason  string
	fatal       error // the store refused us for good (lease lost)
	recent      []HostResult
}

func newRun(e *Engine, r *Rollout, results []HostResult) *run {
	ru := &run{e: e, r: *r, results: results, stages: r.StageList(), haltCh: make(chan struct{})}
	ru.counts = CountResults(results)
	// Hosts left updating by a dead driver are pending until re-checked.
	ru.counts.Pending += ru.counts.Updating
	ru.counts.Updating = 0
	ru.recent = RecentFailures(results)
	if r.HaltRequestedBy != "" {
		ru.requestHalt(r.HaltRequestedBy, r.HaltReason)
	}
	return ru
}

func (ru *run) requestHalt(by, reason string) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.halted {
		return
	}
	ru.halted, ru.haltBy, ru.haltReason = true, by, reason
	ru.r.HaltRequestedBy, ru.r.HaltReason = by, reason
	close(ru.haltCh)
	ru.emit(EventHalting, nil, ru.stages[ru.r.Stage], 0)
}

func (ru *run) drive(ctx context.Context) (*Rollout, error) {
	log := ru.e.log.With("rollout_id", ru.r.ID)
	// In-flight hosts outlive ctx by the grace period, so a shutdown lets them finish.
	hostCtx, cancelHosts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHosts()
	stopGrace := context.AfterFunc(ctx, func() {
		select {
		case <-time.After(ru.e.cfg.Grace):
			cancelHosts()
		case <-hostCtx.Done():
		}
	})
	defer stopGrace()

	ru.w = newWriter(ru.e.cfg.Store, ru.e.cfg.Owner, log)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); ru.w.loop(hostCtx) }()
	defer func() { cancelHosts(); <-writerDone }()

	watchCtx, stopWatch := context.WithCancel(hostCtx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); ru.watch(watchCtx) }()
	defer func() { stopWatch(); <-watchDone }()

	ru.notify(EventStarted, nil, ru.stages[ru.r.Stage], 0)
	for k := ru.r.Stage; k < len(ru.stages); k++ {
		st := ru.stages[k]
		if st.Size() == 0 {
			continue
		}
		if k != ru.r.Stage {
			ru.mu.Lock()
			ru.r.Stage, ru.r.State, ru.r.SegmentStart = k, StageState(st.Percent), st.Start
			ru.r.UpdatedAt = ru.e.clock.Now()
			r := ru.r
			ru.mu.Unlock()
			if err := ru.persistRollout(hostCtx, &r); err != nil {
				return ru.stopped(ctx, err)
			}
		}
		ru.beginStage(st)
		log.InfoContext(ctx, "stage started", "stage", st.Percent, "hosts", st.Size())
		ru.notify(EventStageStarted, nil, st, 0)
		ru.runStage(ctx, hostCtx, st)

		ru.mu.Lock()
		halted, tripped, fatal := ru.halted, ru.tripped, ru.fatal
		failures, size := ru.segFailures, ru.segSize
		remaining := st.Size() - ru.stageDone
		ru.mu.Unlock()
		switch {
		case fatal != nil:
			return ru.stopped(ctx, fatal)
		case tripped:
			return ru.finish(hostCtx, StateHalted, "rolloutbot", fmt.Sprintf(
				"stage %d%%: %d of %d hosts failed, more than the %d%% threshold",
				st.Percent, failures, size, ru.r.Settings.Threshold))
		case ctx.Err() != nil && remaining > 0:
			return ru.stopped(ctx, ctx.Err())
		case halted && (remaining > 0 || ru.nextStage(k) >= 0):
			return ru.haltNow(hostCtx)
		}
		log.InfoContext(ctx, "stage done", "stage", st.Percent, "failures", failures)
		ru.notify(EventStageDone, nil, st, 0)

		if next := ru.nextStage(k); next >= 0 && ru.r.Settings.Pause > 0 {
			ru.notify(EventPaused, nil, st, ru.r.Settings.Pause)
			select {
			case <-ru.e.clock.After(ru.r.Settings.Pause):
			case <-ru.haltCh:
				return ru.haltNow(hostCtx)
			case <-ctx.Done():
				return ru.stopped(ctx, ctx.Err())
			}
		}
	}
	return ru.finish(hostCtx, StateCompleted, "", "")
}

// haltNow ends the rollout as halted on request.
func (ru *run) haltNow(ctx context.Context) (*Rollout, error) {
	ru.mu.Lock()
	by, reason := ru.haltBy, ru.haltReason
	ru.mu.Unlock()
	return ru.finish(ctx, StateHalted, by, haltReason(by, reason))
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
// which after a crash already hold some of its hosts.
func (ru *run) beginStage(st Stage) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	from := max(st.Start, ru.r.SegmentStart)
	ru.segSize = st.End - from
	ru.segFailures, ru.stageDone = 0, 0
	for i := st.Start; i < st.End; i++ {
		s := ru.results[i].Status
		if s.Done() {
			ru.stageDone++
		}
		if i >= from && s.Failure() {
			ru.segFailures++
		}
	}
	ru.tripped = Exceeds(ru.segFailures, ru.segSize, ru.r.Settings.Threshold)
}

// runStage updates the stage's unfinished hosts, at most Concurrency at once,
// and returns when none is in flight. It starts no host once the stage's
// threshold is crossed, a halt arrived, or ctx is cancelled.
func (ru *run) runStage(ctx, hostCtx context.Context, st Stage) {
	var todo []int
	for i := st.Start; i < st.End; i++ {
		if !ru.results[i].Status.Done() {
			todo = append(todo, i)
		}
	}
	next := 0
	var wg sync.WaitGroup
	for range min(ru.r.Settings.Concurrency, len(todo)) {
		wg.Go(func() {
			for {
				ru.mu.Lock()
				if next >= len(todo) || ru.halted || ru.tripped || ru.fatal != nil || ctx.Err() != nil {
					ru.mu.Unlock()
					return
				}
				i := todo[next]
				next++
				hr := ru.results[i]
				ru.counts.Add(StatusPending, -1)
				ru.counts.Add(StatusUpdating, 1)
				ru.emit(EventHostStarted, &hr, st, 0)
				ru.mu.Unlock()

				res, err := ru.updateHost(hostCtx, hr)
				if err == nil {
					err = ru.w.save(hostCtx, res)
				}
				ru.record(st, hr, res, err)
			}
		})
	}
	wg.Wait()
}

// record takes a host's result into the run's accounting; err means it could
// not be persisted, so it is not reported and the host stays as the store has it.
func (ru *run) record(st Stage, before, res HostResult, err error) {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.counts.Add(StatusUpdating, -1)
	if err != nil {
		ru.counts.Add(StatusPending, 1)
		if errors.Is(err, ErrLeaseLost) && ru.fatal == nil {
			ru.fatal = err
		}
		ru.e.log.Warn("host result not persisted; the host will be re-checked on resume",
			"rollout_id", ru.r.ID, "host", before.Host.ID, "status", res.Status, "err", err)
		return
	}
	ru.results[res.Index] = res
	ru.counts.Add(res.Status, 1)
	ru.stageDone++
	if res.Status.Failure() {
		ru.recent = appendRecent(ru.recent, res)
		if res.Index >= ru.r.SegmentStart {
			ru.segFailures++
			if Exceeds(ru.segFailures, ru.segSize, ru.r.Settings.Threshold) {
				ru.tripped = true
			}
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
func (ru *run) finish(ctx context.Context, state State, by, reason string) (*Rollout, error) {
	ru.mu.Lock()
	ru.r.State, ru.r.Reason = state, reason
	if state == StateHalted {
		ru.r.HaltedBy = by
	}
	ru.r.FinishedAt = ru.e.clock.Now()
	ru.r.UpdatedAt = ru.r.FinishedAt
	r := ru.r
	ru.mu.Unlock()
	if err := ru.persistRollout(ctx, &r); err != nil {
		return ru.stopped(ctx, err)
	}
	if state == StateHalted && by == "rolloutbot" {
		ru.e.Audit(ctx, AuditEntry{Actor: "rolloutbot", Source: r.Source, Action: "auto-halt", RolloutID: r.ID, Allowed: true, Detail: reason})
	}
	ru.release()
	ru.e.log.InfoContext(ctx, "rollout ended", "rollout_id", r.ID, "state", state, "reason", reason, "hosts", ru.counts.String())
	ru.notify(EventEnded, nil, ru.stages[r.Stage], 0)
	return &r, nil
}

// stopped ends the drive without ending the rollout: shutdown or a lost lease.
func (ru *run) stopped(ctx context.Context, cause error) (*Rollout, error) {
	if !errors.Is(cause, ErrLeaseLost) {
		ru.release()
	}
	ru.mu.Lock()
	r := ru.r
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

// watch renews the lease and looks for halts asked of another process.
func (ru *run) watch(ctx context.Context) {
	tick := time.NewTicker(ru.e.cfg.PollInterval)
	defer tick.Stop()
	lastRenew := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var cur *Rollout
		var err error
		if time.Since(lastRenew) >= ru.e.cfg.LeaseTTL/3 {
			cur, err = ru.e.cfg.Store.ClaimRollout(ctx, ru.r.ID, ru.e.cfg.Owner, time.Now(), ru.e.cfg.LeaseTTL)
			if err == nil {
				lastRenew = time.Now()
			}
		} else {
			cur, err = ru.e.cfg.Store.Rollout(ctx, ru.r.ID)
		}
		switch {
		case errors.Is(err, ErrLeaseLost) || (err == nil && cur.Owner != ru.e.cfg.Owner):
			ru.mu.Lock()
			if ru.fatal == nil {
				ru.fatal = ErrLeaseLost
			}
			ru.mu.Unlock()
			return
		case err != nil:
			continue // the store is away; writes wait for it
		case cur.HaltRequestedBy != "":
			ru.requestHalt(cur.HaltRequestedBy, cur.HaltReason)
		}
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
