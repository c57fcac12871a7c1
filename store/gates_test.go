package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// gatedAt moves r to wait at the gate after stage k.
func gatedAt(t *testing.T, db *store.DB, r *rollout.Rollout, k int) {
	t.Helper()
	r.Phase, r.Stage, r.UpdatedAt = rollout.PhaseGated, k, time.Now()
	if err := db.UpdateRollout(context.Background(), r.Owner, r); err != nil {
		t.Fatal(err)
	}
}

func TestGateSettingsRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		db := open(t, dsn)
		r := newRollout("A")
		r.Settings.Gates, r.Settings.GateTimeout, r.Settings.PromoteByOther, r.Settings.Bake = []int{10, 50}, time.Hour, true, 5*time.Minute
		r.StartedBy, r.Starter = "schedule #2", "U7"
		if err := db.CreateRollout(context.Background(), r, hosts(3), time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := db.Rollout(context.Background(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		s := got.Settings
		if !slices.Equal(s.Gates, []int{10, 50}) || s.GateTimeout != time.Hour || !s.PromoteByOther || s.Bake != 5*time.Minute ||
			got.Starter != "U7" || got.Promote != nil {
			t.Fatalf("stored %+v starter %q promote %+v", s, got.Starter, got.Promote)
		}
		finish(t, db, got, rollout.PhaseCompleted)
		plain := create(t, db, "B")
		if got, _ := db.Rollout(context.Background(), plain.ID); got.Settings.Gates != nil || got.Settings.PromoteByOther {
			t.Fatalf("a rollout without gates: %+v", got.Settings)
		}
	})
}

// A promote is stored only for the gate the rollout waits at, once; it
// carries the stage, so it never opens a later gate.
func TestRequestPromote(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := create(t, db, "A")
		at := time.Now().Truncate(time.Millisecond)
		if _, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U2", Stage: 0, At: at}); !errors.Is(err, rollout.ErrNotGated) {
			t.Fatalf("promote of a running rollout: %v", err)
		}
		gatedAt(t, db, r, 0)
		if _, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U2", Stage: 1, At: at}); !errors.Is(err, rollout.ErrNotGated) {
			t.Fatalf("promote of another gate: %v", err)
		}
		got, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U2", Stage: 0, At: at})
		if err != nil || got.Promote == nil || got.Promote.By != "U2" || got.Promote.Stage != 0 || !got.Promote.At.Equal(at) {
			t.Fatalf("promote: %v %+v", err, got.Promote)
		}
		got, err = db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U3", Stage: 0, At: at})
		if !errors.Is(err, rollout.ErrPromoted) || got.Promote.By != "U2" {
			t.Fatalf("second promote: %v %+v", err, got.Promote)
		}
		// The driver's writes keep the request; the next gate needs its own.
		r.UpdatedAt = time.Now()
		if err := db.UpdateRollout(ctx, "A", r); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Rollout(ctx, r.ID); got.Promote == nil || got.Promote.By != "U2" {
			t.Fatalf("after the driver's write: %+v", got.Promote)
		}
		gatedAt(t, db, r, 1)
		if _, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U3", Stage: 0, At: at}); !errors.Is(err, rollout.ErrNotGated) {
			t.Fatalf("a stale promote of the first gate: %v", err)
		}
		if got, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U3", Stage: 1, At: at}); err != nil || got.Promote.By != "U3" {
			t.Fatalf("promote of the second gate: %v %+v", err, got)
		}
		// Halting, or halted: no promote.
		gatedAt(t, db, r, 2)
		if _, err := db.RequestHalt(ctx, r.ID, rollout.Halt{By: "U9", At: at}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U3", Stage: 2, At: at}); !errors.Is(err, rollout.ErrNotGated) {
			t.Fatalf("promote of a halting rollout: %v", err)
		}
		finish(t, db, r, rollout.PhaseHalted)
		if _, err := db.RequestPromote(ctx, r.ID, rollout.Promote{By: "U3", Stage: 2, At: at}); !errors.Is(err, rollout.ErrNotGated) {
			t.Fatalf("promote of a halted rollout: %v", err)
		}
	})
}
