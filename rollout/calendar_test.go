package rollout_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func windows(t *testing.T, specs ...string) rollout.Windows {
	t.Helper()
	var ws rollout.Windows
	for _, s := range specs {
		w, err := rollout.ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	return ws
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		days    string // the days open, Sun first
	}{
		{in: "Mon-Thu 02:00-05:00 Europe/Berlin", days: "0111100"},
		{in: "Fri-Mon 22:00-02:00", days: "1100011"},
		{in: "daily 00:00-24:00 UTC", days: "1111111"},
		{in: "mon,wed,Fri 10:00-11:30", days: "0101010"},
		{in: "Mon-Thu 02:00", err: "hours must be HH:MM-HH:MM"},
		{in: "Mon-Thu 25:00-26:00", err: "start"},
		{in: "Mon-Thu 02:00-02:00", err: "same time"},
		{in: "Moon 02:00-03:00", err: "days"},
		{in: "Mon 02:00-03:00 Mars/Olympus", err: "unknown time zone"},
		{in: "Mon 02:00-03:00 Local", err: "unknown time zone"},
		{in: "", err: "write DAYS"},
	} {
		w, err := rollout.ParseWindow(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var days strings.Builder
		for _, open := range w.Days {
			days.WriteString(map[bool]string{true: "1", false: "0"}[open])
		}
		if days.String() != tc.days {
			t.Errorf("%q: days %s, want %s", tc.in, days.String(), tc.days)
		}
	}
}

// Windows across the week and across daylight-saving changes, on explicit
// dates: Europe/Berlin springs forward on 29 March 2026 (02:00 CET becomes
// 03:00 CEST at 01:00 UTC) and falls back on 25 October 2026 (03:00 CEST
// becomes 02:00 CET at 01:00 UTC); America/New_York on 8 March and 1
// November 2026.
func TestWindowsAt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ws     []string
		at     string // UTC
		open   bool
		change string // UTC
	}{
		{"inside", []string{"Mon-Thu 02:00-05:00 Europe/Berlin"}, "2026-12-01 02:00", true, "2026-12-01 04:00"},
		{"before, same day", []string{"Mon-Thu 02:00-05:00 Europe/Berlin"}, "2026-12-01 00:30", false, "2026-12-01 01:00"},
		{"Friday: opens Monday", []string{"Mon-Thu 02:00-05:00 Europe/Berlin"}, "2026-12-04 12:00", false, "2026-12-07 01:00"},
		{"the end is not inside", []string{"Mon-Thu 02:00-05:00 Europe/Berlin"}, "2026-12-01 04:00", false, "2026-12-02 01:00"},
		{"over midnight", []string{"Fri 22:00-02:00 UTC"}, "2026-12-05 01:00", true, "2026-12-05 02:00"},
		{"two windows merge", []string{"daily 01:00-03:00", "daily 03:00-04:00"}, "2026-12-01 02:00", true, "2026-12-01 04:00"},
		{"the nearer of two", []string{"Mon 10:00-11:00", "Tue 09:00-10:00"}, "2026-12-01 08:00", false, "2026-12-01 09:00"},
		// Spring forward in Berlin: 02:00-05:00 opens when the clock jumps to 03:00 CEST.
		{"spring: start skipped", []string{"Sun 02:00-05:00 Europe/Berlin"}, "2026-03-29 00:30", false, "2026-03-29 01:00"},
		{"spring: open after the jump", []string{"Sun 02:00-05:00 Europe/Berlin"}, "2026-03-29 01:00", true, "2026-03-29 03:00"},
		// A window wholly in the skipped hour opens at the jump, for its length.
		{"spring: window in the skipped hour", []string{"Sun 02:15-02:45 Europe/Berlin"}, "2026-03-29 00:59", false, "2026-03-29 01:00"},
		{"spring: window in the skipped hour, open", []string{"Sun 02:15-02:45 Europe/Berlin"}, "2026-03-29 01:10", true, "2026-03-29 01:30"},
		// Fall back in Berlin: 02:00-02:30 is open at the first 02:00-02:30 (CEST) only.
		{"fall: first 02:00 opens", []string{"Sun 02:00-02:30 Europe/Berlin"}, "2026-10-25 00:10", true, "2026-10-25 00:30"},
		{"fall: the repeated half hour is not opened again", []string{"Sun 02:00-02:30 Europe/Berlin"}, "2026-10-25 01:10", false, "2026-11-01 01:00"},
		// A window over the whole repeated hour stays open until the clock shows 03:00 (CET).
		{"fall: 01:00-03:00 spans three hours", []string{"Sun 01:00-03:00 Europe/Berlin"}, "2026-10-24 23:00", true, "2026-10-25 02:00"},
		// New York: spring forward at 07:00 UTC (02:00 EST → 03:00 EDT), fall back at 06:00 UTC.
		{"NY spring: 01:30-02:30 ends at the jump", []string{"Sun 01:30-02:30 America/New_York"}, "2026-03-08 06:45", true, "2026-03-08 07:00"},
		{"NY fall: first 01:30 opens", []string{"Sun 01:30-02:00 America/New_York"}, "2026-11-01 05:30", true, "2026-11-01 07:00"},
		{"NY fall: the week after, EST", []string{"Sun 01:30-02:00 America/New_York"}, "2026-11-01 07:00", false, "2026-11-08 06:30"},
		{"no windows: always open", nil, "2026-12-01 00:00", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, change := windows(t, tc.ws...).At(utc(tc.at))
			var want time.Time
			if tc.change != "" {
				want = utc(tc.change)
			}
			if open != tc.open || !change.Equal(want) {
				t.Errorf("at %s: open %v until %s, want %v until %s", tc.at, open, change.UTC(), tc.open, want)
			}
		})
	}
}

// fridays is a recurring freeze every Friday 12:00 Europe/Berlin for 66 h
// (to Monday 06:00), with the start computed by hand as cron would.
func fridays(t *testing.T) rollout.RecurringFreeze {
	berlin := zone(t, "Europe/Berlin")
	return rollout.RecurringFreeze{Name: "weekend", Reason: "no changes over the weekend", Duration: 66 * time.Hour,
		Next: func(after time.Time) time.Time {
			l := after.In(berlin)
			for d := 0; ; d++ {
				s := time.Date(l.Year(), l.Month(), l.Day()+d, 12, 0, 0, 0, berlin)
				if s.Weekday() == time.Friday && s.After(after) {
					return s
				}
			}
		}}
}

func TestRecurringFreeze(t *testing.T) {
	rf := fridays(t)
	// Friday 4 Dec 2026 12:00 CET is 11:00 UTC; it ends Monday 7 Dec 06:00 CET.
	cur, next := rf.At(utc("2026-12-05 10:00"))
	if cur == nil || !cur.From.Equal(utc("2026-12-04 11:00")) || !cur.Until.Equal(utc("2026-12-07 05:00")) {
		t.Fatalf("Saturday: %+v", cur)
	}
	if !next.From.Equal(utc("2026-12-11 11:00")) {
		t.Errorf("next %s", next.From)
	}
	if cur, _ := rf.At(utc("2026-12-07 05:00")); cur != nil {
		t.Errorf("Monday 06:00 CET is after the freeze: %+v", cur)
	}
	if cur, _ := rf.At(utc("2026-12-04 10:59")); cur != nil {
		t.Errorf("before Friday noon: %+v", cur)
	}
	// Over the fall-back weekend the freeze lasts its 66 hours of real time.
	cur, _ = rf.At(utc("2026-10-25 12:00"))
	if cur == nil || !cur.From.Equal(utc("2026-10-23 10:00")) || !cur.Until.Equal(utc("2026-10-26 04:00")) {
		t.Fatalf("fall-back weekend: %+v", cur)
	}
}

func TestGate(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	cal := rollout.Calendar{Windows: windows(t, "Mon-Thu 02:00-05:00 Europe/Berlin"), Recurring: []rollout.RecurringFreeze{fridays(t)}, Zone: berlin}
	r := &rollout.Rollout{}
	incident := rollout.Freeze{ID: 3, By: "U1", Reason: "incident 4711", From: utc("2026-12-01 00:00"), Until: utc("2026-12-01 03:00")}

	// Tuesday 03:00 CET, inside the window, during the incident freeze.
	now := utc("2026-12-01 02:00")
	hold, _ := cal.Gate(now, []rollout.Freeze{incident}, r, true)
	if hold == nil || hold.Phase != rollout.PhaseFrozen || hold.Freeze.ID != 3 || !hold.Until.Equal(incident.Until) {
		t.Fatalf("at a boundary in a freeze: %+v", hold)
	}
	if want := "the end of the freeze #3 by U1: incident 4711, until Tue 1 Dec 04:00 CET"; hold.For != want {
		t.Errorf("for %q, want %q", hold.For, want)
	}
	// Mid-stage a freeze holds nothing; the window does, from its end on.
	hold, until := cal.Gate(now, []rollout.Freeze{incident}, r, false)
	if hold != nil || !until.Equal(utc("2026-12-01 04:00")) {
		t.Fatalf("mid-stage: %+v until %s", hold, until)
	}
	// A freeze override given after the freeze began lifts it; a later freeze holds again.
	r.FreezeOverride = &rollout.Override{By: "U2", Reason: "hotfix", At: utc("2026-12-01 01:00")}
	if hold, _ := cal.Gate(now, []rollout.Freeze{incident}, r, true); hold != nil {
		t.Fatalf("overridden: %+v", hold)
	}
	later := rollout.Freeze{ID: 4, By: "U1", From: utc("2026-12-01 01:30")}
	if hold, _ := cal.Gate(now, []rollout.Freeze{incident, later}, r, true); hold == nil || hold.Freeze.ID != 4 || !hold.Until.IsZero() ||
		!strings.Contains(hold.For, "until someone unfreezes") {
		t.Fatalf("a later freeze: %+v", hold)
	}
	r.FreezeOverride = nil

	// Outside the window: wait for the next opening; Anytime does not.
	now = utc("2026-12-01 05:00")
	hold, _ = cal.Gate(now, nil, r, true)
	if hold == nil || hold.Phase != rollout.PhaseWindow || !hold.Until.Equal(utc("2026-12-02 01:00")) {
		t.Fatalf("outside the window: %+v", hold)
	}
	if want := "the window (Mon-Thu 02:00-05:00 Europe/Berlin): opens Wed 2 Dec 02:00 CET"; hold.For != want {
		t.Errorf("for %q, want %q", hold.For, want)
	}
	r.Anytime = &rollout.Override{By: "U2"}
	if hold, until := cal.Gate(now, nil, r, true); hold != nil || !until.IsZero() {
		t.Fatalf("anytime: %+v %s", hold, until)
	}
	r.Anytime = nil

	// A freeze that begins as another ends carries the wait on.
	next := rollout.Freeze{ID: 5, By: "U1", From: incident.Until, Until: utc("2026-12-01 06:00")}
	hold, _ = cal.Gate(utc("2026-12-01 02:00"), []rollout.Freeze{incident, next}, r, true)
	if hold == nil || !hold.Until.Equal(next.Until) {
		t.Fatalf("chained freezes: %+v", hold)
	}
	// The weekend freeze, from the configuration.
	hold, _ = cal.Gate(utc("2026-12-05 10:00"), nil, r, true)
	if hold == nil || hold.Freeze.Name != "weekend" || !strings.Contains(hold.For, `freeze "weekend": no changes over the weekend, until Mon 7 Dec 06:00 CET`) {
		t.Fatalf("weekend: %+v", hold)
	}
	ferr := &rollout.FrozenError{Freeze: *hold.Freeze, Text: "until Mon 7 Dec 06:00 CET"}
	if !errors.Is(ferr, rollout.ErrFrozen) || !strings.Contains(ferr.Error(), `frozen by the freeze "weekend"`) {
		t.Errorf("frozen error: %v", ferr)
	}
}

func TestParseUntil(t *testing.T) {
	now := utc("2026-12-01 10:00")
	berlin := zone(t, "Europe/Berlin")
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "2h", want: "2026-12-01 12:00"},
		{in: "1d12h", want: "2026-12-02 22:00"},
		{in: "3d", want: "2026-12-04 10:00"},
		{in: "2026-12-02 06:00 Europe/Berlin", want: "2026-12-02 05:00"},
		{in: "2026-12-02 06:00", want: "2026-12-02 06:00"},
		{in: "2026-12-03", want: "2026-12-03 00:00"},
		{in: "2026-12-02T06:00:00+01:00", want: "2026-12-02 05:00"},
		{in: "09:00", want: "2026-12-02 09:00"},
		{in: "18:00", want: "2026-12-01 18:00"},
		{in: "2026-11-30 06:00", err: "not in the future"},
		{in: "-2h", err: "neither a duration"},
		{in: "soon", err: "neither a duration"},
	} {
		got, err := rollout.ParseUntil(tc.in, now, time.UTC)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(utc(tc.want)) {
			t.Errorf("%q: %s %v, want %s", tc.in, got.UTC(), err, tc.want)
		}
	}
	// A bare time of day in the skipped hour is the jump.
	got, err := rollout.ParseUntil("02:30", utc("2026-03-28 12:00"), berlin)
	if err != nil || !got.Equal(utc("2026-03-29 01:00")) {
		t.Errorf("02:30 on the spring-forward night: %s %v", got.UTC(), err)
	}
}

func TestIn(t *testing.T) {
	now := utc("2026-12-01 10:00")
	for d, want := range map[time.Duration]string{
		19 * time.Hour: "in 19 h", 45 * time.Minute: "in 45 min", 2*24*time.Hour + 3*time.Hour: "in 2 d 3 h",
		90 * time.Minute: "in 1 h 30 min", 0: "now", 20 * time.Second: "in under a minute",
	} {
		if got := rollout.In(now, now.Add(d)); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}

// The plan's timeline: a freeze at the start refuses it, windows and
// freezes ahead hold it, and it finishes at the last rollout's pace.
func TestTimeline(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	cal := rollout.Calendar{Windows: windows(t, "Mon-Thu 02:00-05:00 Europe/Berlin"), Recurring: []rollout.RecurringFreeze{fridays(t)}, Zone: berlin}
	s := settings([]int{10, 50, 100}, 5, 10*time.Minute)
	stages := rollout.Stages(100, s.Stages) // 10, 40, 50 hosts

	// Thursday 3 Dec 2026 03:00 CET (02:00 UTC), 30 min a batch: the canary
	// and 3 batches of stage 50% fit the window; the other 5 run Monday
	// (a freeze holds only at a stage boundary); then the weekend freeze
	// holds stage 100% until 06:00, past the window: 6 batches Tuesday, 4
	// Wednesday.
	tl := cal.Timeline(utc("2026-12-03 02:00"), nil, stages, s, 30*time.Minute)
	if tl.Refused {
		t.Fatal("refused outside a freeze")
	}
	want := []string{"opens Mon 7 Dec 02:00 CET", `freeze "weekend": no changes over the weekend, until Mon 7 Dec 06:00 CET`,
		"opens Tue 8 Dec 02:00 CET", "opens Wed 9 Dec 02:00 CET"}
	if len(tl.Holds) != len(want) {
		t.Fatalf("holds %q", tl.Holds)
	}
	for i, w := range want {
		if !strings.Contains(tl.Holds[i], w) {
			t.Errorf("hold %d %q lacks %q", i, tl.Holds[i], w)
		}
	}
	if !tl.Finish.Equal(utc("2026-12-09 03:00")) {
		t.Fatalf("finish %s", tl.Finish)
	}
	out := tl.String(cal, utc("2026-12-03 02:00"))
	if !strings.Contains(out, "at the last rollout's pace (30m0s a host) it would finish Wed 9 Dec 04:00 CET (in 6 d 1 h)") {
		t.Errorf("timeline:\n%s", out)
	}

	// During the weekend freeze the start itself is refused.
	tl = cal.Timeline(utc("2026-12-05 10:00"), nil, stages, s, 0)
	if !tl.Refused || !strings.Contains(tl.Holds[0], `refused now: frozen by the freeze "weekend"`) || !tl.Finish.IsZero() {
		t.Fatalf("during the freeze: %+v", tl)
	}
	// A freeze without an end holds it for good.
	open := rollout.Freeze{ID: 1, By: "U1", From: utc("2026-12-03 03:00")}
	tl = cal.Timeline(utc("2026-12-03 02:00"), []rollout.Freeze{open}, stages, s, 30*time.Minute)
	if !tl.Finish.IsZero() || !strings.Contains(strings.Join(tl.Holds, "\n"), "until someone unfreezes") {
		t.Fatalf("open-ended freeze: %+v", tl)
	}
}
