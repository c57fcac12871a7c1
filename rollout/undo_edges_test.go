package rollout_test

import (
	"context"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// ended leaves a rollout of v2 ended in phase, every host updated. With
// late, it is left as a driver leaves it when a rollback is asked for after
// its last look at the store and before it stores the end: the request
// stored, never begun.
func ended(h *harness, phase rollout.Phase, late bool) *rollout.Rollout {
	h.t.Helper()
	ctx := context.Background()
	r := h.start("v2")
	res, err := h.db.HostResults(ctx, r.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := range res {
		res[i].Status, res[i].Step, res[i].PrevVersion, res[i].NewVersion = rollout.StatusSuccess, rollout.StepHealth, "v1", "v2"
		res[i].StartedAt, res[i].FinishedAt = time.Now(), time.Now()
		h.fleet.version[res[i].Host.ID] = "v2"
	}
	if err := h.db.SaveHostResults(ctx, "test", res); err != nil {
		h.t.Fatal(err)
	}
	if late {
		if _, err := h.db.RequestUndo(ctx, r.ID, rollout.Undo{By: "U9", Reason: "too late", At: time.Now()}); err != nil {
			h.t.Fatal(err)
		}
	}
	r.Phase, r.FinishedAt, r.UpdatedAt = phase, time.Now(), time.Now()
	if err := h.db.UpdateRollout(ctx, "test", r); err != nil {
		h.t.Fatal(err)
	}
	if err := h.db.ReleaseRollout(ctx, r.ID, "test"); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// A rollback asked for as the rollout ends, too late for its driver, is not
// lost: a rollback asked again (after a completion) or a resume (after a
// halt, shown as "rollback halted") begins it, with who asked first and why,
// and every host is put back.
func TestRollbackAskedAsTheRolloutEnds(t *testing.T) {
	for _, phase := range []rollout.Phase{rollout.PhaseCompleted, rollout.PhaseHalted} {
		t.Run(string(phase), func(t *testing.T) {
			h := newHarness(t, 3, settings([]int{100}, 2, 0))
			ctx := context.Background()
			r := ended(h, phase, true)
			var got *rollout.Rollout
			var err error
			if phase == rollout.PhaseCompleted {
				got, err = h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U1", Source: rollout.SourceCLI})
			} else {
				got, err = h.eng.Resume(ctx, rollout.ResumeRequest{Actor: "U1", Source: rollout.SourceCLI})
			}
			if err != nil || got.Phase != rollout.PhaseRollingBack || got.Undo == nil || got.Undo.By != "U9" || got.Undo.Epoch == 0 {
				t.Fatalf("%v %+v", err, got)
			}
			out, err := h.eng.Run(ctx, r.ID)
			if err != nil || out.Phase != rollout.PhaseRolledBack {
				t.Fatalf("run: %v %+v", err, out)
			}
			for _, id := range h.ids {
				if v := h.fleet.version[id]; v != "v1" {
					t.Errorf("%s runs %s after the rollback", id, v)
				}
			}
			if _, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U1"}); err == nil {
				t.Error("a second rollback was not refused")
			}
		})
	}
}

// A halt of a rollback whose driver died waits for a driver: the one that
// takes it over first settles the host that was being put back (its rollback
// ran: only its health is checked), then settles the rollback as halted,
// the hosts not begun left for a resume.
func TestHaltOfAnOrphanedRollback(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 1, 0))
	ctx := context.Background()
	ended(h, rollout.PhaseCompleted, false)
	r, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U1"})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := h.db.HostResults(ctx, r.ID)
	res[0].Undo.Status, res[0].Undo.StartedAt = rollout.UndoRunning, time.Now()
	if err := h.db.SaveHostResults(ctx, "test", res[:1]); err != nil {
		t.Fatal(err)
	}
	ran := res[0].Host.ID
	h.fleet.version[ran] = "v1"
	h.fleet.last[ran] = rollout.LastCommand{Fence: r.Fence(h.db.ID()), Step: rollout.StepRollback, Finished: true}
	if err := h.db.ReleaseRollout(ctx, r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Halt(ctx, rollout.HaltRequest{Actor: "U3"}); err != nil {
		t.Fatal(err)
	}
	out, err := rollout.New(withOwner(h.cfg, "taker")).Run(ctx, r.ID)
	if err != nil || out.Phase != rollout.PhaseHalted || out.Undo == nil {
		t.Fatalf("takeover: %v %+v", err, out)
	}
	for id, hr := range h.results(r.ID) {
		want := rollout.UndoPending
		if id == ran {
			want = rollout.UndoRestored
		}
		if hr.Undo.Status != want {
			t.Errorf("%s: %s in the halted rollback, want %s", id, hr.Undo.Status, want)
		}
		if v := h.fleet.version[id]; (id == ran) != (v == "v1") {
			t.Errorf("%s runs %s", id, v)
		}
	}
}
