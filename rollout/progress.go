package rollout

import (
	"fmt"
	"strings"
	"time"
)

// Counts is the number of hosts in each status.
type Counts struct {
	Pending, Updating, Success, Failed, RolledBack, Skipped int
	Undo                                                    UndoCounts // of a rollback of the rollout
}

// Add counts d more hosts in status s.
func (c *Counts) Add(s Status, d int) {
	switch s {
	case StatusPending:
		c.Pending += d
	case StatusUpdating:
		c.Updating += d
	case StatusSuccess:
		c.Success += d
	case StatusFailed:
		c.Failed += d
	case StatusRolledBack:
		c.RolledBack += d
	case StatusSkipped:
		c.Skipped += d
	}
}

// Done is the number of hosts whose update has ended.
func (c Counts) Done() int { return c.Success + c.Failed + c.RolledBack + c.Skipped }

// Total is the number of hosts.
func (c Counts) Total() int { return c.Pending + c.Updating + c.Done() }

// CountResults tallies host results by status.
func CountResults(rs []HostResult) Counts {
	var c Counts
	for _, r := range rs {
		c.Add(r.Status, 1)
		c.Undo.Add(r.Undo.Status, 1)
	}
	return c
}

// String is a short tally, e.g. "37 updated, 1 skipped, 2 rolled back".
func (c Counts) String() string {
	var t tally
	t.add(c.Success, "updated")
	t.add(c.Skipped, "skipped")
	t.add(c.RolledBack, "rolled back")
	t.add(c.Failed, "failed")
	t.add(c.Updating, "in flight")
	t.add(c.Pending, "not started")
	return t.or("no hosts")
}

// tally is "N what" parts, for the non-zero counts.
type tally []string

func (t *tally) add(n int, what string) {
	if n > 0 {
		*t = append(*t, fmt.Sprintf("%d %s", n, what))
	}
}

// or joins the parts, or says none when there is none.
func (t tally) or(none string) string {
	if len(t) == 0 {
		return none
	}
	return strings.Join(t, ", ")
}

// Outcome says how a rollout ended, never a bare "success": a completed rollout
// with rolled-back or failed hosts says so.
func Outcome(r *Rollout, c Counts) string {
	switch r.Phase {
	case PhaseCompleted:
		var extra []string
		if c.RolledBack > 0 {
			extra = append(extra, fmt.Sprintf("%d rolled back", c.RolledBack))
		}
		if c.Failed > 0 {
			extra = append(extra, fmt.Sprintf("%d failed", c.Failed))
		}
		if len(extra) == 0 {
			return "completed"
		}
		return "completed, " + strings.Join(extra, ", ")
	case PhaseHalted:
		if r.Undo != nil && r.Halt != nil {
			return "rollback " + r.Halt.String() + " (" + c.Undo.String() + ")"
		}
		if r.Halt != nil {
			return r.Halt.String()
		}
		return "halted"
	case PhaseRolledBack:
		return "rolled back: " + c.Undo.String()
	case PhaseFailed:
		if r.Error != "" {
			return "failed: " + r.Error
		}
		return "failed"
	}
	return "running (" + r.Label() + ")"
}

// EventKind names what happened.
type EventKind string

// Event kinds, in the order a rollout produces them.
const (
	EventStarted      EventKind = "started" // a driver took the rollout up (new, resumed or taken over)
	EventHalting      EventKind = "halting" // a halt was asked for, or the threshold crossed; hosts in flight are finishing
	EventStageStarted EventKind = "stage_started"
	EventHostStarted  EventKind = "host_started"
	EventHostDone     EventKind = "host_done" // after the result is persisted
	EventStageDone    EventKind = "stage_done"
	EventPaused       EventKind = "paused"
	// EventWaiting: the rollout waits for a freeze to end or a window to
	// open (Rollout.Phase, WaitFor, WaitUntil).
	EventWaiting EventKind = "waiting"
	// EventWaitOver: the wait ended, or a halt or shutdown cut it short;
	// Pause is how long this process waited (Rollout.Phase says for what).
	EventWaitOver    EventKind = "wait_over"
	EventBaking      EventKind = "baking"       // the checks run until the bake ends; Pause is the bake time
	EventGated       EventKind = "gated"        // waiting at a manual gate; Pause is its timeout, 0 for none
	EventPromoted    EventKind = "promoted"     // the gate was promoted (Progress.Rollout.Promote says by whom)
	EventStopping    EventKind = "stopping"     // shutdown: no new host starts; Pause is the grace for the hosts in flight
	EventUndoStarted EventKind = "undo_started" // a driver began or took up the rollback
	EventEnded       EventKind = "ended"        // completed, halted, failed or rolled back; after it is persisted
	// EventStopped: this driver stopped without an end (shut down, its
	// lease lost, the store away); another driver or the next start takes
	// the rollout up, and this process tells nothing more of it.
	EventStopped EventKind = "stopped"
	// EventLeaseRanOut: this driver's lease ran out before a renewal came
	// (the store slow or away, the process paused). No host command starts
	// until the store renews it; if another process claimed the rollout
	// meanwhile, EventStopped follows.
	EventLeaseRanOut EventKind = "lease_ran_out"
)

// Event is one step of a rollout's progress, with a snapshot of the whole.
type Event struct {
	Kind     EventKind
	At       time.Time
	Progress Progress
	Host     *HostResult   // for host events
	Stage    Stage         // the stage concerned
	Pause    time.Duration // for EventPaused; the grace, for EventStopping
}

// Progress is a rollout's state at one moment, enough to render it.
type Progress struct {
	Rollout       Rollout
	Stages        []Stage
	Counts        Counts
	StageDone     int // hosts of the current stage that ended
	StageFailures int // failures counted toward the current stage's threshold
	Recent        []HostResult
}

// StageInfo returns the stage the rollout is in.
func (p Progress) StageInfo() Stage {
	if p.Rollout.Stage < len(p.Stages) {
		return p.Stages[p.Rollout.Stage]
	}
	return Stage{}
}

// maxRecent is how many of the latest failures a progress snapshot carries.
const maxRecent = 10

// RecentFailures is what Progress.Recent holds for a rollout read back from
// the store: the last failed or rolled-back hosts of results.
func RecentFailures(results []HostResult) []HostResult {
	var recent []HostResult
	for _, hr := range results {
		if hr.Status.Failure() {
			recent = appendRecent(recent, hr)
		}
	}
	return recent
}
