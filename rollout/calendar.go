package rollout

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly span of local time in which a rollout may start hosts,
// e.g. "Mon-Thu 02:00-05:00 Europe/Berlin". An End not after Start ends on
// the next day ("Fri 22:00-02:00"); Days name the day the window opens.
//
// Across daylight-saving changes a window opens when the local clock first
// shows its start and closes when the clock first shows its end: a boundary
// in the skipped hour is the moment the clock jumps, a window wholly inside
// the skipped hour opens at the jump for its usual length, and the repeated
// hour is counted once (a window that closes at 02:30 closes at the first
// 02:30 and does not open again at the second).
type Window struct {
	Days       [7]bool // by time.Weekday
	Start, End int     // minutes after local midnight; End may be 24*60
	Loc        *time.Location
	Text       string // as written
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindow reads "DAYS HH:MM-HH:MM [ZONE]": DAYS is "daily", a day
// ("Mon"), a range ("Mon-Thu", "Fri-Mon") or a comma list of those; ZONE is
// an IANA name (UTC when left out).
func ParseWindow(s string) (Window, error) {
	w := Window{Text: strings.Join(strings.Fields(s), " "), Loc: time.UTC}
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return Window{}, fmt.Errorf("window %q: write DAYS HH:MM-HH:MM [ZONE], e.g. Mon-Thu 02:00-05:00 Europe/Berlin", s)
	}
	if err := parseDays(f[0], &w.Days); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	var err1, err2 error
	w.Start, err1 = parseClock(from)
	w.End, err2 = parseClock(to)
	switch {
	case !ok:
		return Window{}, fmt.Errorf("window %q: hours must be HH:MM-HH:MM", s)
	case err1 != nil || w.Start == 24*60:
		return Window{}, fmt.Errorf("window %q: start %q is not a time of day HH:MM", s, from)
	case err2 != nil:
		return Window{}, fmt.Errorf("window %q: end %q is not a time of day HH:MM (24:00 is midnight)", s, to)
	case w.Start == w.End:
		return Window{}, fmt.Errorf("window %q: starts and ends at the same time", s)
	}
	if len(f) == 3 {
		loc, err := LoadZone(f[2])
		if err != nil {
			return Window{}, fmt.Errorf("window %q: %w", s, err)
		}
		w.Loc = loc
	}
	return w, nil
}

// LoadZone loads an IANA time zone, refusing "Local", whose meaning depends
// on the machine.
func LoadZone(name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "Local" || name == "" {
		return nil, fmt.Errorf("unknown time zone %q: use an IANA name such as Europe/Berlin or UTC", name)
	}
	return loc, nil
}

func parseDays(s string, days *[7]bool) error {
	if strings.EqualFold(s, "daily") || s == "*" {
		for i := range days {
			days[i] = true
		}
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, to := dayIndex(a), dayIndex(b)
		if !isRange {
			to = from
		}
		if from < 0 || to < 0 {
			return fmt.Errorf("days %q: use Mon, Tue, ... Sun, ranges such as Mon-Thu, or daily", s)
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
	}
	return nil
}

func dayIndex(s string) int {
	s = strings.ToLower(s)
	if len(s) < 3 {
		return -1
	}
	return slices.Index(dayNames, s[:3])
}

// parseClock reads HH:MM as minutes after midnight, 24:00 included.
func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return hh*60 + mm, nil
}

// String is the window as written.
func (w Window) String() string { return w.Text }

// span is one opening of a window.
type span struct{ from, to time.Time }

// spans returns the window's openings on the local days from first to last.
func (w Window) spans(first, last time.Time) []span {
	var out []span
	y, m, d := first.In(w.Loc).Date()
	for day := time.Date(y, m, d, 12, 0, 0, 0, w.Loc); !day.After(last.In(w.Loc).AddDate(0, 0, 1)); day = day.AddDate(0, 0, 1) {
		if !w.Days[day.Weekday()] {
			continue
		}
		dy, dm, dd := day.Date()
		end := w.End
		if end <= w.Start {
			end += 24 * 60
		}
		sp := span{wallClock(dy, dm, dd, w.Start, w.Loc), wallClock(dy, dm, dd, end, w.Loc)}
		if !sp.from.Before(sp.to) {
			// Wholly inside the skipped hour: open at the jump, for its length.
			sp.to = sp.from.Add(time.Duration(end-w.Start) * time.Minute)
		}
		out = append(out, sp)
	}
	return out
}

// wallClock is the first instant the clock in loc shows minute (after
// midnight of y-m-d; past 24*60 is the next day), or when that time is
// skipped, the instant the clock jumps past it.
func wallClock(y int, m time.Month, d, minute int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, minute, 0, 0, loc)
	want := time.Date(y, m, d, 0, minute, 0, 0, time.UTC)
	if !sameWall(t, want) {
		// Skipped: Go moved it before or past the jump, by the jump's
		// length; the zone it landed in ends or begins at the jump.
		start, end := t.ZoneBounds()
		if !end.IsZero() && end.Sub(t) < 6*time.Hour {
			return end
		}
		return start
	}
	// Go takes the later of two instants that show the same time; the first
	// one is earlier by the offset the clock was set back.
	start, _ := t.ZoneBounds()
	if !start.IsZero() {
		_, before := start.Add(-time.Second).Zone()
		_, now := t.Zone()
		if back := time.Duration(before-now) * time.Second; back > 0 {
			if e := t.Add(-back); e.Before(start) && sameWall(e, want) {
				return e
			}
		}
	}
	return t
}

func sameWall(t, want time.Time) bool {
	y, m, d := t.Date()
	wy, wm, wd := want.Date()
	return y == wy && m == wm && d == wd && t.Hour() == want.Hour() && t.Minute() == want.Minute()
}

// Windows are the spans in which rollouts may start hosts; none means any time.
type Windows []Window

// At reports whether t is inside a window and when that changes: when the
// window closes (zero when there are no windows) or when the next one opens.
func (ws Windows) At(t time.Time) (open bool, change time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}
	}
	var all []span
	for _, w := range ws {
		all = append(all, w.spans(t.AddDate(0, 0, -2), t.AddDate(0, 0, 9))...)
	}
	slices.SortFunc(all, func(a, b span) int { return a.from.Compare(b.from) })
	var merged []span
	for _, sp := range all {
		if n := len(merged); n > 0 && !sp.from.After(merged[n-1].to) {
			if sp.to.After(merged[n-1].to) {
				merged[n-1].to = sp.to
			}
			continue
		}
		merged = append(merged, sp)
	}
	for _, sp := range merged {
		switch {
		case !t.Before(sp.from) && t.Before(sp.to):
			return true, sp.to
		case sp.from.After(t):
			return false, sp.from
		}
	}
	return false, time.Time{}
}

// String lists the windows as written.
func (ws Windows) String() string {
	var s []string
	for _, w := range ws {
		s = append(s, w.Text)
	}
	return strings.Join(s, ", ")
}

// Freeze is a span in which no rollout starts and running ones wait at
// their next stage boundary: set by someone (ad hoc, kept in the store) or
// an occurrence of a recurring freeze of the configuration.
type Freeze struct {
	ID     int64  // ad hoc freezes; 0 for a recurring one's occurrence
	Name   string // a recurring freeze's name; empty for ad hoc ones
	By     string
	Reason string
	From   time.Time
	Until  time.Time // zero: until someone unfreezes
	// EndedBy is who unfroze it, when someone did (Until is then that time).
	EndedBy   string
	CreatedAt time.Time
}

// Covers reports whether the freeze is in effect at t.
func (f Freeze) Covers(t time.Time) bool {
	return !t.Before(f.From) && (f.Until.IsZero() || t.Before(f.Until))
}

// String names the freeze for people: `freeze "Black Friday"` or
// "freeze #3 by U1: incident 4711".
func (f Freeze) String() string {
	var s string
	if f.Name != "" {
		s = fmt.Sprintf("freeze %q", f.Name)
	} else {
		s = fmt.Sprintf("freeze #%d by %s", f.ID, f.By)
	}
	if f.Reason != "" {
		s += ": " + f.Reason
	}
	return s
}

// RecurringFreeze is a freeze of the configuration that begins at each run
// of a cron spec in a time zone and lasts Duration. Next comes parsed from
// the configuration (this package parses no cron).
type RecurringFreeze struct {
	Name     string
	Reason   string
	Spec     string // the cron spec and zone as written, for people
	Duration time.Duration
	// Next is the first start strictly after t.
	Next func(t time.Time) time.Time
}

// At returns the occurrence in effect at t, if any, and the next one to begin after t.
func (rf RecurringFreeze) At(t time.Time) (cur *Freeze, next Freeze) {
	s := rf.Next(t.Add(-rf.Duration))
	if !s.After(t) {
		f := rf.occurrence(s)
		cur = &f
		s = rf.Next(t)
	}
	return cur, rf.occurrence(s)
}

func (rf RecurringFreeze) occurrence(s time.Time) Freeze {
	return Freeze{Name: rf.Name, By: "configuration", Reason: rf.Reason, From: s, Until: s.Add(rf.Duration)}
}

// Calendar says when rollouts may start hosts: the windows and the
// recurring freezes of the configuration. The freezes set ad hoc are kept in
// the store and passed in.
type Calendar struct {
	Windows   Windows
	Recurring []RecurringFreeze
	// Zone shows times to people (nil: the first window's, or UTC).
	Zone *time.Location
}

// Empty reports whether the calendar holds nothing back.
func (c Calendar) Empty() bool { return len(c.Windows) == 0 && len(c.Recurring) == 0 }

// Freezes returns the freezes in effect at t, ad hoc and recurring.
func (c Calendar) Freezes(t time.Time, adhoc []Freeze) []Freeze {
	var out []Freeze
	for _, f := range adhoc {
		if f.Covers(t) {
			out = append(out, f)
		}
	}
	for _, rf := range c.Recurring {
		if cur, _ := rf.At(t); cur != nil {
			out = append(out, *cur)
		}
	}
	return out
}

// Upcoming returns the freezes in effect at t or beginning before horizon,
// ad hoc and recurring (each recurring freeze's next occurrence), by start.
func (c Calendar) Upcoming(t, horizon time.Time, adhoc []Freeze) []Freeze {
	var out []Freeze
	for _, f := range adhoc {
		if f.Until.IsZero() || f.Until.After(t) {
			out = append(out, f)
		}
	}
	for _, rf := range c.Recurring {
		cur, next := rf.At(t)
		if cur != nil {
			out = append(out, *cur)
		}
		if next.From.Before(horizon) {
			out = append(out, next)
		}
	}
	slices.SortStableFunc(out, func(a, b Freeze) int { return a.From.Compare(b.From) })
	return out
}

// Override lifts a hold for one rollout: who, why and when.
type Override struct {
	By     string
	Reason string
	At     time.Time
}

// Hold is what keeps a rollout from starting hosts now.
type Hold struct {
	Phase  Phase     // PhaseFrozen or PhaseWindow
	Freeze *Freeze   // for PhaseFrozen: the freeze that ends last
	Until  time.Time // when it ends; zero: until someone unfreezes
	// For says what the rollout waits for, e.g. `the end of freeze #3 by
	// U1: incident, until Tue 1 Dec 19:00 UTC`.
	For string
}

// Gate decides whether a rollout may start hosts at now. It returns the
// hold that keeps it, or nil and until when hosts may start (zero: no limit
// the calendar knows of). boundary says a stage is about to begin: only
// there do freezes hold a running rollout. A freeze that began before the
// rollout's freeze override does not hold it; windows do not hold a rollout
// with Anytime.
func (c Calendar) Gate(now time.Time, adhoc []Freeze, r *Rollout, boundary bool) (*Hold, time.Time) {
	if boundary {
		var held []Freeze
		for _, f := range c.Freezes(now, adhoc) {
			if r.FreezeOverride == nil || f.From.After(r.FreezeOverride.At) {
				held = append(held, f)
			}
		}
		if len(held) > 0 {
			f, until := c.lastEnd(held, adhoc)
			return &Hold{Phase: PhaseFrozen, Freeze: &f, Until: until,
				For: fmt.Sprintf("the end of the %s, %s", f, c.untilText(until))}, time.Time{}
		}
	}
	if r.Anytime != nil {
		return nil, time.Time{}
	}
	open, change := c.Windows.At(now)
	if open {
		return nil, change
	}
	return &Hold{Phase: PhaseWindow, Until: change,
		For: "the window (" + c.Windows.String() + "): opens " + c.When(change)}, time.Time{}
}

// lastEnd picks the freeze of held that ends last, and when freezes end:
// a freeze that begins as another ends carries the wait on.
func (c Calendar) lastEnd(held, adhoc []Freeze) (Freeze, time.Time) {
	last := held[0]
	for _, f := range held[1:] {
		if f.Until.IsZero() || (!last.Until.IsZero() && f.Until.After(last.Until)) {
			last = f
		}
	}
	until := last.Until
	for range 10 {
		if until.IsZero() {
			break
		}
		next := c.Freezes(until, adhoc)
		if len(next) == 0 {
			break
		}
		f := slices.MaxFunc(next, func(a, b Freeze) int {
			return cmp.Compare(endKey(a.Until), endKey(b.Until))
		})
		if !f.Until.IsZero() && !f.Until.After(until) {
			break
		}
		until = f.Until
	}
	return last, until
}

func endKey(t time.Time) int64 {
	if t.IsZero() {
		return 1<<63 - 1
	}
	return t.UnixNano()
}

func (c Calendar) untilText(t time.Time) string {
	if t.IsZero() {
		return "until someone unfreezes"
	}
	return "until " + c.When(t)
}

// When shows t for people in the calendar's zone: "Tue 02:00 CET", with
// the date when it is more than six days away from now.
func (c Calendar) When(t time.Time) string {
	loc := c.Zone
	switch {
	case loc != nil:
	case len(c.Windows) > 0:
		loc = c.Windows[0].Loc
	default:
		loc = time.UTC
	}
	return t.In(loc).Format("Mon 2 Jan 15:04 MST")
}

// In says how far t is from now for people: "in 19 h", "in 45 min", "in 2 d 3 h".
func In(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return "in under a minute"
	case d < time.Hour:
		return fmt.Sprintf("in %d min", int(d.Round(time.Minute)/time.Minute))
	case d < 24*time.Hour:
		h := int(d / time.Hour)
		if m := int((d % time.Hour).Round(time.Minute) / time.Minute); m > 0 && h < 10 {
			return fmt.Sprintf("in %d h %d min", h, m)
		}
		return fmt.Sprintf("in %d h", int(d.Round(time.Hour)/time.Hour))
	}
	days := int(d / (24 * time.Hour))
	if h := int((d % (24 * time.Hour)).Round(time.Hour) / time.Hour); h > 0 {
		return fmt.Sprintf("in %d d %d h", days, h)
	}
	return fmt.Sprintf("in %d d", days)
}

// ErrFrozen means a freeze refuses a start; a *FrozenError says which.
var ErrFrozen = errors.New("rollouts are frozen")

// FrozenError names the freeze that refuses a start.
type FrozenError struct {
	Freeze Freeze
	Until  time.Time // when freezes end; zero: until someone unfreezes
	Text   string    // the end, for people
}

func (e *FrozenError) Error() string {
	return fmt.Sprintf("rollouts are frozen by the %s, %s; an admin may start anyway with override \"REASON\"", e.Freeze, e.Text)
}

// Unwrap makes errors.Is(err, ErrFrozen) true.
func (e *FrozenError) Unwrap() error { return ErrFrozen }

// ParseUntil reads when a freeze ends: a duration from now ("2h", "90m",
// "3d"), or a time: RFC 3339, "2006-01-02 15:04 [ZONE]", "2006-01-02
// [ZONE]" (midnight) or "15:04 [ZONE]" (the next such time), in loc unless a
// zone is given. The time must be after now.
func ParseUntil(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return future(t, now, s)
	}
	f := strings.Fields(s)
	if n := len(f); n >= 2 && strings.Contains(f[n-1], "/") || n >= 2 && f[n-1] == "UTC" {
		z, err := LoadZone(f[n-1])
		if err != nil {
			return time.Time{}, err
		}
		loc, f = z, f[:n-1]
	}
	if loc == nil {
		loc = time.UTC
	}
	text := strings.Join(f, " ")
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, text, loc); err == nil {
			return future(t, now, s)
		}
	}
	if m, err := parseClock(text); err == nil && len(f) == 1 {
		ln := now.In(loc)
		t := wallClock(ln.Year(), ln.Month(), ln.Day(), m, loc)
		if !t.After(now) {
			t = wallClock(ln.Year(), ln.Month(), ln.Day()+1, m, loc)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (2h, 90m, 3d) nor a time (2026-12-01 18:00 Europe/Berlin, 18:00, RFC 3339)", s)
}

func future(t, now time.Time, s string) (time.Time, error) {
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("%q is not in the future", s)
	}
	return t, nil
}

// ParseDuration is time.ParseDuration with days ("3d", "1d12h") too; it
// must be positive.
func ParseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if ds, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.Atoi(ds)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		days, s = time.Duration(n)*24*time.Hour, rest
		if s == "" {
			s = "0s"
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d+days <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (2h, 90m, 3d)", s)
	}
	return d + days, nil
}

// OverrideKind names what an override lifts.
type OverrideKind string

// Override kinds.
const (
	OverrideFreeze OverrideKind = "freeze" // the freezes that began before it
	OverrideWindow OverrideKind = "window" // the windows, for the rest of the rollout ("anytime")
)
