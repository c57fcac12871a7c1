package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestFreezes(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn) // two processes on one database
		now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		incident := rollout.Freeze{By: "U1", Reason: "incident 4711", From: now, Until: now.Add(2 * time.Hour), CreatedAt: now}
		if err := a.AddFreeze(ctx, &incident); err != nil || incident.ID == 0 {
			t.Fatalf("add: %v %+v", err, incident)
		}
		open := rollout.Freeze{By: "U2", Reason: "Black Friday", From: now.Add(time.Hour), CreatedAt: now}
		if err := a.AddFreeze(ctx, &open); err != nil {
			t.Fatal(err)
		}
		past := rollout.Freeze{By: "U1", From: now.Add(-3 * time.Hour), Until: now.Add(-time.Hour), CreatedAt: now}
		if err := a.AddFreeze(ctx, &past); err != nil {
			t.Fatal(err)
		}
		if err := a.AddFreeze(ctx, &rollout.Freeze{By: "U1", From: now, Until: now.Add(-time.Minute)}); err == nil {
			t.Fatal("a freeze that ends before it begins was stored")
		}
		// The other process sees the current and upcoming ones, by start, at once.
		got, err := b.Freezes(ctx, now)
		if err != nil || len(got) != 2 || got[0].ID != incident.ID || got[1].ID != open.ID {
			t.Fatalf("freezes: %v %+v", err, got)
		}
		if f := got[0]; f.By != "U1" || f.Reason != "incident 4711" || !f.From.Equal(now) || !f.Until.Equal(incident.Until) || f.EndedBy != "" {
			t.Errorf("stored %+v", f)
		}
		if !got[1].Until.IsZero() {
			t.Errorf("an open-ended freeze got an end: %+v", got[1])
		}

		// Unfreeze ends those in effect; the one to come is not touched.
		ended, err := b.Unfreeze(ctx, 0, "U3", now.Add(30*time.Minute))
		if err != nil || len(ended) != 1 || ended[0].ID != incident.ID || ended[0].EndedBy != "U3" || !ended[0].Until.Equal(now.Add(30*time.Minute)) {
			t.Fatalf("unfreeze: %v %+v", err, ended)
		}
		got, _ = a.Freezes(ctx, now.Add(30*time.Minute))
		if len(got) != 1 || got[0].ID != open.ID {
			t.Fatalf("after unfreeze: %+v", got)
		}
		if _, err := a.Unfreeze(ctx, 0, "U3", now.Add(31*time.Minute)); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("unfreeze with none in effect: %v", err)
		}
		// An upcoming freeze is ended by its id before it begins.
		if ended, err := a.Unfreeze(ctx, open.ID, "U3", now.Add(31*time.Minute)); err != nil || len(ended) != 1 || !ended[0].Until.Equal(open.From) {
			t.Fatalf("unfreeze #%d: %v %+v", open.ID, err, ended)
		}
		if got, _ := b.Freezes(ctx, now.Add(31*time.Minute)); len(got) != 0 {
			t.Fatalf("left: %+v", got)
		}
		if _, err := a.Unfreeze(ctx, 999, "U3", now); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("unfreeze of no such freeze: %v", err)
		}
	})
}

// A waiting rollout's wait and overrides are stored with it.
func TestRolloutWaitAndOverrides(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := newRollout("p1")
		at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		r.FreezeOverride = &rollout.Override{By: "U1", Reason: "hotfix", At: at}
		if err := db.CreateRollout(ctx, r, hosts(3), time.Minute); err != nil {
			t.Fatal(err)
		}
		r.Phase, r.WaitUntil, r.WaitFor = rollout.PhaseFrozen, at.Add(time.Hour), "the end of freeze #1"
		if err := db.UpdateRollout(ctx, "p1", r); err != nil {
			t.Fatal(err)
		}
		got, err := db.Rollout(ctx, r.ID)
		if err != nil || got.Phase != rollout.PhaseFrozen || got.WaitFor != "the end of freeze #1" || !got.WaitUntil.Equal(at.Add(time.Hour)) {
			t.Fatalf("stored: %v %+v", err, got)
		}
		if o := got.FreezeOverride; o == nil || o.By != "U1" || o.Reason != "hotfix" || !o.At.Equal(at) || got.Anytime != nil {
			t.Fatalf("overrides: %+v %+v", got.FreezeOverride, got.Anytime)
		}
		got, err = db.SetOverride(ctx, r.ID, rollout.OverrideWindow, rollout.Override{By: "U2", Reason: "urgent", At: at})
		if err != nil || got.Anytime == nil || got.Anytime.By != "U2" {
			t.Fatalf("set anytime: %v %+v", err, got)
		}
		r.Phase = rollout.PhaseCompleted
		if err := db.UpdateRollout(ctx, "p1", r); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetOverride(ctx, r.ID, rollout.OverrideFreeze, rollout.Override{By: "U2", At: at}); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("override of an ended rollout: %v", err)
		}
	})
}
