// Package console shows rollouts in a terminal: live progress for the demo and
// the break-glass CLI, and plain-text status reports.
package console

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Progress renders rollout events as they happen. On a terminal a progress bar
// is redrawn in place under the event lines; elsewhere (a log, a pipe) a
// progress line is printed now and then instead.
type Progress struct {
	w        io.Writer
	tty      bool
	every    time.Duration
	mu       sync.Mutex
	lastBar  time.Time
	barShown bool
	start    time.Time
	last     *rollout.Progress // the latest snapshot, for redraws between events
	ended    bool
	partial  []byte // a log line not yet ended, see Log
}

var _ rollout.Notifier = (*Progress)(nil)

// NewProgress renders to w; tty says whether w is a terminal.
func NewProgress(w io.Writer, tty bool) *Progress {
	every := 2 * time.Second
	if tty {
		every = 100 * time.Millisecond
	}
	return &Progress{w: w, tty: tty, every: every}
}

// IsTerminal reports whether f is a character device, such as a terminal.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Interactive reports whether progress on f may be drawn in place: f is a
// terminal, TERM is not dumb and NO_COLOR is not set. Otherwise progress is
// plain lines.
func Interactive(f *os.File, getenv func(string) string) bool {
	return IsTerminal(f) && getenv("TERM") != "dumb" && getenv("NO_COLOR") == ""
}

// Tick redraws the bar with the latest snapshot at now, so the clock goes
// on during pauses and hosts that hang. Off a terminal it does nothing.
func (p *Progress) Tick(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != nil && !p.ended {
		p.bar(*p.last, now, true)
	}
}

// Ticking calls Tick every interval until stop is called (once or more).
func (p *Progress) Ticking(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				p.Tick(now)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

// Log is a writer for log lines: each line goes above the bar, which is
// drawn again under it, so logs never break the bar.
func (p *Progress) Log() io.Writer { return logWriter{p} }

type logWriter struct{ p *Progress }

func (l logWriter) Write(b []byte) (int, error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		p.line("%s", line)
		if p.tty && p.last != nil && !p.ended {
			p.bar(*p.last, time.Now(), true)
		}
	}
	return len(b), nil
}

// Notify implements rollout.Notifier.
func (p *Progress) Notify(ev rollout.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := ev.Progress
	p.last = &pr
	r := pr.Rollout
	switch ev.Kind {
	case rollout.EventStarted:
		if p.start.IsZero() {
			p.start = ev.At
		}
		if !p.tty {
			p.lastBar = ev.At // the first progress line comes one interval in
		}
		switch {
		case r.Undo != nil && r.Phase == rollout.PhaseRollingBack:
			p.line("rollout #%d (%s): rollback asked by %s%s", r.ID, r.Version, r.Undo.By, prefixed(": ", r.Undo.Reason))
		case r.Undo != nil:
			p.line("rollout #%d (%s): rollback asked by %s%s; halting it first, the hosts in flight finish",
				r.ID, r.Version, r.Undo.By, prefixed(": ", r.Undo.Reason))
		default:
			p.line("rollout #%d: %s to %d %s (stages %s %%, %d at once, halt above %d%% failed per stage), seed %d",
				r.ID, r.Version, r.Hosts, rollout.Plural(r.Hosts, "host", "hosts"), joinInts(r.Settings.Stages, "/"), r.Settings.Concurrency, r.Settings.Threshold, r.Seed)
		}
	case rollout.EventUndoStarted:
		u := pr.Counts.Undo
		togo := u.Pending + u.Restoring
		extra := ""
		if u.Done() > 0 {
			extra = fmt.Sprintf(" (%d done before)", u.Done())
		}
		p.line("↩ rolling back #%d (%s): %d %s to put back%s, newest first, %d at once", r.ID, r.Version,
			togo, rollout.Plural(togo, "host", "hosts"), extra, r.Settings.Concurrency)
	case rollout.EventHostDone:
		if r.Phase == rollout.PhaseRollingBack {
			p.undoLine(ev.Host)
			break
		}
		if h := ev.Host; h.Status.Failure() {
			p.line("  %s %s %s at %s: %s%s", mark(h.Status), h.Host.ID, strings.ReplaceAll(string(h.Status), "_", " "),
				h.Step, Clip(h.Error, 160), tailHint(h.Output))
		}
	case rollout.EventStageStarted:
		st := ev.Stage
		extra := ""
		if at := rollout.HaltsAt(r.SegmentSize(st), r.Settings.Threshold); at > 0 {
			extra = fmt.Sprintf(", halts at %d failed", at)
		}
		p.line("▶ stage %d%%: hosts %d–%d of %d%s", st.Percent, st.Start+1, st.End, r.Hosts, extra)
	case rollout.EventStageDone:
		n := ev.Stage.Size()
		p.line("✓ stage %d%% done: %d %s, %d failed; fleet: %s", ev.Stage.Percent, n, rollout.Plural(n, "host", "hosts"), pr.StageFailures, pr.Counts)
	case rollout.EventPaused:
		p.line("  pausing %s before the next stage", ev.Pause)
	case rollout.EventWaiting:
		p.line("  %s; no new host starts meanwhile", r.Waiting(ev.At))
	case rollout.EventWaitOver:
		if r.Halt == nil {
			p.line("  the wait is over after %s", ev.Pause.Round(time.Second))
		}
	case rollout.EventBaking:
		p.line("  baking %s: the checks run again and again before the next stage", ev.Pause)
	case rollout.EventGated:
		until := ""
		if ev.Pause > 0 {
			until = fmt.Sprintf(" (halts if nobody does within %s)", ev.Pause)
		}
		p.line("⏸ %s: `rolloutbot rollout promote` (or Promote in Slack) goes on%s", r.Label(), until)
	case rollout.EventPromoted:
		p.line("▶ promoted by %s", r.Promote.By)
	case rollout.EventHalting:
		switch {
		case r.Phase == rollout.PhaseRollingBack:
			p.line("■ halt of the rollback requested by %s%s; letting %s in flight finish", r.Halt.By, prefixed(": ", r.Halt.Reason), hosts(inFlight(pr)))
		case r.Undo != nil:
			p.line("■ rollback requested by %s%s: halting first; letting %s in flight finish", r.Undo.By, parens(r.Undo.Reason), hosts(inFlight(pr)))
		case r.Halt.Auto():
			p.line("■ halting: %s; letting %s in flight finish", r.Halt.Reason, hosts(inFlight(pr)))
		default:
			p.line("■ halt requested by %s%s; letting %s in flight finish", r.Halt.By, prefixed(": ", r.Halt.Reason), hosts(inFlight(pr)))
		}
	case rollout.EventStopped:
		return // the command's closing line says what is left
	case rollout.EventStopping:
		if n := inFlight(pr); n > 0 {
			p.line("■ stopping: waiting up to %s for %d %s in flight — Ctrl-C again to stop now", ev.Pause, n, rollout.Plural(n, "host", "hosts"))
		} else {
			p.line("■ stopping: no host is in flight")
		}
	case rollout.EventEnded:
		p.ended = true
		p.bar(pr, ev.At, true)
		if r.Undo != nil && (r.Phase == rollout.PhaseRolledBack || r.Phase == rollout.PhaseHalted) {
			// Outcome tallies the rollback; the update's counts would read as its result.
			p.line("■ rollout #%d %s in %s", r.ID, rollout.Outcome(&r, pr.Counts), p.elapsed(ev.At))
			return
		}
		p.line("■ rollout #%d %s — %s in %s", r.ID, rollout.Outcome(&r, pr.Counts), pr.Counts, p.elapsed(ev.At))
		return
	}
	p.bar(pr, ev.At, false)
}

// undoLine prints a host of a rollback that could not be put back, or was
// left alone; the hosts put back get no line of their own.
func (p *Progress) undoLine(h *rollout.HostResult) {
	switch h.Undo.Status {
	case rollout.UndoFailed:
		p.line("  ✗ %s not put back on %s: %s%s", h.Host.ID, orDash(h.PrevVersion), Clip(h.Undo.Error, 160), tailHint(h.Undo.Output))
	case rollout.UndoLeft:
		p.line("  ? %s left alone: %s", h.Host.ID, Clip(h.Undo.Error, 160))
	}
}

// inFlight is the number of hosts being updated, or put back in a rollback.
func inFlight(pr rollout.Progress) int {
	if pr.Rollout.Phase == rollout.PhaseRollingBack {
		return pr.Counts.Undo.Restoring
	}
	return pr.Counts.Updating
}

func (p *Progress) elapsed(now time.Time) time.Duration {
	if p.start.IsZero() {
		return 0
	}
	return now.Sub(p.start).Round(100 * time.Millisecond)
}

// line prints an event line above the progress bar.
func (p *Progress) line(format string, a ...any) {
	if p.barShown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.barShown = false
	}
	fmt.Fprintf(p.w, format+"\n", a...)
	if p.tty {
		p.lastBar = time.Time{} // redraw the bar right under it
	}
}

// bar draws the progress bar, at most every p.every unless forced; off a
// terminal it prints a progress line instead, and none at the end, where the
// last line says it all.
func (p *Progress) bar(pr rollout.Progress, now time.Time, force bool) {
	if !force && now.Sub(p.lastBar) < p.every {
		return
	}
	if !p.tty && force {
		return
	}
	p.lastBar = now
	const width = 30
	var text string
	if u := pr.Counts.Undo; pr.Rollout.Phase == rollout.PhaseRollingBack || (pr.Rollout.Undo != nil && u.Total() > 0) {
		total := max(u.Total(), 1)
		filled := u.Done() * width / total
		text = fmt.Sprintf("[%s%s] %d/%d  rolling back  ↩%d ✗%d ?%d  ⋯%d in flight  %s",
			strings.Repeat("█", filled), strings.Repeat("░", width-filled), u.Done(), u.Total(),
			u.Restored+u.NotNeeded, u.Failed, u.Left, u.Restoring, p.elapsed(now))
	} else {
		c := pr.Counts
		total := max(c.Total(), 1)
		filled := c.Done() * width / total
		text = fmt.Sprintf("[%s%s] %d/%d  stage %d%%  ✓%d ↷%d ↺%d ✗%d  ⋯%d in flight  %s",
			strings.Repeat("█", filled), strings.Repeat("░", width-filled), c.Done(), c.Total(), pr.StageInfo().Percent,
			c.Success, c.Skipped, c.RolledBack, c.Failed, c.Updating, p.elapsed(now))
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K"+text)
		p.barShown = true
	} else {
		fmt.Fprintln(p.w, text)
	}
}

// Finish ends the in-place bar with a newline.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.barShown {
		fmt.Fprintln(p.w)
		p.barShown = false
	}
}

// Legend explains the bar's and the lines' symbols.
const Legend = "✓ updated  ↷ skipped (already on the version)  ↺ rolled back  ✗ failed  ⋯ in flight  ■ halt or end  ▶ stage"

func mark(s rollout.Status) string {
	switch s {
	case rollout.StatusRolledBack:
		return "↺"
	case rollout.StatusFailed:
		return "✗"
	}
	return "·"
}

func tailHint(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	lines := strings.Split(out, "\n")
	return " | " + Clip(lines[len(lines)-1], 80)
}

// hosts is "1 host", "3 hosts".
func hosts(n int) string { return fmt.Sprintf("%d %s", n, rollout.Plural(n, "host", "hosts")) }

func parens(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// Clip shortens s to n runes on one line, marking the cut.
func Clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}
