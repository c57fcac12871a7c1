package rollout_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// onBothStores runs f on the embedded store and on PostgreSQL.
func onBothStores(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "sqlite:"+filepath.Join(t.TempDir(), "r.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, pg.NewDatabase(t)) })
}

// complete runs a rollout of v2 to its end.
func (h *harness) complete() *rollout.Rollout {
	h.t.Helper()
	r := h.start("v2")
	if res := wait(h.t, h.runAsync(context.Background(), r.ID)); res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		h.t.Fatalf("rollout: %v %+v", res.err, res.r)
	}
	return r
}

// rollback asks for a rollback of the latest rollout and drives it to its end.
func (h *harness) rollback() runResult {
	h.t.Helper()
	r, err := h.eng.Rollback(context.Background(), rollout.RollbackRequest{Actor: "U7", Source: rollout.SourceCLI, Reason: "bad release"})
	if err != nil {
		h.t.Fatal(err)
	}
	return wait(h.t, h.runAsync(context.Background(), r.ID))
}

// A completed rollout rolled back: each host it updated goes back to its own
// previous version, the most recently updated first; a host changed by hand
// is left alone and listed; a host whose rollback fails is reported with its
// output, and the others go on; a skipped host is not touched.
func TestRollbackOfACompletedRollout(t *testing.T) {
	onBothStores(t, func(t *testing.T, dsn string) {
		h := newHarnessOn(t, dsn, 6, settings([]int{100}, 1, 0))
		prev := map[string]string{"h000": "v1", "h001": "v2", "h002": "v1", "h003": "v0.9", "h004": "v0.9", "h005": "v0.9"}
		for id, v := range prev {
			h.fleet.version[id], h.fleet.initial[id] = v, v
		}
		r := h.complete()
		updated := slices.DeleteFunc(h.order(), func(id string) bool { return id == "h001" }) // h001 was on v2: skipped
		h.fleet.version["h004"] = "v2-hotfix"
		h.fleet.behavior["h005"] = "rollback-fails"
		plan, err := h.eng.PlanRollback(context.Background(), 0)
		if err != nil || plan.Back["v1"] != 2 || plan.Back["v0.9"] != 3 || plan.Hosts() != 5 {
			t.Fatalf("plan: %v %+v", err, plan)
		}

		res := h.rollback()
		if res.err != nil || res.r.Phase != rollout.PhaseRolledBack || res.r.Undo == nil || res.r.Undo.By != "U7" {
			t.Fatalf("rollback: %v %+v", res.err, res.r)
		}
		got := h.results(r.ID)
		for id, want := range map[string]struct {
			undo    rollout.UndoStatus
			version string
			errHas  string
		}{
			"h000": {rollout.UndoRestored, "v1", ""},
			"h001": {rollout.UndoNone, "v2", ""},
			"h002": {rollout.UndoRestored, "v1", ""},
			"h003": {rollout.UndoRestored, "v0.9", ""},
			"h004": {rollout.UndoLeft, "v2-hotfix", "runs v2-hotfix, not v2"},
			"h005": {rollout.UndoFailed, "v2", "rollback to v0.9 failed"},
		} {
			u := got[id].Undo
			if u.Status != want.undo || h.fleet.version[id] != want.version || !strings.Contains(u.Error, want.errHas) {
				t.Errorf("%s: %s (%q), runs %s; want %s on %s", id, u.Status, u.Error, h.fleet.version[id], want.undo, want.version)
			}
		}
		if out := got["h005"].Undo.Output; !strings.Contains(out, "no such version") {
			t.Errorf("the failed rollback's output %q", out)
		}
		// Newest first: the reverse of the update order, without the host left alone.
		slices.Reverse(updated)
		want := slices.DeleteFunc(updated, func(id string) bool { return id == "h004" })
		if !slices.Equal(h.fleet.rolledBack, want) {
			t.Errorf("rolled back in order %v, want %v", h.fleet.rolledBack, want)
		}
		for id, n := range h.fleet.rollbacks {
			if n != 1 {
				t.Errorf("%s rolled back %d times", id, n)
			}
		}
		end := h.rec.kinds(rollout.EventEnded)
		if out := rollout.Outcome(res.r, end[len(end)-1].Progress.Counts); out != "rolled back: 3 restored, 1 failed, 1 left alone (changed by hand)" {
			t.Errorf("outcome %q", out)
		}
		if _, err := h.eng.Rollback(context.Background(), rollout.RollbackRequest{Actor: "U7"}); !errors.Is(err, rollout.ErrRolledBack) {
			t.Errorf("a second rollback: %v", err)
		}
	})
}

// A rollback of a running rollout halts it first: the hosts in flight
// finish, then the ones it updated go back; hosts it never started stay.
func TestRollbackOfARunningRollout(t *testing.T) {
	onBothStores(t, func(t *testing.T, dsn string) {
		h := newHarnessOn(t, dsn, 6, settings([]int{100}, 2, 0))
		for _, id := range h.ids {
			h.fleet.gate(id)
		}
		r := h.start("v2")
		done := h.runAsync(context.Background(), r.ID)
		h.fleet.waitFor(t, "2 updates in flight", func() bool { return len(h.fleet.started) == 2 })
		got, err := h.eng.Rollback(context.Background(), rollout.RollbackRequest{Actor: "U7", Source: rollout.SourceSlack, Reason: "errors up"})
		if err != nil || got.Halt == nil || got.Undo == nil {
			t.Fatalf("rollback request: %v %+v", err, got)
		}
		h.rec.waitFor(t, "the halt", hasEvent(rollout.EventHalting))
		for _, id := range h.ids {
			h.fleet.release(id)
		}
		res := wait(t, done)
		if res.err != nil || res.r.Phase != rollout.PhaseRolledBack {
			t.Fatalf("%v %+v", res.err, res.r)
		}
		if n := len(h.fleet.started); n != 2 {
			t.Errorf("%d updates started; want only the 2 in flight at the rollback", n)
		}
		for _, id := range h.ids {
			if v := h.fleet.version[id]; v != "v1" {
				t.Errorf("%s runs %s after the rollback", id, v)
			}
		}
		if n := len(h.fleet.rolledBack); n != 2 {
			t.Errorf("%d hosts rolled back, want the 2 updated", n)
		}
	})
}

// Halt works on a rollback, and resume continues it; no host is rolled back
// twice.
func TestRollbackHaltAndResume(t *testing.T) {
	onBothStores(t, func(t *testing.T, dsn string) {
		h := newHarnessOn(t, dsn, 4, settings([]int{100}, 1, 0))
		r := h.complete()
		for _, id := range h.ids {
			h.fleet.rbgates[id] = make(chan struct{})
		}
		if _, err := h.eng.Rollback(context.Background(), rollout.RollbackRequest{Actor: "U7"}); err != nil {
			t.Fatal(err)
		}
		done := h.runAsync(context.Background(), r.ID)
		h.fleet.waitFor(t, "a rollback", func() bool { return len(h.fleet.rolledBack) == 1 })
		if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U8", Reason: "wait"}); err != nil {
			t.Fatal(err)
		}
		h.fleet.mu.Lock()
		for _, g := range h.fleet.rbgates {
			close(g)
		}
		h.fleet.rbgates = map[string]chan struct{}{}
		h.fleet.mu.Unlock()
		res := wait(t, done)
		if res.err != nil || res.r.Phase != rollout.PhaseHalted || res.r.Undo == nil || res.r.Label() != "rollback halted" {
			t.Fatalf("halted rollback: %v %+v", res.err, res.r)
		}
		if c := rollout.CountResults(mapValues(h.results(r.ID))).Undo; c.Restored != 1 || c.Pending != 3 {
			t.Fatalf("after the halt: %+v", c)
		}
		resumed, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U8"})
		if err != nil || resumed.Phase != rollout.PhaseRollingBack {
			t.Fatalf("resume: %v %+v", err, resumed)
		}
		if res := wait(t, h.runAsync(context.Background(), r.ID)); res.err != nil || res.r.Phase != rollout.PhaseRolledBack {
			t.Fatalf("after resume: %v %+v", res.err, res.r)
		}
		for _, id := range h.ids {
			if h.fleet.rollbacks[id] != 1 || h.fleet.version[id] != "v1" {
				t.Errorf("%s: %d rollbacks, runs %s", id, h.fleet.rollbacks[id], h.fleet.version[id])
			}
		}
	})
}

func mapValues(m map[string]rollout.HostResult) []rollout.HostResult {
	var out []rollout.HostResult
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// A driver that died mid-rollback leaves hosts "restoring": the next one
// reads each host's record of its last rollback, so none is rolled back
// twice, and finishes the rollback.
func TestRollbackRecheckAfterCrash(t *testing.T) {
	onBothStores(t, func(t *testing.T, dsn string) {
		h := newHarnessOn(t, dsn, 3, settings([]int{100}, 1, 0))
		ctx := context.Background()
		r := h.complete()
		started, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U7"})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := h.db.HostResults(ctx, r.ID)
		for i := range res {
			res[i].Undo.Status = rollout.UndoRunning
		}
		if err := h.db.SaveHostResults(ctx, "test", res); err != nil {
			t.Fatal(err)
		}
		undoFence := rollout.Fence{Store: h.db.ID(), Rollout: r.ID, Epoch: started.Undo.Epoch}
		// h000: its rollback ran. h001: recorded, never ran. h002: cut off before it switched.
		h.fleet.version["h000"] = "v1"
		h.fleet.last["h000"] = rollout.LastCommand{Fence: undoFence, Step: rollout.StepRollback, Finished: true}
		h.fleet.last["h002"] = rollout.LastCommand{Fence: undoFence, Step: rollout.StepRollback}
		out := wait(t, h.runAsync(ctx, r.ID))
		if out.err != nil || out.r.Phase != rollout.PhaseRolledBack {
			t.Fatalf("%v %+v", out.err, out.r)
		}
		for id, want := range map[string]int{"h000": 0, "h001": 1, "h002": 1} {
			if h.fleet.rollbacks[id] != want || h.fleet.version[id] != "v1" || h.results(r.ID)[id].Undo.Status != rollout.UndoRestored {
				t.Errorf("%s: %d rollbacks (want %d), runs %s, %s", id, h.fleet.rollbacks[id], want, h.fleet.version[id], h.results(r.ID)[id].Undo.Status)
			}
		}
	})
}

// An older rollout is rolled back only when no later one touched its hosts;
// with nothing to roll back, it says so.
func TestRollbackRefusals(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 1, 0))
	ctx := context.Background()
	if _, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U7"}); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("rollback with no rollout: %v", err)
	}
	first := h.complete()
	r := h.start("v3")
	if res := wait(t, h.runAsync(ctx, r.ID)); res.err != nil {
		t.Fatal(res.err)
	}
	_, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U7", ID: first.ID})
	if !errors.Is(err, rollout.ErrLaterRollout) || !strings.Contains(err.Error(), "rollout #2 (v3) touched 3 of the hosts") {
		t.Fatalf("rollback of #1 under #2: %v", err)
	}
	if n := len(h.fleet.rolledBack); n != 0 {
		t.Fatalf("%d hosts rolled back by a refused rollback", n)
	}
}
