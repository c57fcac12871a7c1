package rollout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// heldAfterCanary starts v2 and drives it with ctx; while the canary is in
// flight, hold comes (a freeze, the window closing). It returns once the
// canary ended and the rollout waits in phase: the rollout as started, as
// waiting, and the drive's end.
func (h *harness) heldAfterCanary(ctx context.Context, phase rollout.Phase, hold func()) (*rollout.Rollout, *rollout.Rollout, <-chan runResult) {
	h.t.Helper()
	canary := h.order()[0]
	h.fleet.gate(canary)
	r := h.start("v2")
	done := h.runAsync(ctx, r.ID)
	h.fleet.waitFor(h.t, "canary under way", func() bool { return len(h.fleet.started) == 1 })
	hold()
	h.fleet.release(canary)
	return r, h.waitPhase(r.ID, phase), done
}

// calendarHarness is a harness whose engine runs on a fake clock, with a
// calendar and the store's freezes.
func calendarHarness(t *testing.T, n int, s rollout.Settings, now time.Time, windows ...string) (*harness, *fakeClock) {
	t.Helper()
	h := newHarness(t, n, s)
	clock := newFakeClock(now)
	h.cfg.Clock, h.cfg.Freezes = clock, h.db
	for _, w := range windows {
		win, err := rollout.ParseWindow(w)
		if err != nil {
			t.Fatal(err)
		}
		h.cfg.Calendar.Windows = append(h.cfg.Calendar.Windows, win)
	}
	h.eng = rollout.New(h.cfg)
	return h, clock
}

// waitPhase waits for the stored rollout to reach phase, and returns it.
func (h *harness) waitPhase(id int64, phase rollout.Phase) *rollout.Rollout {
	h.t.Helper()
	var got *rollout.Rollout
	h.rec.waitFor(h.t, "phase "+string(phase), func([]rollout.Event) bool {
		r, err := h.db.Rollout(context.Background(), id)
		got = r
		return err == nil && r.Phase == phase
	})
	return got
}

func (h *harness) startedN() int {
	h.fleet.mu.Lock()
	defer h.fleet.mu.Unlock()
	return len(h.fleet.started)
}

func (h *harness) audit() []string {
	h.t.Helper()
	log, err := h.db.AuditLog(context.Background(), 50)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for i := len(log) - 1; i >= 0; i-- {
		e := log[i]
		out = append(out, e.Action+"/"+map[bool]string{true: "ok", false: "refused"}[e.Allowed]+": "+e.Detail)
	}
	return out
}

func hasAudit(entries []string, prefix, contains string) bool {
	for _, e := range entries {
		if strings.HasPrefix(e, prefix) && strings.Contains(e, contains) {
			return true
		}
	}
	return false
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// A start during a freeze is refused naming the freeze, who set it, why
// and when it ends; an override starts anyway, audited.
func TestFreezeRefusesStart(t *testing.T) {
	h, _ := calendarHarness(t, 4, settings([]int{100}, 2, 0), t0)
	ctx := context.Background()
	f, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Source: rollout.SourceSlack, Reason: "incident 4711", Until: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.eng.Start(ctx, rollout.StartRequest{Version: "v2", Actor: "U2", Source: rollout.SourceSlack})
	var fe *rollout.FrozenError
	if !errors.As(err, &fe) || !errors.Is(err, rollout.ErrFrozen) || fe.Freeze.ID != f.ID || !fe.Until.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("start during a freeze: %v", err)
	}
	for _, want := range []string{"by U1", "incident 4711", "until Tue 1 Dec 12:00 UTC", "override"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if _, err := h.db.ActiveRollout(ctx); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("a refused start left a rollout: %v", err)
	}
	// Bad freezes change nothing.
	if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: " "}); err == nil {
		t.Error("a freeze without a reason was set")
	}
	if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "x", Until: t0.Add(-time.Hour)}); err == nil {
		t.Error("a freeze ending in the past was set")
	}

	r, err := h.eng.Start(ctx, rollout.StartRequest{Version: "v2", Actor: "U2", Source: rollout.SourceSlack, Override: "hotfix for 4711"})
	if err != nil {
		t.Fatalf("override: %v", err)
	}
	if r.FreezeOverride == nil || r.FreezeOverride.Reason != "hotfix for 4711" {
		t.Fatalf("override not recorded: %+v", r.FreezeOverride)
	}
	res := wait(t, h.runAsync(ctx, r.ID))
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted || h.startedN() != 4 {
		t.Fatalf("overridden rollout: %v %+v", res.err, res.r)
	}
	if _, err := h.eng.Override(ctx, rollout.OverrideRequest{Actor: "U2", Kind: rollout.OverrideFreeze, Reason: "x"}); !errors.Is(err, rollout.ErrNotRunning) {
		t.Errorf("override with no rollout running: %v", err)
	}
	log := h.audit()
	for _, want := range [][2]string{
		{"freeze/ok", "incident 4711"},
		{"start/refused", "by U1: incident 4711"},
		{"start/ok", "v2"},
		{"freeze.override/ok", "hotfix for 4711"},
	} {
		if !hasAudit(log, want[0], want[1]) {
			t.Errorf("audit lacks %v: %q", want, log)
		}
	}
}

// A freeze that arrives mid-rollout lets the current stage finish, holds
// the rollout in the frozen phase at the boundary, and lets it go on by
// itself when the freeze ends.
func TestFreezeArrivesMidRollout(t *testing.T) {
	h, clock := calendarHarness(t, 10, settings([]int{10, 50, 100}, 1, 0), t0)
	ctx := context.Background()
	order := h.order()
	h.fleet.gate(order[1]) // the first host of stage 50%
	r := h.start("v2")
	done := h.runAsync(ctx, r.ID)
	h.fleet.waitFor(t, "stage 50% under way", func() bool { return len(h.fleet.started) == 2 })
	if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "incident", Until: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	h.fleet.release(order[1])
	got := h.waitPhase(r.ID, rollout.PhaseFrozen)
	// Stage 50% (hosts 1-4) finished; stage 100% did not begin.
	if n := h.startedN(); n != 5 {
		t.Fatalf("%d hosts started, want the 5 of the first two stages", n)
	}
	if got.Stage != 2 || !got.WaitUntil.Equal(t0.Add(time.Hour)) || !strings.Contains(got.WaitFor, "by U1: incident") ||
		got.Label() != "frozen before stage 100%" {
		t.Fatalf("frozen: stage %d until %s for %q (%s)", got.Stage, got.WaitUntil, got.WaitFor, got.Label())
	}
	if w := got.Waiting(t0.Add(30 * time.Minute)); !strings.Contains(w, "until Tue 1 Dec 11:00 UTC, in 30 min") {
		t.Errorf("waiting %q", w)
	}
	h.rec.waitFor(t, "a waiting event", hasEvent(rollout.EventWaiting))
	clock.set(t0.Add(time.Hour))
	res := wait(t, done)
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted || h.startedN() != 10 {
		t.Fatalf("after the freeze: %v %s, %d started", res.err, res.r.Phase, h.startedN())
	}
	over := h.rec.kinds(rollout.EventWaitOver)
	if len(over) != 1 || over[0].Pause != time.Hour {
		t.Errorf("wait over: %+v", over)
	}
}

// An open-ended freeze holds until someone unfreezes; a halt works while
// frozen, and a rollback is not held back by the freeze.
func TestUnfreezeHaltAndRollbackWhileFrozen(t *testing.T) {
	h, _ := calendarHarness(t, 10, settings([]int{10, 100}, 2, 0), t0)
	ctx := context.Background()
	r, got, done := h.heldAfterCanary(ctx, rollout.PhaseFrozen, func() {
		if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "db migration"}); err != nil {
			t.Fatal(err)
		}
	})
	if !got.WaitUntil.IsZero() || !strings.Contains(got.Waiting(t0), "until someone unfreezes") {
		t.Fatalf("open-ended: %q", got.Waiting(t0))
	}
	// Halt while frozen: halted, resumable; resumed, it is frozen again.
	if _, err := h.eng.Halt(ctx, rollout.HaltRequest{Actor: "U3", Reason: "wait"}); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseHalted {
		t.Fatalf("halt while frozen: %+v", res.r)
	}
	if _, err := h.eng.Resume(ctx, rollout.ResumeRequest{Actor: "U3"}); err != nil {
		t.Fatal(err)
	}
	done = h.runAsync(ctx, r.ID)
	h.waitPhase(r.ID, rollout.PhaseFrozen)
	// Unfreeze: it goes on at once (within the poll interval).
	if ended, err := h.eng.Unfreeze(ctx, rollout.UnfreezeRequest{Actor: "U1"}); err != nil || len(ended) != 1 {
		t.Fatalf("unfreeze: %v %+v", err, ended)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted || h.startedN() != 10 {
		t.Fatalf("after unfreeze: %s, %d started", res.r.Phase, h.startedN())
	}

	// A rollback during a freeze runs: rollbacks are never held back.
	if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U3", Reason: "bad", ID: r.ID}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, h.runAsync(ctx, r.ID))
	if res.r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollback during a freeze: %s", res.r.Phase)
	}
	for _, id := range h.ids {
		if h.fleet.version[id] != "v1" {
			t.Errorf("%s runs %s after the rollback", id, h.fleet.version[id])
		}
	}
}

// Outside a window no host starts; a window that closes mid-stage lets the
// hosts in flight finish and starts no other; the rollout goes on when the
// window opens.
func TestWindowClosesAndOpensMidStage(t *testing.T) {
	at := time.Date(2026, 12, 1, 2, 30, 0, 0, time.UTC)
	h, clock := calendarHarness(t, 6, settings([]int{100}, 2, 0), at, "daily 02:00-03:00 UTC")
	ctx := context.Background()
	order := h.order()
	h.fleet.gate(order[0])
	h.fleet.gate(order[1])
	r := h.start("v2")
	done := h.runAsync(ctx, r.ID)
	h.fleet.waitFor(t, "two in flight", func() bool { return len(h.fleet.started) == 2 })
	clock.set(time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)) // the window closes
	h.fleet.release(order[0])
	h.fleet.release(order[1])
	got := h.waitPhase(r.ID, rollout.PhaseWindow)
	if n := h.startedN(); n != 2 {
		t.Fatalf("%d hosts started after the window closed, want the 2 in flight only", n)
	}
	res := h.results(r.ID)
	if res[order[0]].Status != rollout.StatusSuccess || res[order[1]].Status != rollout.StatusSuccess {
		t.Fatalf("in-flight hosts did not finish: %+v %+v", res[order[0]], res[order[1]])
	}
	opens := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC)
	if !got.WaitUntil.Equal(opens) || !strings.Contains(got.Waiting(clock.Now()), "the window (daily 02:00-03:00 UTC): opens Wed 2 Dec 02:00 UTC, in 23 h") {
		t.Fatalf("waiting: %s %q", got.WaitUntil, got.Waiting(clock.Now()))
	}
	clock.set(opens)
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted || h.startedN() != 6 {
		t.Fatalf("after the window opened: %s, %d started", res.r.Phase, h.startedN())
	}
}

// A rollout started outside the windows waits; one started with anytime
// does not, and says so in the audit log.
func TestWindowAtStartAndAnytime(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	h, _ := calendarHarness(t, 3, settings([]int{100}, 2, 0), at, "Mon-Thu 02:00-05:00 Europe/Berlin")
	ctx := context.Background()
	r := h.start("v2")
	done := h.runAsync(ctx, r.ID)
	got := h.waitPhase(r.ID, rollout.PhaseWindow)
	if h.startedN() != 0 || !strings.Contains(got.WaitFor, "opens Wed 2 Dec 02:00 CET") {
		t.Fatalf("outside the window: %d started, %q", h.startedN(), got.WaitFor)
	}
	if _, err := h.eng.Halt(ctx, rollout.HaltRequest{Actor: "U1", Reason: "not today"}); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseHalted {
		t.Fatalf("halt while waiting: %s", res.r.Phase)
	}

	h2, _ := calendarHarness(t, 3, settings([]int{100}, 2, 0), at, "Mon-Thu 02:00-05:00 Europe/Berlin")
	r2, err := h2.eng.Start(ctx, rollout.StartRequest{Version: "v2", Actor: "U1", Source: rollout.SourceCLI, Anytime: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := wait(t, h2.runAsync(ctx, r2.ID)); res.r.Phase != rollout.PhaseCompleted || h2.startedN() != 3 {
		t.Fatalf("anytime: %s", res.r.Phase)
	}
	if log := h2.audit(); !hasAudit(log, "window.override/ok", "outside the windows") {
		t.Errorf("audit: %q", log)
	}
}

// A window on the spring-forward night in Europe/Berlin opens when the
// clock jumps from 02:00 CET to 03:00 CEST (01:00 UTC).
func TestWindowAcrossSpringForward(t *testing.T) {
	at := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC) // 01:30 CET
	h, clock := calendarHarness(t, 2, settings([]int{100}, 2, 0), at, "Sun 02:00-05:00 Europe/Berlin")
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	got := h.waitPhase(r.ID, rollout.PhaseWindow)
	jump := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	if !got.WaitUntil.Equal(jump) || !strings.Contains(got.WaitFor, "opens Sun 29 Mar 03:00 CEST") {
		t.Fatalf("waits until %s: %q", got.WaitUntil, got.WaitFor)
	}
	clock.set(jump.Add(-time.Second))
	if h.startedN() != 0 {
		t.Fatal("a host started before the window opened")
	}
	clock.set(jump)
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after the jump: %s", res.r.Phase)
	}
}

// A restart (or a takeover) while frozen goes on waiting; an override
// recorded by another process (as promote does) moves it on.
func TestRestartWhileFrozenAndOverride(t *testing.T) {
	h, clock := calendarHarness(t, 10, settings([]int{10, 100}, 2, 0), t0)
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	r, _, done := h.heldAfterCanary(runCtx, rollout.PhaseFrozen, func() {
		if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "incident", Until: t0.Add(3 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	})
	stop()
	if res := wait(t, done); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("shutdown while frozen: %v", res.err)
	}

	// A second process takes it over: still frozen, nothing started.
	h.cfg.Owner = "other"
	h.eng = rollout.New(h.cfg)
	done = h.runAsync(ctx, r.ID)
	h.rec.waitFor(t, "the takeover waits", func(evs []rollout.Event) bool {
		return len(h.rec.kindsLocked(evs, rollout.EventStarted)) == 2
	})
	clock.set(t0.Add(time.Hour))
	if got, _ := h.db.Rollout(ctx, r.ID); got.Phase != rollout.PhaseFrozen || h.startedN() != 1 {
		t.Fatalf("after the takeover: %s, %d started", got.Phase, h.startedN())
	}
	// An override recorded in the store (another process) lets it go on.
	if _, err := h.db.SetOverride(ctx, r.ID, rollout.OverrideFreeze, rollout.Override{By: "U2", Reason: "promote", At: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted || h.startedN() != 10 {
		t.Fatalf("after the override: %v %s, %d started", res.err, res.r.Phase, h.startedN())
	}
}

// A rollout waiting for the window survives a takeover; a rollback of it
// runs at once, outside the window; the fall-back night's repeated hour
// does not open a window twice.
func TestRollbackWhileWaitingForTheWindow(t *testing.T) {
	at := time.Date(2026, 12, 1, 2, 30, 0, 0, time.UTC)
	h, clock := calendarHarness(t, 10, settings([]int{10, 100}, 2, 0), at, "daily 02:00-03:00 UTC")
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	r, _, done := h.heldAfterCanary(runCtx, rollout.PhaseWindow, func() {
		clock.set(time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)) // the window closes
	})
	stop()
	wait(t, done)

	h.cfg.Owner = "other"
	h.eng = rollout.New(h.cfg)
	done = h.runAsync(ctx, r.ID)
	h.rec.waitFor(t, "the takeover waits again", func(evs []rollout.Event) bool {
		return len(h.rec.kindsLocked(evs, rollout.EventWaiting)) == 2
	})
	if got, _ := h.db.Rollout(ctx, r.ID); got.Phase != rollout.PhaseWindow || h.startedN() != 1 {
		t.Fatalf("after the takeover: %s, %d started", got.Phase, h.startedN())
	}
	if _, err := h.eng.Rollback(ctx, rollout.RollbackRequest{Actor: "U1", Reason: "bad canary"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, done)
	canary := h.order()[0]
	if res.r.Phase != rollout.PhaseRolledBack || h.fleet.version[canary] != "v1" || h.startedN() != 1 {
		t.Fatalf("rollback outside the window: %s, canary on %s, %d started", res.r.Phase, h.fleet.version[canary], h.startedN())
	}
}

// On the fall-back night in Europe/Berlin, a window 02:00-02:30 is open at
// the first 02:00-02:30 (CEST, 00:00-00:30 UTC) only: at the second (CET)
// no new host starts.
func TestWindowAcrossFallBack(t *testing.T) {
	at := time.Date(2026, 10, 25, 0, 10, 0, 0, time.UTC) // 02:10 CEST
	h, clock := calendarHarness(t, 3, settings([]int{100}, 1, 0), at, "Sun 02:00-02:30 Europe/Berlin")
	order := h.order()
	h.fleet.gate(order[0])
	r := h.start("v2")
	done := h.runAsync(context.Background(), r.ID)
	h.fleet.waitFor(t, "first host under way", func() bool { return len(h.fleet.started) == 1 })
	clock.set(time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC)) // 02:10 CET, the repeated hour
	h.fleet.release(order[0])
	got := h.waitPhase(r.ID, rollout.PhaseWindow)
	if h.startedN() != 1 || !got.WaitUntil.Equal(time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)) {
		t.Fatalf("in the repeated hour: %d started, waits until %s", h.startedN(), got.WaitUntil)
	}
	// The engine's override (as promote would give it) lets it go on outside the window.
	if _, err := h.eng.Override(context.Background(), rollout.OverrideRequest{Actor: "U1", Source: rollout.SourceSlack,
		Kind: rollout.OverrideWindow, Reason: "promote"}); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, done); res.r.Phase != rollout.PhaseCompleted || h.startedN() != 3 {
		t.Fatalf("after the override: %s, %d started", res.r.Phase, h.startedN())
	}
	if log := h.audit(); !hasAudit(log, "window.override/ok", "promote") {
		t.Errorf("audit %q", log)
	}
}

// A promote moves a frozen rollout on, as an override of the freeze: it is
// audited as one, and the rollout completes while the freeze still holds.
func TestPromoteOverridesAFreeze(t *testing.T) {
	h, _ := calendarHarness(t, 10, settings([]int{10, 100}, 2, 0), t0)
	ctx := context.Background()
	_, _, done := h.heldAfterCanary(ctx, rollout.PhaseFrozen, func() {
		if _, err := h.eng.Freeze(ctx, rollout.FreezeRequest{Actor: "U1", Reason: "incident", Until: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	})
	got, err := h.eng.Promote(ctx, rollout.PromoteRequest{Actor: "U2", Source: rollout.SourceSlack, Stage: -1})
	if err != nil || got.FreezeOverride == nil || got.FreezeOverride.By != "U2" {
		t.Fatalf("promote of a frozen rollout: %v %+v", err, got)
	}
	res := wait(t, done)
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted || h.startedN() != 10 {
		t.Fatalf("after the promote: %v %s, %d started", res.err, res.r.Phase, h.startedN())
	}
	if err := h.eng.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := h.db.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range log {
		found = found || (e.Action == "freeze.override" && e.Actor == "U2" && e.Allowed && strings.Contains(e.Detail, "promoted while"))
	}
	if !found {
		t.Errorf("no freeze.override audit entry by U2: %+v", log)
	}
}
