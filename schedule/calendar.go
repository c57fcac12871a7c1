package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Starts parses a five-field cron spec in a time zone (empty: UTC) into the
// function a rollout.RecurringFreeze begins by: the first start after t.
func Starts(spec, tz string) (func(time.Time) time.Time, error) {
	sched, loc, err := Parse(spec, tz)
	if err != nil {
		return nil, err
	}
	return func(t time.Time) time.Time { return sched.Next(t.In(loc)) }, nil
}

// Fit reports how a schedule's next runs (up to n, within a year of now)
// meet the calendar: how many fall in a recurring freeze, and how many
// outside the windows. A schedule all of whose runs fall in a freeze would
// never start a rollout.
func Fit(s rollout.Schedule, cal rollout.Calendar, now time.Time, n int) (runs, frozen, outside int, err error) {
	sched, loc, err := Parse(s.Spec, s.TZ)
	if err != nil {
		return 0, 0, 0, err
	}
	t := now.In(loc)
	for runs < n {
		t = sched.Next(t)
		if t.IsZero() || t.After(now.AddDate(1, 0, 0)) {
			break
		}
		runs++
		if len(cal.Freezes(t, nil)) > 0 {
			frozen++
		}
		if open, _ := cal.Windows.At(t); !open {
			outside++
		}
	}
	return runs, frozen, outside, nil
}

// FitError refuses a schedule every run of which falls in a recurring freeze.
func FitError(runs, frozen int) error {
	if runs > 0 && frozen == runs {
		return &InvalidError{fmt.Sprintf("every one of its next %d runs falls in a recurring freeze: it would never start a rollout", runs)}
	}
	return nil
}

// fitRuns is how many of a schedule's next runs are checked against the calendar.
const fitRuns = 50

// fitsCalendar refuses a schedule every one of whose next runs falls in a
// recurring freeze.
func (s *Scheduler) fitsCalendar(sch rollout.Schedule) error {
	runs, frozen, _, err := Fit(sch, s.cfg.Calendar, s.cfg.Clock.Now(), fitRuns)
	if err != nil {
		return err
	}
	return FitError(runs, frozen)
}

// CalendarWarning says, when some of a schedule's next runs fall in a
// recurring freeze or outside the rollout windows, what will happen to
// them; empty when none does.
func (s *Scheduler) CalendarWarning(sch rollout.Schedule) string {
	runs, frozen, outside, err := Fit(sch, s.cfg.Calendar, s.cfg.Clock.Now(), fitRuns)
	if err != nil || runs == 0 {
		return ""
	}
	var w []string
	if frozen > 0 {
		w = append(w, fmt.Sprintf("%d of its next %d runs fall in a recurring freeze and will be skipped", frozen, runs))
	}
	if outside > 0 {
		w = append(w, fmt.Sprintf("%d of its next %d runs fall outside the rollout windows (%s): those rollouts will wait for a window", outside, runs, s.cfg.Calendar.Windows))
	}
	return strings.Join(w, "; ")
}
