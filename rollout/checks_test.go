package rollout_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// scripted is a Checker that answers from a script, one result per run
// (the last one again once the script ends), and counts its runs.
type scripted struct {
	mu      sync.Mutex
	script  []rollout.CheckResult
	runs    int
	targets []rollout.CheckTarget
	ran     chan struct{}
}

func newScripted(results ...rollout.CheckResult) *scripted {
	return &scripted{script: results, ran: make(chan struct{}, 100)}
}

func (s *scripted) Check(_ context.Context, t rollout.CheckTarget) rollout.CheckResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.script[min(s.runs, len(s.script)-1)]
	s.runs++
	s.targets = append(s.targets, t)
	s.ran <- struct{}{}
	return res
}

var (
	passed       = rollout.CheckResult{Outcome: rollout.CheckPass, Value: "0.001", Want: "< 0.01"}
	fail         = rollout.CheckResult{Outcome: rollout.CheckFail, Value: "0.034", Want: "< 0.01"}
	inconclusive = rollout.CheckResult{Outcome: rollout.CheckInconclusive, Want: "< 0.01", Err: "no data"}
)

func (h *harness) withChecks(cs ...rollout.Check) {
	h.cfg.Checks = cs
	h.eng = rollout.New(h.cfg)
}

// Checks run after every stage, the last too: a rollout completes only once
// they passed with all its hosts on the new version, and one that fails
// after the last stage halts it there, every host updated, for an admin to
// roll back or resume.
func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		script     []rollout.CheckResult
		onError    bool
		wantPhase  rollout.Phase
		wantReason string
		wantHosts  int
		wantRuns   int
	}{
		{"pass", []rollout.CheckResult{passed}, false, rollout.PhaseCompleted, "", 10, 3},
		{"fail", []rollout.CheckResult{fail}, false, rollout.PhaseHalted, "after stage 10%: check error_rate failed: saw 0.034, wanted < 0.01", 1, 1},
		{"inconclusive fails closed", []rollout.CheckResult{inconclusive}, false, rollout.PhaseHalted, "after stage 10%: check error_rate could not answer: no data", 1, 1},
		{"inconclusive with on_error continue", []rollout.CheckResult{inconclusive}, true, rollout.PhaseCompleted, "", 10, 3},
		{"fail after the last stage", []rollout.CheckResult{passed, passed, fail}, false, rollout.PhaseHalted, "after stage 100%: check error_rate failed: saw 0.034, wanted < 0.01", 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10, settings([]int{10, 50, 100}, 2, 0))
			c := newScripted(tc.script...)
			h.withChecks(rollout.Check{Name: "error_rate", Checker: c, ContinueOnError: tc.onError})
			r := h.start("v2")
			res := wait(t, h.runAsync(context.Background(), r.ID))
			if res.err != nil || res.r.Phase != tc.wantPhase {
				t.Fatalf("%v %s", res.err, rollout.Outcome(res.r, rollout.Counts{}))
			}
			if tc.wantReason != "" && (res.r.Halt == nil || !res.r.Halt.Auto() || res.r.Halt.Reason != tc.wantReason) {
				t.Fatalf("halt %v, want %q", res.r.Halt, tc.wantReason)
			}
			if n := len(h.fleet.started); n != tc.wantHosts {
				t.Fatalf("%d hosts updated, want %d", n, tc.wantHosts)
			}
			if c.runs != tc.wantRuns {
				t.Errorf("checks ran %d times, want %d", c.runs, tc.wantRuns)
			}
			for i, want := range []int{10, 50, 100}[:c.runs] {
				if c.targets[i] != (rollout.CheckTarget{Version: "v2", Stage: want}) {
					t.Errorf("check %d was of %+v, want stage %d%%", i, c.targets[i], want)
				}
			}
		})
	}
}

// A rollout halted by its checks after the last stage is resumed once the
// cause is mended: the checks run again, pass, and it completes, no host
// updated twice.
func TestResumeAfterTheLastChecksFailed(t *testing.T) {
	h := newHarness(t, 10, settings([]int{10, 100}, 2, 0))
	c := newScripted(passed, fail, passed)
	h.withChecks(rollout.Check{Name: "error_rate", Checker: c})
	r := h.start("v2")
	if res := wait(t, h.runAsync(context.Background(), r.ID)); res.r.Phase != rollout.PhaseHalted {
		t.Fatalf("%v %s", res.err, rollout.Outcome(res.r, rollout.Counts{}))
	}
	if _, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U1"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after the resume: %v %s", res.err, rollout.Outcome(res.r, rollout.Counts{}))
	}
	if c.runs != 3 {
		t.Errorf("checks ran %d times, want after 10%%, after 100%%, and again after the resume", c.runs)
	}
	for id, n := range h.fleet.updates {
		if n != 1 {
			t.Errorf("%s updated %d times", id, n)
		}
	}
}

// During a bake the checks run again and again; a bad result mid-bake halts
// at once, without waiting for the bake to end.
func TestBakeHaltsMidBake(t *testing.T) {
	s := settings([]int{10, 50, 100}, 2, 0)
	s.Bake = 10 * time.Minute
	h := newHarness(t, 10, s)
	clock := newFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	h.cfg.Clock, h.cfg.CheckInterval = clock, time.Minute
	c := newScripted(passed, passed, fail)
	h.withChecks(rollout.Check{Name: "error_rate", Checker: c})
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.rec.waitFor(t, "the bake", hasEvent(rollout.EventBaking))
	if cur, _ := h.db.Rollout(context.Background(), r.ID); cur.Phase != rollout.PhaseBaking || cur.Label() != "baking stage 10%" {
		t.Fatalf("%s %q", cur.Phase, cur.Label())
	}
	for range 2 {
		clock.waitForWaiter(t, time.Minute)
		clock.Advance(time.Minute)
	}
	res := wait(t, done)
	if res.r.Phase != rollout.PhaseHalted || res.r.Halt.Reason != "after stage 10%: check error_rate failed: saw 0.034, wanted < 0.01" {
		t.Fatalf("%+v %v", res.r, res.r.Halt)
	}
	if c.runs != 3 {
		t.Fatalf("checks ran %d times, want 3", c.runs)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts updated", n)
	}
}

// A bake that passes goes on to the gate after it, and a bake survives a
// restart: the next driver bakes until the recorded end.
func TestBakeThenGateAcrossRestart(t *testing.T) {
	s := gated([]int{10, 100}, []int{10})
	s.Bake = 10 * time.Minute
	h := newHarness(t, 10, s)
	clock := newFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	h.cfg.Clock, h.cfg.CheckInterval = clock, 5*time.Minute
	c := newScripted(passed)
	h.withChecks(rollout.Check{Name: "error_rate", Checker: c})
	r := h.start("v2")
	ctx, stop := context.WithCancel(context.Background())
	done := h.runAsync(ctx, r.ID)
	clock.waitForWaiter(t, 5*time.Minute)
	stop()
	wait(t, done)
	if cur, _ := h.db.Rollout(context.Background(), r.ID); cur.Phase != rollout.PhaseBaking {
		t.Fatalf("after the restart: %s", cur.Phase)
	}
	h.eng = rollout.New(h.cfg)
	done = h.runAsync(context.Background(), r.ID)
	clock.waitForWaiter(t, 5*time.Minute)
	clock.Advance(5 * time.Minute)
	clock.waitForWaiter(t, 5*time.Minute)
	clock.Advance(5 * time.Minute)
	h.waitGated(t, 1)
	if _, err := h.promote("U2", 0); err != nil {
		t.Fatal(err)
	}
	// The last stage bakes too before the rollout completes.
	h.rec.waitFor(t, "the last stage's bake", func(evs []rollout.Event) bool {
		for _, ev := range evs {
			if ev.Kind == rollout.EventBaking && ev.Stage.Percent == 100 {
				return true
			}
		}
		return false
	})
	clock.waitForWaiter(t, 5*time.Minute)
	clock.Advance(5 * time.Minute)
	clock.waitForWaiter(t, 5*time.Minute)
	clock.Advance(5 * time.Minute)
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("%+v", res.r)
	}
	if c.runs < 6 {
		t.Fatalf("checks ran %d times, want at least 3 in each bake", c.runs)
	}
}
