package rollout_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
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
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
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
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
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
		want    rollout.Phase
	}{{3, rollout.PhaseCompleted}, {4, rollout.PhaseHalted}} {
		h := newHarness(t, 10, settings([]int{100}, 1, 0))
		order := h.order()
		for _, id := range order[:tc.failing] {
			h.fleet.behavior[id] = "update-fails"
		}
		r := h.start("v2")
		res := wait(t, h.runAsync(context.Background(), r.ID))
		if res.err != nil || res.r.Phase != tc.want {
			t.Fatalf("%d failing: %v %s (%s)", tc.failing, res.err, res.r.Phase, rollout.Outcome(res.r, rollout.Counts{}))
		}
		if tc.want == rollout.PhaseHalted {
			if !strings.Contains(rollout.Outcome(res.r, rollout.Counts{}), "4 of 10 hosts failed") {
				t.Errorf("reason %q", rollout.Outcome(res.r, rollout.Counts{}))
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
	if res.r.Phase != rollout.PhaseHalted || !strings.Contains(rollout.Outcome(res.r, rollout.Counts{}), "stage 10%: 1 of 1") {
		t.Fatalf("%s: %s", res.r.Phase, rollout.Outcome(res.r, rollout.Counts{}))
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
	if res.r.Phase != rollout.PhaseHalted {
		t.Fatalf("state %s", res.r.Phase)
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
	if res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("state %s", res.r.Phase)
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
	if res.r.Phase != rollout.PhaseHalted || res.r.Halt == nil || res.r.Halt.String() != "halted by U9: lunch" {
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
	if rr.ID != r.ID || !rr.Phase.Active() {
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
	if res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after resume: %s %s", res.r.Phase, rollout.Outcome(res.r, rollout.Counts{}))
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
	if res.r.Phase != rollout.PhaseHalted || len(h.fleet.started) != 2 {
		t.Fatalf("%s after %d started", res.r.Phase, len(h.fleet.started))
	}
	got := h.results(r.ID)
	if got[order[0]].Status != rollout.StatusSuccess || got[order[2]].Status != rollout.StatusPending {
		t.Fatalf("in-flight host %s, next host %s", got[order[0]].Status, got[order[2]].Status)
	}
}

// A host being reached when a halt comes is not sent its update: its
// recorded start is taken back, and it stays pending for a resume.
func TestHaltWhileReaching(t *testing.T) {
	h := newHarness(t, 4, settings([]int{100}, 1, 0))
	first := h.order()[0]
	h.fleet.mu.Lock()
	h.fleet.vgates[first] = make(chan struct{})
	h.fleet.mu.Unlock()
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.fleet.waitFor(t, "the first host's version read", func() bool { return h.fleet.versionReads == 1 })
	// Its start is recorded while it is reached (a bounded poll of the store).
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := h.results(r.ID)[first]
		if got.Status == rollout.StatusUpdating && got.Step == rollout.StepConnect {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host being reached is stored as %s at %s, want updating at connect", got.Status, got.Step)
		}
		<-time.After(10 * time.Millisecond) // a bounded poll
	}
	if _, err := h.eng.Halt(context.Background(), rollout.HaltRequest{Actor: "U2", Reason: "oops"}); err != nil {
		t.Fatal(err)
	}
	close(h.fleet.vgates[first])
	res := wait(t, done)
	if res.r.Phase != rollout.PhaseHalted || len(h.fleet.started) != 0 {
		t.Fatalf("%s after %d updates started", res.r.Phase, len(h.fleet.started))
	}
	if got := h.results(r.ID)[first]; got.Status != rollout.StatusPending {
		t.Fatalf("the host being reached is %s, want pending", got.Status)
	}
}

// commitLog is a real store that keeps the size and first row of each
// transaction of host results the engine asks it for.
type commitLog struct {
	*store.DB
	mu      sync.Mutex
	batches [][]rollout.HostResult
}

func (c *commitLog) SaveHostResults(ctx context.Context, owner string, rs []rollout.HostResult) error {
	c.mu.Lock()
	c.batches = append(c.batches, slices.Clone(rs))
	c.mu.Unlock()
	return c.DB.SaveHostResults(ctx, owner, rs)
}

// Host results go to the store in group commits. With a write delay longer
// than the test, a write is made only when somebody needs one: the starts of
// the hosts being reached all go in the transaction the first of them needs
// before its update is sent, the successes nobody waits for ride along with
// later starts, and each stage's last results are written when its last host
// ends (else the rollout would wait an hour).
func TestGroupCommit(t *testing.T) {
	h := newHarness(t, 20, settings([]int{50, 100}, 5, 0))
	log := &commitLog{DB: h.db}
	h.cfg.Store, h.cfg.WriteDelay = log, time.Hour
	h.eng = rollout.New(h.cfg)
	first := h.order()[:5]
	h.fleet.mu.Lock()
	for _, id := range first {
		h.fleet.vgates[id] = make(chan struct{})
	}
	h.fleet.mu.Unlock()
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.fleet.waitFor(t, "five version reads", func() bool { return h.fleet.versionReads == 5 })
	for _, id := range first {
		close(h.fleet.vgates[id])
	}
	res := wait(t, done)
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("rollout: %v %+v", res.err, res.r)
	}
	for id, n := range h.fleet.updates {
		if n != 1 {
			t.Errorf("%s updated %d times", id, n)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	var got []string
	for _, hr := range log.batches[0] {
		if hr.Status != rollout.StatusUpdating || hr.Step != rollout.StepConnect {
			t.Errorf("first commit has %s %s at %s, want starts only", hr.Host.ID, hr.Status, hr.Step)
		}
		got = append(got, hr.Host.ID)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(first))
	if !slices.Equal(got, want) {
		t.Errorf("first commit has %v, want the five starts %v together", got, want)
	}
	rows := 0
	for _, b := range log.batches {
		rows += len(b)
	}
	if rows != 40 || len(log.batches) > 25 {
		t.Errorf("%d rows in %d commits, want 40 (a start and an end per host) in at most 25", rows, len(log.batches))
	}
	for id, hr := range h.results(r.ID) {
		if hr.Status != rollout.StatusSuccess {
			t.Errorf("%s is stored %s", id, hr.Status)
		}
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
	if res := wait(t, h.runAsync(context.Background(), r.ID)); res.r.Phase != rollout.PhaseHalted {
		t.Fatalf("state %s", res.r.Phase)
	}
	if _, err := h.eng.Resume(context.Background(), rollout.ResumeRequest{Actor: "U1"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, h.runAsync(context.Background(), r.ID))
	if res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after resume: %s %s", res.r.Phase, rollout.Outcome(res.r, rollout.Counts{}))
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
	if res.r.Phase != rollout.PhaseHalted || !strings.Contains(rollout.Outcome(res.r, rollout.Counts{}), "1 of 3") {
		t.Fatalf("%s: %s", res.r.Phase, rollout.Outcome(res.r, rollout.Counts{}))
	}
	if hr := h.results(r.ID)["h001"]; hr.Status != rollout.StatusFailed || hr.Step != rollout.StepConnect || !strings.Contains(hr.Error, "refused") {
		t.Fatalf("unreachable host: %+v", hr)
	}
}

// A driver that died leaves hosts "updating". The next driver re-checks each
// by reading the host's version and its own record of the last update or
// rollback run on it, so nothing is run twice, a rollback is finished, and
// the reason and output recorded before are kept.
func TestRecheckAfterCrash(t *testing.T) {
	ours := func(step rollout.Step, finished bool, exit int) rollout.LastCommand {
		return rollout.LastCommand{Fence: rollout.Fence{Rollout: 1, Epoch: 1}, Step: step, Finished: finished, Exit: exit, From: "v1"}
	}
	for _, tc := range []struct {
		name      string
		step      rollout.Step        // recorded in the store
		version   string              // on the host
		last      rollout.LastCommand // the host's record
		behavior  string
		status    rollout.Status
		updates   int
		rollbacks bool   // the host ends on v1 again
		errHas    string // in the host's error
	}{
		{name: "update never ran", step: rollout.StepUpdate, version: "v1", status: rollout.StatusSuccess, updates: 1},
		{name: "update never ran, a record of an older rollout", step: rollout.StepUpdate, version: "v1",
			last: rollout.LastCommand{Fence: rollout.Fence{Rollout: 0, Epoch: 4}, Step: rollout.StepUpdate, Finished: true}, status: rollout.StatusSuccess, updates: 1},
		{name: "update never ran, a record of another store's rollout #1", step: rollout.StepUpdate, version: "v1",
			last: rollout.LastCommand{Fence: rollout.Fence{Store: "another", Rollout: 1, Epoch: 1}, Step: rollout.StepUpdate, Finished: true}, status: rollout.StatusSuccess, updates: 1},
		{name: "update ran", step: rollout.StepUpdate, version: "v2", last: ours(rollout.StepUpdate, true, 0), status: rollout.StatusSuccess},
		{name: "update ran and failed", step: rollout.StepUpdate, version: "v1", last: ours(rollout.StepUpdate, true, 1),
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "exited with status 1 (under the previous driver)"},
		{name: "update cut off after switching", step: rollout.StepUpdate, version: "v2", last: ours(rollout.StepUpdate, false, 0), status: rollout.StatusSuccess},
		{name: "update cut off before switching", step: rollout.StepUpdate, version: "v1", last: ours(rollout.StepUpdate, false, 0),
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "cut off"},
		{name: "updated, unhealthy", step: rollout.StepUpdate, version: "v2", last: ours(rollout.StepUpdate, true, 0), behavior: "health-fails",
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "health failed"},
		{name: "rollback never ran", step: rollout.StepRollback, version: "v2", last: ours(rollout.StepUpdate, true, 0), behavior: "health-fails",
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "health failed: exit 1"},
		{name: "rollback ran", step: rollout.StepRollback, version: "v1", last: ours(rollout.StepRollback, true, 0),
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "health failed: exit 1"},
		{name: "rollback ran and failed", step: rollout.StepRollback, version: "v2", last: ours(rollout.StepRollback, true, 2),
			status: rollout.StatusFailed, errHas: "health failed: exit 1; then rollback to v1 failed (exit status 2"},
		{name: "never ran, on the target anyway", step: rollout.StepUpdate, version: "v2", status: rollout.StatusSkipped},
		// The start is recorded while the host is reached, without the
		// version it runs: the host's record has it, once the update began.
		{name: "recorded while reaching, never sent", step: rollout.StepConnect, version: "v1", status: rollout.StatusSuccess, updates: 1},
		{name: "recorded while reaching, update ran", step: rollout.StepConnect, version: "v2", last: ours(rollout.StepUpdate, true, 0), status: rollout.StatusSuccess},
		{name: "recorded while reaching, update failed", step: rollout.StepConnect, version: "v1", last: ours(rollout.StepUpdate, true, 1),
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "exited with status 1 (under the previous driver)"},
		{name: "recorded while reaching, update cut off", step: rollout.StepConnect, version: "v1", last: ours(rollout.StepUpdate, false, 0),
			status: rollout.StatusRolledBack, rollbacks: true, errHas: "cut off"},
		{name: "recorded while reaching, on the target anyway", step: rollout.StepConnect, version: "v2", status: rollout.StatusSkipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 1, settings([]int{100}, 1, 0))
			ctx := context.Background()
			r := h.start("v2")
			res, _ := h.db.HostResults(ctx, r.ID)
			id := res[0].Host.ID
			res[0].Status, res[0].Step, res[0].PrevVersion = rollout.StatusUpdating, tc.step, "v1"
			if tc.step == rollout.StepConnect {
				res[0].PrevVersion = ""
			}
			if tc.step == rollout.StepRollback {
				res[0].Error, res[0].Output = "health failed: exit 1", "port 443 closed\n"
			}
			if err := h.db.SaveHostResults(ctx, "test", res); err != nil {
				t.Fatal(err)
			}
			if tc.last.Fence.Rollout == 1 && tc.last.Fence.Store == "" {
				tc.last.Fence.Store = h.db.ID() // this store's rollout #1
			}
			h.fleet.version[id], h.fleet.last[id], h.fleet.behavior[id] = tc.version, tc.last, tc.behavior
			// The crashed driver's lease is ours here (same owner name); a new process would wait it out.
			out := wait(t, h.runAsync(ctx, r.ID))
			if out.err != nil || out.r.Phase.Active() {
				t.Fatalf("run: %v %+v", out.err, out.r)
			}
			got := h.results(r.ID)[id]
			if got.Status != tc.status || h.fleet.updates[id] != tc.updates || !strings.Contains(got.Error, tc.errHas) {
				t.Errorf("%s after %d updates, error %q; want %s after %d, error with %q", got.Status, h.fleet.updates[id], got.Error, tc.status, tc.updates, tc.errHas)
			}
			if want := "v1"; got.PrevVersion != want && !(tc.status == rollout.StatusSkipped && got.PrevVersion == "v2") {
				t.Errorf("previous version %q, want %s as the host ran before the first update", got.PrevVersion, want)
			}
			if tc.rollbacks && h.fleet.version[id] != "v1" {
				t.Errorf("host left on %s, want it rolled back to v1", h.fleet.version[id])
			}
			if tc.step == rollout.StepRollback && !strings.Contains(got.Output, "port 443 closed") {
				t.Errorf("output %q lost in the re-check", got.Output)
			}
		})
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
	if !errors.Is(res.err, context.Canceled) || !res.r.Phase.Active() {
		t.Fatalf("after shutdown: %v %+v", res.err, res.r)
	}
	cur, err := h.db.Rollout(context.Background(), r.ID)
	if err != nil || cur.Owner != "" || !cur.Phase.Active() {
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
	if err != nil || out.Phase != rollout.PhaseCompleted {
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
	if res.r.Phase != rollout.PhaseHalted || res.r.Halt == nil || res.r.Halt.By != "U5" {
		t.Fatalf("%+v", res.r)
	}
	if n := len(h.fleet.started); n != 1 {
		t.Fatalf("%d hosts started after a halt from another process", n)
	}
}

// A halt of a rollout nobody drives (its driver died) waits for a driver:
// the one that takes it over re-checks the hosts left in flight, so none
// stays updating, leaves pending the ones whose update never ran, and only
// then settles the rollout as halted.
func TestHaltOfAnOrphan(t *testing.T) {
	h := newHarness(t, 3, settings([]int{100}, 1, 0))
	ctx := context.Background()
	r := h.start("v2")
	res, _ := h.db.HostResults(ctx, r.ID)
	res[0].Status, res[0].Step, res[0].PrevVersion = rollout.StatusUpdating, rollout.StepUpdate, "v1"
	res[1].Status, res[1].Step, res[1].PrevVersion = rollout.StatusUpdating, rollout.StepUpdate, "v1"
	if err := h.db.SaveHostResults(ctx, "test", res[:2]); err != nil {
		t.Fatal(err)
	}
	ran := res[0].Host.ID
	h.fleet.version[ran] = "v2"
	h.fleet.last[ran] = rollout.LastCommand{Fence: r.Fence(h.db.ID()), Step: rollout.StepUpdate, Finished: true}
	if err := h.db.ReleaseRollout(ctx, r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := h.eng.Halt(ctx, rollout.HaltRequest{Actor: "U3"})
	if err != nil || !got.Phase.Active() || got.Halt == nil || got.Halt.By != "U3" {
		t.Fatalf("%v %+v", err, got)
	}
	if _, err := h.eng.Halt(ctx, rollout.HaltRequest{Actor: "U4", Reason: "again"}); !errors.Is(err, rollout.ErrHalting) {
		t.Fatalf("a second halt: %v", err)
	}
	out, err := rollout.New(withOwner(h.cfg, "taker")).Run(ctx, r.ID)
	if err != nil || out.Phase != rollout.PhaseHalted || out.Halt.String() != "halted by U3" {
		t.Fatalf("takeover: %v %+v", err, out)
	}
	results := h.results(r.ID)
	if s := results[ran].Status; s != rollout.StatusSuccess {
		t.Errorf("the host whose update ran is %s, want success", s)
	}
	if s := results[res[1].Host.ID].Status; s != rollout.StatusPending {
		t.Errorf("the host whose update never ran is %s, want pending", s)
	}
	if n := len(h.fleet.started); n != 0 {
		t.Errorf("%d updates started under a halt", n)
	}
	if cur, _ := h.db.Rollout(ctx, r.ID); cur.Phase != rollout.PhaseHalted || cur.Owner != "" {
		t.Fatalf("stored: %+v", cur)
	}
}

// A host that answers "unhealthy" on every attempt, the last of which runs
// into the health timeout, is reported unhealthy with its last answer, not
// as a host that had no answer.
func TestUnhealthyToTheEnd(t *testing.T) {
	h := newHarness(t, 1, settings([]int{100}, 1, 0))
	h.cfg.HealthTimeout, h.cfg.HealthInterval = time.Second, 100*time.Millisecond
	h.cfg.Defaults.Threshold = 100
	h.eng = rollout.New(h.cfg)
	h.fleet.behavior["h000"] = "health-slow-fails"
	r := h.start("v2")
	if res := wait(t, h.runAsync(context.Background(), r.ID)); res.err != nil {
		t.Fatal(res.err)
	}
	hr := h.results(r.ID)["h000"]
	if hr.Status != rollout.StatusRolledBack || !strings.Contains(hr.Error, "still unhealthy after") ||
		strings.Contains(hr.Error, "no answer") || !strings.Contains(hr.Output, "port 443 closed") {
		t.Fatalf("%s: error %q, output %q", hr.Status, hr.Error, hr.Output)
	}
}
