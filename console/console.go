// Package console shows rollouts in a terminal: live progress for the demo and
// the break-glass CLI, and plain-text status reports.
package console

import (
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

// Notify implements rollout.Notifier.
func (p *Progress) Notify(ev rollout.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := ev.Progress
	r := pr.Rollout
	switch ev.Kind {
	case rollout.EventStarted:
		if p.start.IsZero() {
			p.start = ev.At
		}
		if !p.tty {
			p.lastBar = ev.At // the first progress line comes one interval in
		}
		p.line("rollout #%d: %s to %d hosts (stages %s %%, %d at once, halt above %d%% failed per stage), seed %d",
			r.ID, r.Version, r.Hosts, joinInts(r.Settings.Stages, "/"), r.Settings.Concurrency, r.Settings.Threshold, r.Seed)
	case rollout.EventStageStarted:
		st := ev.Stage
		extra := ""
		if at := rollout.HaltsAt(r.SegmentSize(st), r.Settings.Threshold); at > 0 {
			extra = fmt.Sprintf(", halts at %d failed", at)
		}
		p.line("▶ stage %d%%: hosts %d–%d of %d%s", st.Percent, st.Start+1, st.End, r.Hosts, extra)
	case rollout.EventHostDone:
		if h := ev.Host; h.Status.Failure() {
			p.line("  %s %s %s at %s: %s%s", mark(h.Status), h.Host.ID, strings.ReplaceAll(string(h.Status), "_", " "),
				h.Step, Clip(h.Error, 160), tailHint(h.Output))
		}
	case rollout.EventStageDone:
		p.line("✓ stage %d%% done: %d hosts, %d failed; fleet: %s", ev.Stage.Percent, ev.Stage.Size(), pr.StageFailures, pr.Counts)
	case rollout.EventPaused:
		p.line("  pausing %s before the next stage", ev.Pause)
	case rollout.EventHalting:
		if r.Halt.Auto() {
			p.line("■ halting: %s; letting %d hosts in flight finish", r.Halt.Reason, pr.Counts.Updating)
		} else {
			p.line("■ halt requested by %s%s; letting %d hosts in flight finish", r.Halt.By, prefixed(": ", r.Halt.Reason), pr.Counts.Updating)
		}
	case rollout.EventStopping:
		if n := pr.Counts.Updating; n > 0 {
			p.line("■ stopping: waiting up to %s for %d %s in flight — Ctrl-C again to stop now", ev.Pause, n, plural(n, "host", "hosts"))
		} else {
			p.line("■ stopping: no host is in flight")
		}
	case rollout.EventEnded:
		p.bar(pr, ev.At, true)
		p.line("■ rollout #%d %s — %s in %s", r.ID, rollout.Outcome(&r, pr.Counts), pr.Counts, p.elapsed(ev.At))
		return
	}
	p.bar(pr, ev.At, false)
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
	c := pr.Counts
	total := max(c.Total(), 1)
	const width = 30
	filled := c.Done() * width / total
	st := pr.StageInfo()
	text := fmt.Sprintf("[%s%s] %d/%d  stage %d%%  ✓%d ↷%d ↺%d ✗%d  ⋯%d in flight  %s",
		strings.Repeat("█", filled), strings.Repeat("░", width-filled), c.Done(), c.Total(), st.Percent,
		c.Success, c.Skipped, c.RolledBack, c.Failed, c.Updating, p.elapsed(now))
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

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
