package schedule_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/store"
)

// weekendFreeze is every Friday 12:00 Europe/Berlin for 66 h.
func weekendFreeze(t *testing.T) rollout.Calendar {
	t.Helper()
	next, err := schedule.Starts("0 12 * * 5", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	w, err := rollout.ParseWindow("Mon-Thu 02:00-05:00 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return rollout.Calendar{Windows: rollout.Windows{w},
		Recurring: []rollout.RecurringFreeze{{Name: "weekend", Duration: 66 * time.Hour, Next: next}}}
}

// A schedule that comes due during a freeze is skipped and announced, by
// the real engine's refusal.
func TestSkippedDuringAFreeze(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, sqlite(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.PutHosts(ctx, []rollout.Host{{ID: "a", Address: "192.0.2.1", Port: 22}}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: utc("2026-12-01T00:00:00Z")}
	eng := rollout.New(rollout.Config{Store: db, Inventory: db, Freezes: db, Clock: clk})
	ann := &announcer{}
	s := schedule.New(schedule.Config{Store: db, Engine: eng, Announcer: ann, Clock: clk, Owner: "p1"})
	sch, err := s.AddSchedule(ctx, rollout.Schedule{Spec: "30 2 * * *", Version: "v2", CreatedBy: "U1", Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U9", Reason: "incident 4711", Until: utc("2026-12-01T06:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	clk.set(utc("2026-12-01T02:30:00Z"))
	if _, err := s.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ann.last(); !strings.Contains(got, "came due during the freeze #1 by U9: incident 4711 (until Tue 1 Dec 06:00 UTC), so it was skipped") {
		t.Fatalf("announcement %q", got)
	}
	runs, _ := db.ScheduleRuns(ctx, sch.ID)
	if len(runs) != 1 || runs[0].Outcome != "skipped" {
		t.Fatalf("runs %+v", runs)
	}
	if _, err := db.ActiveRollout(ctx); err == nil {
		t.Fatal("a rollout started during the freeze")
	}
}

// schedule add refuses a schedule whose every run falls in a recurring
// freeze, and warns about runs outside the windows.
func TestAddChecksTheCalendar(t *testing.T) {
	f := newFixture(t, sqlite(t), utc("2026-12-01T00:00:00Z"))
	s := schedule.New(schedule.Config{Store: f.db, Engine: f.eng, Announcer: f.ann, Clock: f.clock, Owner: "p1", Calendar: weekendFreeze(t)})
	ctx := context.Background()
	// Saturdays 03:00 Berlin: always inside the weekend freeze.
	_, err := s.AddSchedule(ctx, rollout.Schedule{Spec: "0 3 * * 6", TZ: "Europe/Berlin", Version: "v2", CreatedBy: "U1", Source: rollout.SourceSlack})
	if err == nil || !strings.Contains(err.Error(), "falls in a recurring freeze") {
		t.Fatalf("a schedule that is always frozen: %v", err)
	}
	if list, _ := s.Schedules(ctx); len(list) != 0 {
		t.Fatalf("stored anyway: %+v", list)
	}
	if f.eng.audit[len(f.eng.audit)-1].Allowed {
		t.Error("the refusal is not in the audit log as refused")
	}
	// Daily 03:00 Berlin: in the window Tuesday to Thursday, frozen Saturday to Monday, outside on Friday.
	daily := rollout.Schedule{Spec: "0 3 * * *", TZ: "Europe/Berlin", Version: "v2", CreatedBy: "U1", Source: rollout.SourceSlack}
	if _, err := s.AddSchedule(ctx, daily); err != nil {
		t.Fatal(err)
	}
	w := s.CalendarWarning(daily)
	if !strings.Contains(w, "fall in a recurring freeze and will be skipped") || !strings.Contains(w, "outside the rollout windows") {
		t.Fatalf("warning %q", w)
	}
	inside := rollout.Schedule{Spec: "0 3 * * 2-4", TZ: "Europe/Berlin"}
	if w := s.CalendarWarning(inside); w != "" {
		t.Fatalf("a schedule inside the windows is warned about: %q", w)
	}
}
