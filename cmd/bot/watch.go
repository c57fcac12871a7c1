package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// watchEvery is how often a watch reads the store.
const watchEvery = 250 * time.Millisecond

// rolloutWatch follows the active rollout, or --id N, live.
func (m *Main) rolloutWatch(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout watch")
	id := fs.Int64("id", 0, "rollout `N` (default: the active one, else the last)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	return m.watchRollout(ctx, *cfgPath, *id)
}

// watchRollout follows a rollout whoever drives it (serve, another
// terminal) by reading the store, with the display `rollout start` draws,
// and ends with its final state and that state's exit code. It changes
// nothing; Ctrl-C stops watching, not the rollout.
func (m *Main) watchRollout(ctx context.Context, cfgPath string, id int64) error {
	db, err := m.storeOnly(ctx, cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if id == 0 {
		if r, err := db.ActiveRollout(ctx); err == nil {
			id = r.ID
		} else if !errors.Is(err, rollout.ErrNotFound) {
			return err
		}
	}
	r, err := currentOrLast(ctx, db, id)
	if err != nil {
		return err
	}
	if r.Phase.Ended() {
		// Nothing to follow: its final state, as status shows it.
		results, err := db.HostResults(ctx, r.ID)
		if err != nil {
			return err
		}
		console.WriteStatus(m.Stdout, r, results, 20, storeNow(ctx, db))
		return outcome(r, rollout.CountResults(results), goalOf(r))
	}
	progress := console.NewProgress(m.Stdout, m.TTY)
	w := newWatcher(progress)
	stopTicking := progress.Ticking(time.Second)
	defer stopTicking()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		results, err := db.HostResults(ctx, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		w.update(r, results, time.Now())
		w.driver(r, storeNow(ctx, db))
		if r.Phase.Ended() {
			stopTicking()
			progress.Finish()
			fmt.Fprintln(m.Stdout)
			console.WriteStatus(m.Stdout, r, results, 20, storeNow(ctx, db))
			return outcome(r, rollout.CountResults(results), goalOf(r))
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		if r, err = db.Rollout(ctx, r.ID); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
	}
	stopTicking()
	progress.Finish()
	fmt.Fprintf(m.Stdout, "stopped watching %s; it goes on (`rolloutbot rollout status` shows it)\n", subject(r))
	return errActive
}

// watcher turns snapshots of a rollout read from the store into the events
// its driver would have sent, for the same display. Stages that began and
// ended between two snapshots are shown too, each once, in order.
type watcher struct {
	progress *console.Progress
	prev     *rollout.Rollout
	seen     map[int]rollout.HostResult // by index: the last status shown
	started  int                        // the last stage whose start was shown; -1: none
	done     int                        // the last stage whose end was shown; -1: none
	stalled  string                     // the driver whose run-out lease was shown
}

func newWatcher(p *console.Progress) *watcher {
	return &watcher{progress: p, seen: map[int]rollout.HostResult{}, started: -1, done: -1}
}

func (w *watcher) update(r *rollout.Rollout, results []rollout.HostResult, now time.Time) {
	stages := r.StageList()
	pr := rollout.Progress{Rollout: *r, Stages: stages, Counts: rollout.CountResults(results), Recent: rollout.RecentFailures(results)}
	if r.Stage < len(stages) {
		pr.StageDone, pr.StageFailures = stageCounts(stages[r.Stage], results)
	}
	emit := func(kind rollout.EventKind, at time.Time, f func(*rollout.Event)) {
		ev := rollout.Event{Kind: kind, At: at, Progress: pr}
		if f != nil {
			f(&ev)
		}
		w.progress.Notify(ev)
	}
	prev := w.prev
	w.prev = r
	begun, over := stagesReached(r, len(stages))
	if prev == nil {
		// The clock counts from the rollout's start, as its driver's does;
		// the stages before this one are history.
		emit(rollout.EventStarted, r.CreatedAt, nil)
		for _, hr := range results {
			w.seen[hr.Index] = hr
		}
		w.started, w.done = begun, over
		if r.Phase == rollout.PhaseRunning {
			w.started--
		}
		if r.Phase == rollout.PhaseRollingBack {
			emit(rollout.EventUndoStarted, now, nil)
		}
		if r.Halt != nil && r.Phase.Active() {
			emit(rollout.EventHalting, now, nil)
		}
	}
	for _, hr := range results {
		old, ok := w.seen[hr.Index]
		w.seen[hr.Index] = hr
		if !ok || (old.Status == hr.Status && old.Undo.Status == hr.Undo.Status) {
			continue
		}
		if hr.Status.Done() && old.Status != hr.Status || r.Phase == rollout.PhaseRollingBack && old.Undo.Status != hr.Undo.Status {
			emit(rollout.EventHostDone, now, func(ev *rollout.Event) { h := hr; ev.Host = &h })
		}
	}
	for i := min(w.started, w.done) + 1; i <= max(begun, over); i++ {
		st := stages[i]
		if i > w.started && i <= begun {
			emit(rollout.EventStageStarted, now, func(ev *rollout.Event) { ev.Stage = st })
			w.started = i
		}
		if i > w.done && i <= over {
			emit(rollout.EventStageDone, now, func(ev *rollout.Event) {
				ev.Stage = st
				ev.Progress.StageDone, ev.Progress.StageFailures = stageCounts(st, results)
			})
			w.done = i
		}
	}
	if prev == nil {
		emit(rollout.EventHostStarted, now, nil) // draws the bar
		return
	}
	switch {
	case r.Phase == rollout.PhaseRollingBack && prev.Phase != rollout.PhaseRollingBack:
		emit(rollout.EventUndoStarted, now, nil)
	case r.Phase == rollout.PhasePaused && prev.Phase != rollout.PhasePaused:
		emit(rollout.EventPaused, now, func(ev *rollout.Event) { ev.Pause = r.WaitUntil.Sub(r.UpdatedAt).Round(time.Second) })
	}
	if r.Halt != nil && prev.Halt == nil && r.Phase.Active() {
		emit(rollout.EventHalting, now, nil)
	}
	if r.Phase.Ended() {
		emit(rollout.EventEnded, now, nil)
		return
	}
	emit(rollout.EventHostStarted, now, nil) // redraws the bar
}

// driver says when the rollout's driver lets its lease run out (at now, on
// the store's clock), as nothing then moves, and when that ends: the driver
// renewed its lease, or another process took the rollout over.
func (w *watcher) driver(r *rollout.Rollout, now time.Time) {
	log := w.progress.Log()
	switch d := r.Stalled(now); {
	case d > 0 && w.stalled != r.Owner:
		w.stalled = r.Owner
		fmt.Fprintf(log, "  %s\n", console.StalledLine(r, d))
	case d > 0 || w.stalled == "":
	case r.Owner == w.stalled:
		w.stalled = ""
		fmt.Fprintf(log, "  its driver %s renewed its lease and goes on\n", r.Owner)
	case r.Owner != "":
		w.stalled = ""
		fmt.Fprintf(log, "  %s took the rollout over\n", r.Owner)
	case r.Phase.Ended():
		w.stalled = ""
	}
}

// stagesReached says, from a snapshot, the last of n stages that began
// and the last that ended (-1: none).
func stagesReached(r *rollout.Rollout, n int) (begun, over int) {
	s := min(r.Stage, n-1)
	switch r.Phase {
	case rollout.PhaseCompleted:
		return n - 1, n - 1
	case rollout.PhasePaused, rollout.PhaseGated, rollout.PhaseBaking:
		return s, s // Stage is done
	case rollout.PhaseFrozen, rollout.PhaseWindow:
		return s - 1, s - 1 // Stage has yet to begin, or to go on
	default: // running, and the ends that stop a stage midway
		return s, s - 1
	}
}

// stageCounts is how many of a stage's hosts ended, and how many failed.
func stageCounts(st rollout.Stage, results []rollout.HostResult) (done, failures int) {
	for _, hr := range results {
		if hr.Index >= st.Start && hr.Index < st.End {
			if hr.Status.Done() {
				done++
			}
			if hr.Status.Failure() {
				failures++
			}
		}
	}
	return done, failures
}
