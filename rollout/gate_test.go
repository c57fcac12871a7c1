package rollout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func gated(stages, gates []int) rollout.Settings {
	s := settings(stages, 2, 0)
	s.Gates = gates
	return s
}

func (h *harness) waitGated(t *testing.T, n int) {
	t.Helper()
	h.rec.waitFor(t, "the gate", func(evs []rollout.Event) bool { return len(h.rec.kindsLocked(evs, rollout.EventGated)) >= n })
}

func (h *harness) promote(actor string, stage int) (*rollout.Rollout, error) {
	return h.eng.Promote(context.Background(), rollout.PromoteRequest{Actor: actor, Source: rollout.SourceSlack, Stage: stage})
}

// A stage that ends in a gate waits there, in a phase of its own, until an
// admin promotes it; a promote meant for another stage does nothing.
func TestGateWaitsForPromote(t *testing.T) {
	h := newHarness(t, 10, gated([]int{10, 50, 100}, []int{10}))
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.waitGated(t, 1)
	cur, _ := h.db.Rollout(context.Background(), r.ID)
	if cur.Phase != rollout.PhaseGated || cur.Label() != "waiting for promotion to 50%" || !cur.WaitUntil.IsZero() {
		t.Fatalf("at the gate: %s %q until %v", cur.Phase, cur.Label(), cur.WaitUntil)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts updated before the promote, want the canary only", n)
	}
	if _, err := h.promote("U2", 1); !errors.Is(err, rollout.ErrNotGated) || !strings.Contains(err.Error(), "waiting for promotion to 50%") {
		t.Fatalf("a promote of the wrong gate: %v", err)
	}
	if _, err := h.promote("U2", -1); err != nil {
		t.Fatal(err)
	}
	res := wait(t, done)
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after the promote: %v %+v", res.err, res.r)
	}
	if n := len(h.fleet.started); n != 10 {
		t.Fatalf("%d hosts updated, want 10", n)
	}
	if got := h.rec.kinds(rollout.EventPromoted); len(got) != 1 || got[0].Progress.Rollout.Promote.By != "U2" {
		t.Fatalf("promoted events: %+v", got)
	}
	if _, err := h.promote("U2", -1); !errors.Is(err, rollout.ErrNotRunning) {
		t.Fatalf("a promote after the end: %v", err)
	}
	log, _ := h.db.AuditLog(context.Background(), 10)
	var promotes []string
	for _, e := range log {
		if e.Action == "promote" {
			promotes = append(promotes, map[bool]string{true: "ok", false: "refused"}[e.Allowed])
		}
	}
	if strings.Join(promotes, ",") != "refused,ok,refused" {
		t.Errorf("promote audit entries (newest first): %v", promotes)
	}
}

// Halt works while a rollout waits at its gate.
func TestHaltWhileGated(t *testing.T) {
	h := newHarness(t, 10, gated([]int{10, 50, 100}, []int{10}))
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.waitGated(t, 1)
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U9", Reason: "dashboards look off"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, done)
	if res.r.Phase != rollout.PhaseHalted || res.r.Halt.String() != "halted by U9: dashboards look off" {
		t.Fatalf("%+v", res.r)
	}
	if _, err := h.promote("U2", -1); !errors.Is(err, rollout.ErrNotRunning) {
		t.Fatalf("a promote of a halted rollout: %v", err)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts updated", n)
	}
}

// A gate nobody answers within gate_timeout halts the rollout with that reason.
func TestGateTimeout(t *testing.T) {
	s := gated([]int{10, 50, 100}, []int{10})
	s.GateTimeout = time.Hour
	h := newHarness(t, 10, s)
	clock := newFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	h.cfg.Clock = clock
	h.eng = rollout.New(h.cfg)
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.waitGated(t, 1)
	cur, _ := h.db.Rollout(context.Background(), r.ID)
	if want := clock.Now().Add(time.Hour); !cur.WaitUntil.Equal(want) {
		t.Fatalf("the gate waits until %v, want %v", cur.WaitUntil, want)
	}
	clock.waitForWaiter(t, time.Hour)
	clock.Advance(59 * time.Minute)
	select {
	case res := <-done:
		t.Fatalf("ended before the timeout: %+v", res.r)
	default:
	}
	clock.Advance(time.Minute)
	res := wait(t, done)
	if res.r.Phase != rollout.PhaseHalted || !res.r.Halt.Auto() ||
		res.r.Halt.Reason != "nobody promoted it to 50% within the gate timeout (1h0m0s)" {
		t.Fatalf("%+v %v", res.r, res.r.Halt)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts updated", n)
	}
}

// Under the two-person rule the starter cannot promote, another admin can;
// a scheduled rollout counts as started by the schedule's creator.
func TestTwoPersonRule(t *testing.T) {
	s := gated([]int{10, 50, 100}, []int{10, 50})
	s.PromoteByOther = true
	h := newHarness(t, 10, s)
	r, err := h.eng.Start(context.Background(), rollout.StartRequest{Version: "v2", Actor: "schedule #3", Starter: "U7", Source: rollout.SourceSchedule})
	if err != nil {
		t.Fatal(err)
	}
	if r.Starter != "U7" {
		t.Fatalf("starter %q", r.Starter)
	}
	done := h.runAsync(context.Background(), r.ID)
	h.waitGated(t, 1)
	if _, err := h.promote("U7", -1); !errors.Is(err, rollout.ErrOwnRollout) {
		t.Fatalf("the schedule's creator promoted: %v", err)
	}
	if _, err := h.promote("U8", 0); err != nil {
		t.Fatal(err)
	}
	// The next gate waits again: the first promote does not open it.
	h.waitGated(t, 2)
	if _, err := h.promote("U8", 0); !errors.Is(err, rollout.ErrNotGated) {
		t.Fatalf("a stale promote of the first gate: %v", err)
	}
	if n := len(h.fleet.started); n != 5 {
		t.Fatalf("%d hosts updated at the second gate, want 5", n)
	}
	if _, err := h.promote("U8", 1); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("%+v", res.r)
	}
}

// gatedThenShutDown starts a rollout of 10 hosts gated after 10 %, lets it
// reach its gate, and shuts its driver down: it is left gated, driven by
// nobody.
func gatedThenShutDown(t *testing.T) (*harness, *rollout.Rollout) {
	t.Helper()
	h := newHarness(t, 10, gated([]int{10, 50, 100}, []int{10}))
	r := h.start("v2")
	ctx, stop := context.WithCancel(context.Background())
	done := h.runAsync(ctx, r.ID)
	h.waitGated(t, 1)
	stop()
	if res := wait(t, done); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("shutdown: %v", res.err)
	}
	if cur, _ := h.db.Rollout(context.Background(), r.ID); cur.Phase != rollout.PhaseGated || cur.Owner != "" {
		t.Fatalf("after the shutdown: %s owner %q", cur.Phase, cur.Owner)
	}
	return h, r
}

// A rollout waiting at its gate survives its driver's shutdown and a
// takeover by another process, still waiting; a promote asked of a third
// process reaches the new driver through the store.
func TestGateSurvivesTakeover(t *testing.T) {
	h, r := gatedThenShutDown(t)

	rec := newRecorder()
	cfg := withOwner(h.cfg, "taker")
	cfg.Notifier = rec
	taker := rollout.New(cfg)
	took := make(chan runResult, 1)
	go func() {
		r, err := taker.Run(context.Background(), r.ID)
		took <- runResult{r, err}
	}()
	rec.waitFor(t, "the takeover", hasEvent(rollout.EventStarted))
	other := rollout.New(withOwner(h.cfg, "other"))
	if _, err := other.Promote(context.Background(), rollout.PromoteRequest{Actor: "U2", Source: rollout.SourceCLI, ID: r.ID, Stage: 0}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, took)
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("%v %+v", res.err, res.r)
	}
	for _, id := range h.ids {
		if h.fleet.updates[id] != 1 {
			t.Errorf("%s updated %d times", id, h.fleet.updates[id])
		}
	}
	if n := len(rec.kinds(rollout.EventStageStarted)); n != 2 {
		t.Errorf("the new driver ran %d stages, want the two after the gate", n)
	}
}

// A promote stored while no process drove the rollout is acted on by the
// next driver at once.
func TestPromoteStoredBeforeTakeover(t *testing.T) {
	h, r := gatedThenShutDown(t)
	if _, err := h.promote("U2", 0); err != nil {
		t.Fatal(err)
	}
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("%v %+v", res.err, res.r)
	}
}
