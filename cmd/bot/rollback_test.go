package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// `rollout rollback` and `rollout plan --rollback`, run as the real program
// against a simulated fleet.

// mustRun runs rolloutbot to its end and fails unless it exits with code.
func (f *fixture) mustRun(code int, args ...string) string {
	f.t.Helper()
	got, out := f.run(args...)
	if got != code {
		f.t.Fatalf("rolloutbot %s exited %d, want %d:\n%s", strings.Join(args, " "), got, code, out)
	}
	return out
}

// assertContains fails for each of wants that out lacks.
func assertContains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// latest is the newest rollout in the fixture's store.
func (f *fixture) latest() *rollout.Rollout {
	f.t.Helper()
	rs, err := f.store().Rollouts(context.Background(), 1)
	if err != nil || len(rs) != 1 {
		f.t.Fatalf("rollouts: %v %v", err, rs)
	}
	return rs[0]
}

// A completed rollout is rolled back from the terminal: the plan says what
// would happen and touches nothing; the rollback puts every host back on v1
// with exactly one rollback command each; status and history show it as
// rolled back; a second rollback is refused and changes nothing.
func TestCLIRollbackOfACompletedRollout(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 6})
	f.mustRun(0, "rollout", "start", "v2")
	before := f.fleet.Totals()

	out := f.mustRun(0, "rollout", "plan", "--rollback")
	assertContains(t, "plan --rollback", out, "rollback of rollout #1 (v2, completed): 6 hosts to check",
		"6 back from v2 to v1", "newest first, 3 at once, no stages")
	if after := f.fleet.Totals(); after != before {
		t.Errorf("plan --rollback contacted the fleet: %+v, before %+v", after, before)
	}
	if r := f.latest(); r.Phase != rollout.PhaseCompleted || r.Undo != nil {
		t.Fatalf("plan --rollback changed the rollout: %s %+v", r.Phase, r.Undo)
	}

	out = f.mustRun(0, "rollout", "rollback", "bad", "metrics")
	assertContains(t, "rollback", out, "rollback asked by", "bad metrics", "↩ rolling back #1 (v2): 6 hosts to put back",
		"■ rollout #1 rolled back: 6 restored", "rollback: 6 hosts — 6 restored")
	for _, h := range f.fleet.Hosts() {
		st := f.fleet.Stats(h.Index)
		if v := f.fleet.Version(h.Index); v != "v1" || st.Rollbacks != 1 || st.Updates != 1 || st.MaxRunning > 1 {
			t.Errorf("%s runs %s after %d updates and %d rollbacks (%d at once)", h.Name, v, st.Updates, st.Rollbacks, st.MaxRunning)
		}
	}
	if r := f.latest(); r.Phase != rollout.PhaseRolledBack || r.Undo == nil || r.Undo.Reason != "bad metrics" || r.Owner != "" {
		t.Errorf("stored: %s %+v owner %q", r.Phase, r.Undo, r.Owner)
	}
	assertContains(t, "status", f.mustRun(0, "rollout", "status"), "rollout #1: v2, rolled back: 6 restored",
		"rollback: asked by", ": bad metrics", "rollback: 6 hosts — 6 restored")
	assertContains(t, "history", f.mustRun(0, "rollout", "history"), "rolled back: 6 restored — 6 updated")

	// Again: refused, with why, and nothing runs.
	before = f.fleet.Totals()
	out = f.mustRun(1, "rollout", "rollback")
	assertContains(t, "a second rollback", out, "rollout #1: the rollout is rolled back already", "rolled back)")
	assertContains(t, "plan --rollback after it", f.mustRun(0, "rollout", "plan", "--rollback"),
		"its rollback was asked for already", "would refuse")
	if after := f.fleet.Totals(); after != before {
		t.Errorf("a refused rollback contacted the fleet: %+v, before %+v", after, before)
	}
}

// Hosts that cannot be put back, and hosts changed by hand since the
// rollout, are named with why; the others are put back; the command exits 4
// (completed with failures).
func TestCLIRollbackWithFailures(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 5})
	f.mustRun(0, "rollout", "start", "v2")
	hosts := f.fleet.Hosts()
	f.fleet.SetVersion(0, "v9")                    // changed by hand
	f.fleet.SetBehavior(1, fleetsim.RollbackFails) // its rollback exits 1
	out := f.mustRun(exitWithFailures, "rollout", "rollback")
	assertContains(t, "rollback", out, "? "+hosts[0].Name+" left alone: runs v9, not v2",
		"✗ "+hosts[1].Name+" not put back on v1: rollback to v1 failed",
		"rolled back: 3 restored, 1 failed, 1 left alone", "not put back (2):")
	for _, h := range hosts {
		want, rollbacks := "v1", int64(1)
		switch h.Index {
		case 0:
			want, rollbacks = "v9", 0
		case 1:
			want = "v2"
		}
		if v, n := f.fleet.Version(h.Index), f.fleet.Stats(h.Index).Rollbacks; v != want || n != rollbacks {
			t.Errorf("%s runs %s after %d rollbacks, want %s after %d", h.Name, v, n, want, rollbacks)
		}
	}
	assertContains(t, "status", f.mustRun(exitWithFailures, "rollout", "status"), "not put back (2):", "left alone", "runs v9")
	assertContains(t, "status of the host", f.mustRun(0, "rollout", "status", "--host", hosts[1].Name), "rollback: failed", "error: rollback to v1 failed")
}

// --id of an older rollout whose hosts a later rollout touched is refused,
// saying which and what to do, before any host is contacted, and still once
// the later one is rolled back (its hosts now refuse the older rollout's
// commands). A later rollout on other hosts does not stand in the way.
func TestCLIRollbackOfAnOlderRollout(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 4})
	hosts := f.fleet.Hosts()
	inventory := func(idx ...int) {
		t.Helper()
		var hs []rollout.Host
		for _, i := range idx {
			hs = append(hs, rollout.Host{ID: hosts[i].Name, Address: hosts[i].Address, Port: hosts[i].Port})
		}
		if err := writeHostsFile(filepath.Join(f.dir, "hosts.yaml"), hs); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(id, later, n string) {
		t.Helper()
		before := f.fleet.Totals()
		for _, args := range [][]string{{"rollout", "rollback", "--id", id}, {"rollout", "plan", "--rollback", "--id", id}} {
			assertContains(t, strings.Join(args, " "), f.mustRun(1, args...), "a later rollout touched the same hosts: rollout #"+later,
				"touched "+n+" of the hosts #"+id+" changed since")
		}
		if after := f.fleet.Totals(); after != before {
			t.Errorf("a refused rollback contacted the fleet: %+v, before %+v", after, before)
		}
	}

	inventory(0, 1)
	f.mustRun(0, "rollout", "start", "v2") // #1: hosts 0 and 1
	inventory(0, 1, 2, 3)
	f.mustRun(0, "rollout", "start", "v2") // #2: 0 and 1 skipped, 2 and 3 updated
	refused("1", "2 (v2)", "2")
	f.mustRun(0, "rollout", "start", "v3") // #3: every host
	refused("2", "3 (v3)", "2")
	f.mustRun(0, "rollout", "rollback")
	refused("2", "3 (v3)", "2")
	assertContains(t, "rollback --id 7", f.mustRun(1, "rollout", "rollback", "--id", "7"), "there is no rollout #7")

	// On other hosts than the later rollouts': rolled back, and only there.
	inventory(0)
	f.mustRun(0, "rollout", "start", "v4") // #4: host 0
	inventory(1)
	f.mustRun(0, "rollout", "start", "v5") // #5: host 1
	out := f.mustRun(0, "rollout", "rollback", "--id", "4")
	assertContains(t, "rollback --id 4", out, "↩ rolling back #4 (v4): 1 host to put back", "rolled back: 1 restored")
	for i, want := range []string{"v2", "v5", "v2", "v2"} {
		if v := f.fleet.Version(i); v != want {
			t.Errorf("%s runs %s, want %s", hosts[i].Name, v, want)
		}
	}
}

// A rollback typed in another terminal while `rollout start` drives the
// rollout reaches that driver through the store: the rollback command says
// so and exits 0; the driver halts (the hosts in flight finish), then puts
// back every host it updated, each once, and exits 3 (not completed).
func TestCLIRollbackOfARunningRollout(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 12, latency: 10 * time.Millisecond})
	f.fleet.Hold()
	driver := f.child("rollout", "start", "v2")
	f.waitUpdates(2)
	out := f.mustRun(0, "rollout", "rollback", "canary", "is", "sick")
	f.fleet.Release()
	assertContains(t, "rollback", out, "rollback requested for rollout #1 (v2): it halts first")
	if !strings.Contains(out, "is driven by another process") && !strings.Contains(out, "ended meanwhile, under its driver") {
		t.Errorf("the rollback does not say the driver does it:\n%s", out)
	}
	if code := driver.wait(t); code != 3 {
		t.Fatalf("the driver exited %d, want 3:\n%s", code, driver.out.String())
	}
	assertContains(t, "the driver", driver.out.String(), "rollback requested by", "canary is sick", "halting first",
		"↩ rolling back #1 (v2)", "■ rollout #1 rolled back:")
	updated := 0
	for _, h := range f.fleet.Hosts() {
		st := f.fleet.Stats(h.Index)
		if v := f.fleet.Version(h.Index); v != "v1" || st.Updates > 1 || st.Rollbacks != st.Updates || st.MaxRunning > 1 {
			t.Errorf("%s runs %s after %d updates and %d rollbacks (%d at once)", h.Name, v, st.Updates, st.Rollbacks, st.MaxRunning)
		}
		updated += int(st.Updates)
	}
	if updated == 0 || updated == 12 {
		t.Errorf("%d hosts updated: the rollback should have come mid-rollout", updated)
	}
	if r := f.latest(); r.Phase != rollout.PhaseRolledBack || r.Owner != "" {
		t.Errorf("stored: %s owner %q", r.Phase, r.Owner)
	}
}

// Usage mistakes of rollback and plan --rollback exit 2, say what is wrong,
// and touch nothing.
func TestCLIRollbackUsage(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 1})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "rollback", "--id", "x"}, "-id"},
		{[]string{"rollout", "rollback", "--id", "-1"}, "--id -1 is not a rollout number"},
		{[]string{"rollout", "rollback", "--nope"}, "-nope"},
		{[]string{"rollout", "plan", "--rollback", "v2"}, "takes no version"},
		{[]string{"rollout", "plan", "--rollback", "--concurrency", "2"}, "--concurrency does not go with --rollback"},
		{[]string{"rollout", "plan", "v2", "--id", "1"}, "--id goes with --rollback"},
	} {
		out, err := f.inProc(tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%q: %v, want a usage error saying %q\n%s", tc.args, err, tc.want, out)
		}
	}
	if code, out := f.run("rollout", "rollback", "--id", "x"); code != 2 {
		t.Errorf("rollback --id x exited %d:\n%s", code, out)
	}
	// Nothing to roll back yet.
	if out, err := f.inProc("rollout", "rollback"); err == nil || !strings.Contains(err.Error(), "no rollout to roll back") {
		t.Errorf("rollback with no rollout: %v\n%s", err, out)
	}
	f.assertFleetUntouched("rollback usage")
	f.assertNoRollouts("rollback usage")
}

// Against a real sshd, in the terminal: a rollout, then its rollback. Every
// machine is back on v1, rolled back once, and never ran two commands at once.
func TestSafetyRollbackFromTheTerminal(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
	for i := range sf.sshd.Hosts {
		sf.set(i, "update_seconds", "0")
	}
	sf.assertCompletedRun("rollout", "start", "v2")
	out := sf.mustRun(0, "rollout", "rollback", "smoke test")
	assertContains(t, "rollback", out, "↩ rolling back #1 (v2): 4 hosts to put back", "rolled back: 4 restored")
	sf.assertRolledBack()
}

// SIGKILL mid-rollback: the rollbacks in flight run on without their driver;
// `rollout resume` waits out its lease, waits for them on the hosts, reads
// how they ended, and finishes the rollback: every machine back on v1, none
// rolled back twice, no two commands at once.
func TestSafetySIGKILLMidRollback(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
	for i := range sf.sshd.Hosts {
		sf.set(i, "update_seconds", "0")
	}
	sf.assertCompletedRun("rollout", "start", "v2")
	for i := range sf.sshd.Hosts {
		sf.set(i, "rollback_seconds", "1")
	}
	sf.hold()
	c := sf.child("rollout", "rollback")
	sf.waitFor("2 rollbacks in flight", func() bool { return sf.rollingBack() == 2 })
	c.signal(t, syscall.SIGKILL)
	c.wait(t)
	if sf.rollingBack() == 0 {
		t.Fatal("the rollbacks ended before the kill; the test needs them running")
	}
	sf.release()
	out := sf.mustRun(0, "rollout", "resume")
	assertContains(t, "resume", out, "continuing the rollback of rollout #1", "rolled back: 4 restored")
	sf.assertRolledBack()
}

// assertCompletedRun runs a rollout that must complete.
func (sf *sshdFleet) assertCompletedRun(args ...string) {
	sf.t.Helper()
	assertContains(sf.t, strings.Join(args, " "), sf.mustRun(0, args...), "completed")
}

// rollingBack is how many machines run a rollback now.
func (sf *sshdFleet) rollingBack() int {
	n := 0
	for i := range sf.sshd.Hosts {
		if sf.count(i, "start rollback") > sf.count(i, "end rollback") {
			n++
		}
	}
	return n
}

// assertRolledBack checks, from the machines' side, that each was updated
// once and rolled back once, is on v1, and never ran two commands at once;
// and that the store has the rollout rolled back with every host restored.
func (sf *sshdFleet) assertRolledBack() {
	sf.t.Helper()
	for i, n := range sf.assertHostsSafe() {
		if n != 1 {
			sf.t.Errorf("machine %d: %d updates, want 1", i, n)
		}
		if rb := sf.count(i, "start rollback"); rb != 1 {
			sf.t.Errorf("machine %d was rolled back %d times:\n%s", i, rb, strings.Join(sf.log(i), "\n"))
		}
		if b, _ := os.ReadFile(filepath.Join(sf.sshd.Hosts[i].Home, "version")); strings.TrimSpace(string(b)) != "v1" {
			sf.t.Errorf("machine %d runs %q", i, b)
		}
	}
	r := sf.latest()
	results, err := sf.store().HostResults(context.Background(), r.ID)
	if err != nil {
		sf.t.Fatal(err)
	}
	if c := rollout.CountResults(results); r.Phase != rollout.PhaseRolledBack || c.Undo.Restored != len(sf.sshd.Hosts) {
		sf.t.Errorf("stored: %s, %s", r.Phase, c.Undo)
	}
}
