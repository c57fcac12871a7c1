package rollout

import (
	"context"
	"fmt"
	"time"
)

// Timeline is when a planned rollout would run, held to the calendar.
type Timeline struct {
	// Holds say what would hold the rollout and until when, in order; the
	// first may be a freeze that refuses the start itself.
	Holds []string
	// Pace is how long one host took, on average, in the last rollout that
	// updated hosts; zero when there is none to go by.
	Pace time.Duration
	// Finish is when the rollout would end at that pace, starting now;
	// zero when there is no pace, or a freeze without an end holds it.
	Finish time.Time
	// Refused is set when a freeze in effect now refuses the start.
	Refused bool
}

// maxSimSteps bounds the timeline's walk through a calendar.
const maxSimSteps = 100000

// Timeline walks the stages of a rollout over the calendar from start, at
// pace per host and s.Concurrency at once: freezes hold it at stage
// boundaries, closed windows before each batch of hosts.
func (c Calendar) Timeline(start time.Time, adhoc []Freeze, stages []Stage, s Settings, pace time.Duration) Timeline {
	tl := Timeline{Pace: pace}
	r := &Rollout{}
	seen := map[string]bool{}
	note := func(h *Hold) {
		if !seen[h.For] {
			seen[h.For] = true
			tl.Holds = append(tl.Holds, "waits for "+h.For)
		}
	}
	t := start
	if h, _ := c.Gate(t, adhoc, r, true); h != nil && h.Phase == PhaseFrozen {
		tl.Refused = true
		tl.Holds = append(tl.Holds, "refused now: frozen by the "+h.Freeze.String()+", "+c.untilText(h.Until))
		seen[h.For] = true
	}
	step := 0
	first := true
	for _, st := range stages {
		if st.Size() == 0 {
			continue
		}
		if !first && s.Pause > 0 {
			t = t.Add(s.Pause)
		}
		first = false
		boundary := true
		for left := st.Size(); left > 0; {
			if step++; step > maxSimSteps {
				return tl
			}
			h, until := c.Gate(t, adhoc, r, boundary)
			if h != nil {
				if !(tl.Refused && t.Equal(start)) {
					note(h)
				}
				if h.Until.IsZero() {
					return tl
				}
				t = h.Until
				continue
			}
			boundary = false
			if pace <= 0 {
				left = 0
				continue
			}
			// Batches start while the window is open; the last may run past its end.
			for left > 0 && (until.IsZero() || t.Before(until)) {
				if step++; step > maxSimSteps {
					return tl
				}
				left -= min(left, s.Concurrency)
				t = t.Add(pace)
			}
		}
	}
	if pace > 0 {
		tl.Finish = t
	}
	return tl
}

// Timeline is how a rollout planned now would run through the freezes and
// windows, at the pace of the last rollout that updated hosts.
func (e *Engine) Timeline(ctx context.Context, p Plan) (Timeline, error) {
	now := e.clock.Now()
	adhoc, err := e.adhocFreezes(ctx, now)
	if err != nil {
		return Timeline{}, err
	}
	return e.cfg.Calendar.Timeline(now, adhoc, p.Stages, p.Settings, e.pace(ctx)), nil
}

// pace is the mean time one host took in the latest rollout that updated
// hosts, of the last few; zero when there is none.
func (e *Engine) pace(ctx context.Context) time.Duration {
	rs, err := e.cfg.Store.Rollouts(ctx, 5)
	if err != nil {
		return 0
	}
	for _, r := range rs {
		results, err := e.cfg.Store.HostResults(ctx, r.ID)
		if err != nil {
			return 0
		}
		var sum time.Duration
		n := 0
		for _, hr := range results {
			if hr.Status == StatusSuccess && !hr.StartedAt.IsZero() && hr.FinishedAt.After(hr.StartedAt) {
				sum += hr.FinishedAt.Sub(hr.StartedAt)
				n++
			}
		}
		if n > 0 {
			return sum / time.Duration(n)
		}
	}
	return 0
}

// String is the timeline as lines for a plan, each starting with two spaces.
func (tl Timeline) String(c Calendar, now time.Time) string {
	var s string
	for _, h := range tl.Holds {
		s += "  " + h + "\n"
	}
	switch {
	case !tl.Finish.IsZero():
		s += fmt.Sprintf("  at the last rollout's pace (%s a host) it would finish %s (%s)\n",
			tl.Pace.Round(time.Millisecond), c.When(tl.Finish), In(now, tl.Finish))
	case len(tl.Holds) > 0:
		s += "  no earlier rollout to estimate its pace from\n"
	}
	return s
}
