package rollout_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// lateUndo asks the store for a rollback of the rollout when its last stage
// is done: after its driver decided to complete it, before it stored that.
type lateUndo struct {
	rollout.Notifier
	db   *store.DB
	once sync.Once
	err  error
}

func (n *lateUndo) Notify(ev rollout.Event) {
	if ev.Kind == rollout.EventStageDone {
		n.once.Do(func() {
			_, n.err = n.db.RequestUndo(context.Background(), ev.Progress.Rollout.ID, rollout.Undo{By: "U2", Reason: "late", At: time.Now()})
		})
	}
	n.Notifier.Notify(ev)
}

// A rollback asked for as the rollout completes is not lost: the rollout
// ends, then its rollback starts.
func TestRollbackAskedAsTheRolloutCompletes(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, 4, settings([]int{100}, 2, 0))
	late := &lateUndo{Notifier: h.rec, db: h.db}
	h.cfg.Notifier = late
	h.eng = rollout.New(h.cfg)
	r := h.start("v2")
	if res := wait(t, h.runAsync(ctx, r.ID)); res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("run: %v %+v", res.err, res.r)
	}
	if late.err != nil {
		t.Fatalf("the late request was refused: %v", late.err)
	}
	cur, err := h.db.Rollout(ctx, r.ID)
	if err != nil || cur.Phase != rollout.PhaseRollingBack || cur.Undo == nil || cur.Undo.By != "U2" {
		t.Fatalf("after the run: %+v (%v), want it rolling back as U2 asked", cur, err)
	}
	if res := wait(t, h.runAsync(ctx, r.ID)); res.err != nil || res.r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollback: %v %+v", res.err, res.r)
	}
	for _, id := range h.ids {
		if h.fleet.version[id] != "v1" {
			t.Errorf("%s runs %s", id, h.fleet.version[id])
		}
	}
}
