package rollout_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func settings(stages []int, conc int, pause time.Duration) rollout.Settings {
	return rollout.Settings{Stages: stages, Concurrency: conc, Pause: pause, Threshold: 30}
}

func TestRolloutCompletesAllStages(t *testing.T) {
	h := newHarness(t, 10, settings([]int{10, 50, 100}, 3, 0))
	order := h.order()
	h.fleet.version[order[5]] = "v2" // already there: skipped
	r := h.start("v2")
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.err != nil || res.r.State != rollout.StateCompleted {
		t.Fatalf("run: %v %+v", res.err, res.r)
	}
	got := h.results(r.ID)
	for _, id := range h.ids {
		want := rollout.StatusSuccess
		if id == order[5] {
			want = rollout.StatusSkipped
		}
		if got[id].Status != want || h.fleet.version[id] != "v2" {
			t.Errorf("%s: %s on %s, want %s", id, got[id].Status, h.fleet.version[id], want)
		}
		if id != order[5] && (h.fleet.updates[id] != 1 || got[id].PrevVersion != "v1" || got[id].NewVersion != "v2") {
			t.Errorf("%s: %d updates, %+v", id, h.fleet.updates[id], got[id])
		}
	}
	if h.fleet.updates[order[5]] != 0 {
		t.Errorf("skipped host was updated")
	}
	// The stages ran in order, over the shuffled snapshot: 1, 4, 5 hosts.
	var sizes []int
	for _, ev := range h.rec.kinds(rollout.EventStageStarted) {
		sizes = append(sizes, ev.Stage.Size())
	}
	if !slices.Equal(sizes, []int{1, 4, 5}) {
		t.Errorf("stage sizes %v", sizes)
	}
	if first := h.fleet.started[0]; first != order[0] {
		t.Errorf("first host updated %s, want %s (the seed's order)", first, order[0])
	}
	end := h.rec.kinds(rollout.EventEnded)
	if len(end) != 1 || end[0].Progress.Counts.Success != 9 || end[0].Progress.Counts.Skipped != 1 {
		t.Fatalf("end event: %+v", end)
	}
	if out := rollout.Outcome(res.r, end[0].Progress.Counts); out != "completed" {
		t.Errorf("outcome %q", out)
	}
}

func TestHostOutcomes(t *testing.T) {
	h := newHarness(t, 12, settings([]int{100}, 4, 0))
	h.cfg.Defaults.Threshold = 100
	h.eng = rollout.New(h.cfg)
	b := map[string]string{"h000": "update-fails", "h001": "health-fails", "h002": "rollback-fails", "h003": "unreachable", "h004": "drop",
		"h005": "health-hangs"}
	for id, x := range b {
		h.fleet.behavior[id] = x
	}
	r := h.start("v2")
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.err != nil || res.r.State != rollout.StateCompleted {
		t.Fatalf("run: %v %+v", res.err, res.r)
	}
	got := h.results(r.ID)
	for _, tc := range []struct {
		id      string
		status  rollout.Status
		step    rollout.Step
		version string
		errHas  string
	}{
		{"h000", rollout.StatusRolledBack, rollout.StepUpdate, "v1", "update failed"},
		{"h001", rollout.StatusRolledBack, rollout.StepHealth, "v1", "health failed"},
		{"h002", rollout.StatusFailed, rollout.StepRollback, "v2", "rollback to v1 failed"},
		{"h003", rollout.StatusFailed, rollout.StepConnect, "v1", "connection refused"},
		{"h004", rollout.StatusRolledBack, rollout.StepUpdate, "v1", "connection lost"},
		// A health check that hangs ends with the health timeout, not never.
		{"h005", rollout.StatusRolledBack, rollout.StepHealth, "v1", "health failed: attempt 1 had no answer when the health timeout (50ms) ended"},
		{"h006", rollout.StatusSuccess, rollout.StepHealth, "v2", ""},
	} {
		hr := got[tc.id]
		if hr.Status != tc.status || hr.Step != tc.step || h.fleet.version[tc.id] != tc.version || !strings.Contains(hr.Error, tc.errHas) {
			t.Errorf("%s: %s at %s, error %q, runs %s; want %s at %s with %q, runs %s",
				tc.id, hr.Status, hr.Step, hr.Error, h.fleet.version[tc.id], tc.status, tc.step, tc.errHas, tc.version)
		}
	}
	if got["h000"].Output != "E: disk full\n" {
		t.Errorf("output tail of the failed update: %q", got["h000"].Output)
	}
	end := h.rec.kinds(rollout.EventEnded)[0]
	if out := rollout.Outcome(res.r, end.Progress.Counts); out != "completed, 4 rolled back, 2 failed" {
		t.Errorf("outcome %q", out)
	}
}

// With one stage of 10 hosts at 30 %: three failures are allowed, four halt.
func TestThresholdBoundaryOnTenHosts(t *testing.T) {
	for _, tc := range []struct {
		failing int
		want    rollout.State
	}{{3, rollout.StateCompleted}, {4, rollout.StateHalted}} {
		h := newHarness(t, 10, settings([]int{100}, 1, 0))
		order := h.order()
		for _, id := range order[:tc.failing] {
			h.fleet.behavior[id] = "update-fails"
		}
		r := h.start("v2")
		res := wait(t, h.runAsync(context.Background(), r.ID))
		if res.err != nil || res.r.State != tc.want {
			t.Fatalf("%d failing: %v %s (%s)", tc.failing, res.err, res.r.State, res.r.Reason)
		}
		if tc.want == rollout.StateHalted {
			if !strings.Contains(res.r.Reason, "4 of 10 hosts failed") {
				t.Errorf("reason %q", res.r.Reason)
			}
			// Concurrency 1: the fourth failure was the last host started.
			if len(h.fleet.started) != 4 {
				t.Errorf("%d hosts started after the threshold was crossed at the 4th", len(h.fleet.started)-4)
			}
		}
	}
}

// One failure in a 1-host canary stage halts before the next stage.
func TestCanaryFailureHalts(t *testing.T) {
	h := newHarness(t, 10, settings([]int{10, 50, 100}, 5, 0))
	h.fleet.behavior[h.order()[0]] = "health-fails"
	r := h.start("v2")
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.r.State != rollout.StateHalted || !strings.Contains(res.r.Reason, "stage 10%: 1 of 1") {
		t.Fatalf("%s: %s", res.r.State, res.r.Reason)
	}
	if len(h.fleet.started) != 1 {
		t.Fatalf("%d hosts updated", len(h.fleet.started))
	}
}

// Early halt: once the threshold is crossed no host of the stage starts, and
// the hosts in flight finish (and roll back).
func TestEarlyHalt(t *testing.T) {
	h := newHarness(t, 10, settings([]int{100}, 3, 0))
	for _, id := range h.ids {
		h.fleet.behavior[id] = "update-fails"
		h.fleet.gate(id)
	}
	order := h.order()
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	startedN := func(n int) func() bool { return func() bool { return len(h.fleet.started) == n } }
	h.fleet.waitFor(t, "3 in flight", startedN(3))
	// Each failure frees a slot that takes the next host, until the 4th failure.
	for i := range 3 {
		h.fleet.release(order[i])
		h.fleet.waitFor(t, "next host started", startedN(4+i))
	}
	h.rec.waitFor(t, "3 failures recorded", func(evs []rollout.Event) bool {
		n := 0
		for _, ev := range evs {
			if ev.Kind == rollout.EventHostDone {
				n++
			}
		}
		return n == 3
	})
	h.fleet.release(order[3]) // the 4th failure: 4 of 10 > 30 %
	h.rec.waitFor(t, "4th failure recorded", func(evs []rollout.Event) bool {
		last := evs[len(evs)-1]
		return last.Kind == rollout.EventHostDone && last.Progress.StageFailures == 4
	})
	h.fleet.mu.Lock()
	inFlight := slices.Clone(h.fleet.started[4:])
	h.fleet.mu.Unlock()
	if len(inFlight) != 2 {
		t.Fatalf("in flight at the halt: %v", inFlight)
	}
	for _, id := range inFlight {
		h.fleet.release(id)
	}
	res := wait(t, done)
	if res.r.State != rollout.StateHalted {
		t.Fatalf("state %s", res.r.State)
	}
	if n := len(h.fleet.started); n != 6 {
		t.Fatalf("%d hosts started, want the 6 started before the threshold was crossed", n)
	}
	got := h.results(r.ID)
	for i, id := range order {
		want := rollout.StatusRolledBack
		if i >= 6 {
			want = rollout.StatusPending
		}
		if got[id].Status != want {
			t.Errorf("host %d (%s): %s, want %s", i, id, got[id].Status, want)
		}
	}
}

// The concurrency limit, measured at the hosts.
func TestConcurrencyLimit(t *testing.T) {
	const n, limit = 40, 5
	h := newHarness(t, n, settings([]int{10, 50, 100}, limit, 0))
	for _, id := range h.ids {
		h.fleet.gate(id)
	}
	order := h.order()
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	stages := rollout.Stages(n, []int{10, 50, 100})
	// Let hosts go one at a time, each time only once the stage is as busy as
	// the limit allows: if the engine ever opened more, maxConn shows it.
	for _, st := range stages {
		for i := st.Start; i < st.End; i++ {
			want := min(limit, st.End-i)
			h.fleet.waitFor(t, "hosts in flight", func() bool {
				return len(h.fleet.gates) <= n-i && h.fleet.connected == want && len(h.fleet.started) >= i+want
			})
			h.fleet.release(order[i])
		}
	}
	res := wait(t, done)
	if res.r.State != rollout.StateCompleted {
		t.Fatalf("state %s", res.r.State)
	}
	if h.fleet.maxConn != limit {
		t.Fatalf("at most %d hosts at once, want exactly the limit %d", h.fleet.maxConn, limit)
	}
}

func TestHaltDuringPauseAndResume(t *testing.T) {
	h := newHarness(t, 10, settings([]int{10, 50, 100}, 2, time.Hour))
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.rec.waitFor(t, "pause after the canary", hasEvent(rollout.EventPaused))
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U9", Source: rollout.SourceSlack, Reason: "lunch"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, done)
	if res.r.State != rollout.StateHalted || res.r.HaltedBy != "U9" || res.r.Reason != "halted by U9: lunch" {
		t.Fatalf("halted: %+v", res.r)
	}
	if len(h.fleet.started) != 1 {
		t.Fatalf("%d hosts updated, want only the canary", len(h.fleet.started))
	}
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U9"}); !errors.Is(err, rollout.ErrNotRunning) {
		t.Fatalf("second halt: %v", err)
	}

	// Resume: the next stage runs; the canary is not updated again.
	h.cfg.Defaults.Pause = 0
	rr, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U9", Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	if rr.ID != r.ID || !rr.State.Active() {
		t.Fatalf("resumed %+v", rr)
	}
	// The rollout keeps its own one-hour pause: halt it again in the next pause, resume again.
	done = h.runAsync(context.Background(), r.ID)
	h.rec.waitFor(t, "second pause", func(evs []rollout.Event) bool { return len(h.rec.kindsLocked(evs, rollout.EventPaused)) == 2 })
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U9"}); err != nil {
		t.Fatal(err)
	}
	wait(t, done)
	if _, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U9"}); err != nil {
		t.Fatal(err)
	}
	res = wait(t, h.runAsync(context.Background(), r.ID))
	if res.r.State != rollout.StateCompleted {
		t.Fatalf("after resume: %s %s", res.r.State, res.r.Reason)
	}
	for _, id := range h.ids {
		if h.fleet.updates[id] != 1 {
			t.Errorf("%s updated %d times", id, h.fleet.updates[id])
		}
	}
	log, _ := h.db.AuditLog(context.Background(), 20)
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action+"/"+map[bool]string{true: "ok", false: "refused"}[e.Allowed])
	}
	slices.Reverse(actions)
	want := []string{"start/ok", "halt/ok", "halt/refused", "resume/ok", "halt/ok", "resume/ok"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit %v, want %v", actions, want)
	}
}

func (r *recorder) kindsLocked(evs []rollout.Event, kind rollout.EventKind) []rollout.Event {
	var out []rollout.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// A halt mid-stage: hosts in flight finish, no new one starts.
func TestHaltMidStage(t *testing.T) {
	h := newHarness(t, 10, settings([]int{100}, 2, 0))
	for _, id := range h.ids {
		h.fleet.gate(id)
	}
	order := h.order()
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.fleet.waitFor(t, "2 in flight", func() bool { return len(h.fleet.started) == 2 })
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U2", Reason: "oops"}); err != nil {
		t.Fatal(err)
	}
	h.fleet.release(order[0])
	h.fleet.release(order[1])
	res := wait(t, done)
	if res.r.State != rollout.StateHalted || len(h.fleet.started) != 2 {
		t.Fatalf("%s after %d started", res.r.State, len(h.fleet.started))
	}
	got := h.results(r.ID)
	if got[order[0]].Status != rollout.StatusSuccess || got[order[2]].Status != rollout.StatusPending {
		t.Fatalf("in-flight host %s, next host %s", got[order[0]].Status, got[order[2]].Status)
	}
}

// After a threshold halt, a resume continues the stage, and only failures
// after the resume count toward that stage's threshold.
func TestResumeAfterThresholdHalt(t *testing.T) {
	h := newHarness(t, 10, settings([]int{100}, 1, 0))
	order := h.order()
	for _, id := range order[:4] {
		h.fleet.behavior[id] = "update-fails"
	}
	r := h.start("v2")
	if res := wait(t, h.runAsync(context.Background(), r.ID)); res.r.State != rollout.StateHalted {
		t.Fatalf("state %s", res.r.State)
	}
	if _, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U1"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.r.State != rollout.StateCompleted {
		t.Fatalf("after resume: %s %s", res.r.State, res.r.Reason)
	}
	for _, id := range order {
		if h.fleet.updates[id] != 1 {
			t.Errorf("%s updated %d times", id, h.fleet.updates[id])
		}
	}
}

func TestStartRefusals(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 1, 0))
	ctx := context.Background()
	for _, v := range []string{"v1; rm -rf /", strings.Repeat("9", 200)} {
		if _, err := h.eng.Start(ctx, rollout.StartRequest{Version: v, Actor: "U1"}); !errors.Is(err, rollout.ErrInvalidVersion) {
			t.Errorf("version %q: %v", v, err)
		}
	}
	if _, err := h.eng.Start(ctx, rollout.StartRequest{Actor: "U1"}); !errors.Is(err, rollout.ErrNoVersion) {
		t.Errorf("no version and no latest-version command: %v", err)
	}
	// The latest version is validated like any other.
	latest := h.cfg
	latest.Latest = func(context.Context) (string, error) { return "v9$(reboot)", nil }
	if _, err := rollout.New(latest).Start(ctx, rollout.StartRequest{Actor: "U1"}); !errors.Is(err, rollout.ErrInvalidVersion) {
		t.Errorf("invalid latest version: %v", err)
	}
	if rs, _ := h.db.Rollouts(ctx, 10); len(rs) != 0 || h.fleet.maxConn != 0 {
		t.Fatalf("refused starts left %d rollouts and %d connections", len(rs), h.fleet.maxConn)
	}
	first := h.start("v2")
	_, err := h.eng.Start(ctx, rollout.StartRequest{Version: "v3", Actor: "U2"})
	var ae *rollout.ActiveError
	if !errors.As(err, &ae) || ae.Rollout.ID != first.ID || !strings.Contains(err.Error(), "#1 of v2") {
		t.Fatalf("second start: %v", err)
	}
	if _, err := h.eng.Resume(ctx, rollout.ResumeRequest{Actor: "U2"}); !errors.Is(err, rollout.ErrActive) {
		t.Fatalf("resume while running: %v", err)
	}

	empty := newHarness(t, 0, settings([]int{100}, 1, 0))
	if _, err := empty.eng.Start(ctx, rollout.StartRequest{Version: "v2", Actor: "U1"}); !errors.Is(err, rollout.ErrNoHosts) {
		t.Fatalf("empty inventory: %v", err)
	}
	if _, err := empty.eng.Resume(ctx, rollout.ResumeRequest{Actor: "U1"}); !errors.Is(err, rollout.ErrNotHalted) {
		t.Fatalf("resume with nothing halted: %v", err)
	}
}

// Unreachable hosts are failures and count toward the threshold.
func TestUnreachableCountsTowardThreshold(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 3, 0))
	h.fleet.behavior["h001"] = "unreachable"
	r := h.start("v2")
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.r.State != rollout.StateHalted || !strings.Contains(res.r.Reason, "1 of 3") {
		t.Fatalf("%s: %s", res.r.State, res.r.Reason)
	}
	if hr := h.results(r.ID)["h001"]; hr.Status != rollout.StatusFailed || hr.Step != rollout.StepConnect || !strings.Contains(hr.Error, "refused") {
		t.Fatalf("unreachable host: %+v", hr)
	}
}

// A driver that died leaves hosts "updating": the next driver re-checks them
// by their version before doing anything, so none is updated twice.
func TestRecheckAfterCrash(t *testing.T) {
	h := newHarness(t, 4, settings([]int{100}, 2, 0))
	ctx := context.Background()
	r := h.start("v2")
	res, _ := h.db.HostResults(ctx, r.ID)
	// res[0]: the update went through before the crash. res[1]: it never ran.
	// res[2]: the crash came while rolling back a failed health check.
	res[0].Status, res[0].Step, res[0].PrevVersion = rollout.StatusUpdating, rollout.StepUpdate, "v1"
	res[1].Status, res[1].Step, res[1].PrevVersion = rollout.StatusUpdating, rollout.StepUpdate, "v1"
	res[2].Status, res[2].Step, res[2].PrevVersion, res[2].Error = rollout.StatusUpdating, rollout.StepRollback, "v1", "health failed: exit 1"
	if err := h.db.SaveHostResults(ctx, "test", res[:3]); err != nil {
		t.Fatal(err)
	}
	h.fleet.version[res[0].Host.ID] = "v2"
	h.fleet.version[res[2].Host.ID] = "v2"
	h.fleet.behavior[res[2].Host.ID] = "health-fails"
	// The crashed driver's lease is ours here (same owner name); a new process would wait it out.
	out := wait(t, h.runAsync(ctx, r.ID))
	if out.err != nil || out.r.State != rollout.StateCompleted { // one rolled back of 4 is not over 30 %
		t.Fatalf("run: %v %+v", out.err, out.r)
	}
	got := h.results(r.ID)
	for _, tc := range []struct {
		i       int
		status  rollout.Status
		updates int
	}{{0, rollout.StatusSuccess, 0}, {1, rollout.StatusSuccess, 1}, {2, rollout.StatusRolledBack, 0}} {
		id := res[tc.i].Host.ID
		if got[id].Status != tc.status || h.fleet.updates[id] != tc.updates {
			t.Errorf("host %d: %s after %d updates, want %s after %d", tc.i, got[id].Status, h.fleet.updates[id], tc.status, tc.updates)
		}
	}
	if h.fleet.version[res[2].Host.ID] != "v1" {
		t.Errorf("interrupted rollback not finished")
	}
}

// Shutdown mid-stage: hosts in flight finish, the rollout stays active and is
// released, and the next driver completes it without updating a host twice.
func TestShutdownAndContinue(t *testing.T) {
	h := newHarness(t, 6, settings([]int{100}, 2, 0))
	for _, id := range h.ids {
		h.fleet.gate(id)
	}
	order := h.order()
	r := h.start("v2")
	ctx, cancel := context.WithCancel(context.Background())
	done := h.runAsync(ctx, r.ID)
	h.fleet.waitFor(t, "2 in flight", func() bool { return len(h.fleet.started) == 2 })
	cancel()
	h.fleet.release(order[0])
	h.fleet.release(order[1])
	res := wait(t, done)
	if !errors.Is(res.err, context.Canceled) || !res.r.State.Active() {
		t.Fatalf("after shutdown: %v %+v", res.err, res.r)
	}
	cur, err := h.db.Rollout(context.Background(), r.ID)
	if err != nil || cur.Owner != "" || !cur.State.Active() {
		t.Fatalf("not released: %v %+v", err, cur)
	}
	if got := h.results(r.ID); got[order[0]].Status != rollout.StatusSuccess || got[order[2]].Status != rollout.StatusPending {
		t.Fatalf("in-flight %s, next %s", got[order[0]].Status, got[order[2]].Status)
	}
	for _, id := range h.ids {
		h.fleet.release(id)
	}
	other := rollout.New(withOwner(h.cfg, "second-process"))
	out, err := other.Run(context.Background(), r.ID)
	if err != nil || out.State != rollout.StateCompleted {
		t.Fatalf("continue: %v %+v", err, out)
	}
	for _, id := range h.ids {
		if h.fleet.updates[id] != 1 {
			t.Errorf("%s updated %d times", id, h.fleet.updates[id])
		}
	}
}

func withOwner(c rollout.Config, owner string) rollout.Config {
	c.Owner = owner
	return c
}

// A halt asked of another process reaches the driver through the store.
func TestHaltFromAnotherProcess(t *testing.T) {
	h := newHarness(t, 6, settings([]int{100}, 1, 0))
	for _, id := range h.ids {
		h.fleet.gate(id)
	}
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.fleet.waitFor(t, "1 in flight", func() bool { return len(h.fleet.started) == 1 })
	other := rollout.New(withOwner(h.cfg, "other"))
	if _, err := other.Halt(context.Background(), rollout.HaltRequest{Actor: "U5", Reason: "from elsewhere"}); err != nil {
		t.Fatal(err)
	}
	// The driver's poll sees the request; then the host in flight may finish.
	h.rec.waitFor(t, "the driver to see the halt", hasEvent(rollout.EventHalting))
	for _, id := range h.ids {
		h.fleet.release(id)
	}
	res := wait(t, done)
	if res.r.State != rollout.StateHalted || res.r.HaltedBy != "U5" {
		t.Fatalf("%+v", res.r)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts started after a halt from another process", n)
	}
}

// A halt of a rollout nobody drives (its driver died) ends it at once.
func TestHaltOfAnOrphan(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 1, 0))
	r := h.start("v2")
	if err := h.db.ReleaseRollout(context.Background(), r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U3"})
	if err != nil || got.State != rollout.StateHalted {
		t.Fatalf("%v %+v", err, got)
	}
	if cur, _ := h.db.Rollout(context.Background(), r.ID); cur.State != rollout.StateHalted || cur.Owner != "" {
		t.Fatalf("stored: %+v", cur)
	}
}
