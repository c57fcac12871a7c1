package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// waitPhase waits, at most 30 s, until the latest rollout is in phase.
func (f *fixture) waitPhase(phase rollout.Phase) *rollout.Rollout {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		rs, err := f.store().Rollouts(f.t.Context(), 1)
		if err == nil && len(rs) == 1 && rs[0].Phase == phase {
			return rs[0]
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the latest rollout is not %s after 30s: %v %+v", phase, err, rs)
		}
		<-tick.C
	}
}

// A rollout started from the terminal with --gate waits at its gate; a
// promote from another terminal lets the driver go on; plan lists the gate.
func TestCLIGateAndPromote(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 10})
	plan := f.mustRun(0, "rollout", "plan", "v2", "--gate", "10")
	assertContains(t, "plan", plan, "stage  10%: 1 host ", "then waits for an admin to promote it")
	if out, err := f.inProc("rollout", "start", "v2", "--gate", "30"); err == nil || !strings.Contains(out+err.Error(), "30% is not one of the stages") {
		t.Fatalf("a gate that is no stage: %v\n%s", err, out)
	}
	out := f.mustRun(1, "rollout", "promote")
	assertContains(t, "promote with nothing running", out, "no rollout is running")

	driver := f.child("rollout", "start", "v2", "--gate", "10", "--pause", "0s")
	r := f.waitPhase(rollout.PhaseGated)
	if r.Label() != "waiting for promotion to 50%" || f.fleet.Totals().Updates != 1 {
		t.Fatalf("at the gate: %q, %d updates", r.Label(), f.fleet.Totals().Updates)
	}
	out = f.mustRun(0, "rollout", "promote")
	assertContains(t, "promote", out, "promoted rollout #1 of v2 past its gate after stage 10%", "stage 50% (4 hosts)")
	if code := driver.wait(t); code != 0 {
		t.Fatalf("the driver exited %d:\n%s", code, driver.out.String())
	}
	assertContains(t, "the driver", driver.out.String(), "⏸ waiting for promotion to 50%", "▶ promoted by", "■ rollout #1 completed")
	f.assertEachHostOnce()
	out = f.mustRun(1, "rollout", "promote")
	assertContains(t, "promote after the end", out, "no rollout is running")
}

// A promote typed at a terminal is announced in the channel when Slack is
// configured, naming the terminal's user, as a promote in Slack is.
func TestCLIPromoteAnnounced(t *testing.T) {
	f, fake, _ := slackFixture(t, fixtureOptions{hosts: 10})
	driver := f.child("rollout", "start", "v2", "--gate", "10", "--pause", "0s")
	f.waitPhase(rollout.PhaseGated)
	f.mustRun(0, "rollout", "promote")
	if code := driver.wait(t); code != 0 {
		t.Fatalf("the driver exited %d:\n%s", code, driver.out.String())
	}
	want := fmt.Sprintf("▶️ %s promoted rollout #1 (v2) past its gate after stage 10 %%, from a terminal.", actor())
	for _, m := range fake.Messages("C0OPS") {
		if m.Text == want {
			return
		}
	}
	t.Fatalf("no announcement %q in the channel", want)
}
