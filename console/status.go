package console

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// WriteStatus prints where a rollout is: state, stage, counts, whether its
// driver stalled at now (the store's clock), and its failed and rolled-back
// hosts (at most limit of them; 0 lists all).
func WriteStatus(w io.Writer, r *rollout.Rollout, results []rollout.HostResult, limit int, now time.Time) {
	WriteStatusMore(w, r, results, limit, now, "rolloutbot rollout status --failed")
}

// WriteStatusMore is WriteStatus whose lists, when cut at limit, point to
// more: where the rest can be seen.
func WriteStatusMore(w io.Writer, r *rollout.Rollout, results []rollout.HostResult, limit int, now time.Time, more string) {
	c := rollout.CountResults(results)
	fmt.Fprintf(w, "rollout #%d: %s, %s\n", r.ID, r.Version, rollout.Outcome(r, c))
	fmt.Fprintf(w, "  started by %s (%s) at %s", r.StartedBy, r.Source, r.CreatedAt.Local().Format(time.DateTime))
	if !r.FinishedAt.IsZero() {
		fmt.Fprintf(w, ", ended after %s", r.FinishedAt.Sub(r.CreatedAt).Round(time.Second))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  hosts: %d — %s; shuffled with seed %d (--seed %d repeats the order)\n", r.Hosts, c, r.Seed, r.Seed)
	var stages []string
	for _, st := range r.StageList() {
		s := fmt.Sprintf("%d%% (%d)", st.Percent, st.Size())
		if st.Index == r.Stage && r.Phase.Active() && r.Phase != rollout.PhaseRollingBack {
			s = "[" + s + "]"
		}
		stages = append(stages, s)
	}
	fmt.Fprintf(w, "  stages: %s\n", strings.Join(stages, " → "))
	if cut := c.Updating + c.Undo.Restoring; r.Phase.Active() && r.Owner == "" && cut > 0 {
		fmt.Fprintf(w, "  no process drives it now: the %d %s in flight were cut off and are re-checked when it goes on (`rollout resume`)\n",
			cut, rollout.Plural(cut, "host", "hosts"))
	}
	if d := r.Stalled(now); d > 0 {
		fmt.Fprintf(w, "  %s\n", StalledLine(r, d))
	}
	if h := r.Halt; r.Phase.Active() && h != nil {
		if h.Auto() {
			fmt.Fprintf(w, "  halting: %s\n", h.Reason)
		} else {
			fmt.Fprintf(w, "  halting: asked by %s%s\n", h.By, prefixed(": ", h.Reason))
		}
	}
	if r.Undo != nil {
		writeUndo(w, r, results, c.Undo, limit, more)
	}
	if r.Phase.Holding() {
		fmt.Fprintf(w, "  %s\n", r.Waiting(time.Now()))
	}
	if r.Phase == rollout.PhasePaused {
		fmt.Fprintf(w, "  paused: the next stage starts at %s\n", r.WaitUntil.Local().Format(time.TimeOnly))
	}
	var failures []rollout.HostResult
	for _, hr := range results {
		if hr.Status.Failure() {
			failures = append(failures, hr)
		}
	}
	if len(failures) == 0 {
		return
	}
	fmt.Fprintf(w, "  failures (%d):\n", len(failures))
	for i, hr := range failures {
		if limit > 0 && i == limit {
			fmt.Fprintf(w, "    … and %d more (%s)\n", len(failures)-limit, more)
			break
		}
		fmt.Fprintf(w, "    %s %-20s %-11s at %-8s %s\n", mark(hr.Status), hr.Host.ID, hr.Status, hr.Step, Clip(hr.Error, 120))
	}
}

// writeUndo prints a rollout's rollback: who asked, where it is, and the
// hosts that could not be put back or were left alone, with why.
func writeUndo(w io.Writer, r *rollout.Rollout, results []rollout.HostResult, u rollout.UndoCounts, limit int, more string) {
	fmt.Fprintf(w, "  rollback: asked by %s at %s%s\n", r.Undo.By, r.Undo.At.Local().Format(time.DateTime), prefixed(": ", r.Undo.Reason))
	switch {
	case r.Undo.Epoch > 0: // begun
		fmt.Fprintf(w, "  rollback: %d %s — %s\n", u.Total(), rollout.Plural(u.Total(), "host", "hosts"), u)
		if r.Phase == rollout.PhaseHalted {
			fmt.Fprintf(w, "  the rollback is halted: `rolloutbot rollout resume` continues it\n")
		}
	case r.Phase.Active():
		fmt.Fprintf(w, "  rollback: not begun; the rollout halts first, the hosts in flight finish\n")
	default:
		fmt.Fprintf(w, "  rollback: not begun, the rollout ended first: `rolloutbot rollout rollback` begins it\n")
	}
	var bad []rollout.HostResult
	for _, hr := range results {
		if hr.Undo.Status == rollout.UndoFailed || hr.Undo.Status == rollout.UndoLeft {
			bad = append(bad, hr)
		}
	}
	if len(bad) == 0 {
		return
	}
	fmt.Fprintf(w, "  not put back (%d):\n", len(bad))
	for i, hr := range bad {
		if limit > 0 && i == limit {
			fmt.Fprintf(w, "    … and %d more (%s)\n", len(bad)-limit, more)
			break
		}
		what, mark := "failed", "✗"
		if hr.Undo.Status == rollout.UndoLeft {
			what, mark = "left alone", "?"
		}
		fmt.Fprintf(w, "    %s %-20s %-11s %s\n", mark, hr.Host.ID, what, Clip(hr.Undo.Error, 120))
	}
}

// WriteHost prints everything known of one host's update.
func WriteHost(w io.Writer, hr rollout.HostResult) {
	fmt.Fprintf(w, "%s (%s", hr.Host.ID, hr.Host.Addr())
	if hr.Host.Label != "" {
		fmt.Fprintf(w, ", %s", hr.Host.Label)
	}
	fmt.Fprintf(w, "): %s", hr.Status)
	if hr.Step != "" && hr.Status != rollout.StatusSuccess {
		fmt.Fprintf(w, " at %s", hr.Step)
	}
	fmt.Fprintln(w)
	if hr.PrevVersion != "" || hr.NewVersion != "" {
		fmt.Fprintf(w, "  version: %s → %s\n", orDash(hr.PrevVersion), orDash(hr.NewVersion))
	}
	if !hr.StartedAt.IsZero() {
		fmt.Fprintf(w, "  started %s", hr.StartedAt.Local().Format(time.DateTime))
		if !hr.FinishedAt.IsZero() {
			fmt.Fprintf(w, ", took %s", hr.FinishedAt.Sub(hr.StartedAt).Round(time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	if hr.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", hr.Error)
	}
	if out := strings.TrimRight(hr.Output, "\n"); out != "" {
		fmt.Fprintf(w, "  output (tail):\n    %s\n", strings.ReplaceAll(out, "\n", "\n    "))
	}
	if u := hr.Undo; u.Status != rollout.UndoNone {
		fmt.Fprintf(w, "  rollback: %s", strings.ReplaceAll(string(u.Status), "_", " "))
		if u.Status == rollout.UndoRestored {
			fmt.Fprintf(w, " (back on %s)", orDash(hr.PrevVersion))
		}
		if !u.StartedAt.IsZero() && !u.FinishedAt.IsZero() {
			fmt.Fprintf(w, ", took %s", u.FinishedAt.Sub(u.StartedAt).Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		if u.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", u.Error)
		}
		if out := strings.TrimRight(u.Output, "\n"); out != "" {
			fmt.Fprintf(w, "    output (tail):\n      %s\n", strings.ReplaceAll(out, "\n", "\n      "))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteHistory prints one line per rollout, newest first.
func WriteHistory(w io.Writer, rs []*rollout.Rollout, counts map[int64]rollout.Counts) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no rollouts yet")
		return
	}
	for _, r := range rs {
		fmt.Fprintf(w, "#%-4d %-16s %s  by %-12s %s — %s\n", r.ID, Clip(r.Version, 16), r.CreatedAt.Local().Format("2006-01-02 15:04"),
			Clip(r.StartedBy, 12), rollout.Outcome(r, counts[r.ID]), counts[r.ID])
	}
}

// StalledLine says that r's driver let its lease run out d ago (see
// rollout.Rollout.Stalled), and what makes the rollout go on.
func StalledLine(r *rollout.Rollout, d time.Duration) string {
	return fmt.Sprintf("its driver %s let its lease run out %s ago: it stopped, froze or lost the store; it goes on if that process comes back, a running `serve` takes it over, or `rollout resume` does",
		r.Owner, d.Round(time.Second))
}
