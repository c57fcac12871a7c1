package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/sshdtest"
)

// The safety tests drive real rolloutbot processes against a real OpenSSH
// sshd serving several machines, with updates that outlast the lease (a 2 s
// lease, 5 s updates: what a 15 s lease and a 25 s update do; a 1 s lease
// was lost now and then to a loaded CI machine's stalls, and so was a 1 s
// health timeout), and kill,
// freeze or stop the driver mid-update. Each machine's recipe logs every
// command it runs, and notes when one starts while another runs: the
// invariants are checked from the hosts' side.

// recipeScript is every recipe command, per machine: its version in
// $HOME/version, its log in $HOME/host.log, an update that sleeps
// $HOME/update_seconds (default 5), a health check that fails while
// $HOME/unhealthy exists and the machine is not on v1, and a rollback that
// sleeps $HOME/rollback_seconds if that file exists. An update or rollback
// then waits while $HOME/hold exists (see hold).
const recipeScript = `#!/bin/sh
step=$1 v=$2
log=$HOME/host.log
# A command whose session was closed under it (a health check cut off by its
# timeout) must still reach its end and clear the marker: writes then fail
# instead of killing the script.
trap '' PIPE
mkdir "$HOME/busy" 2>/dev/null || echo "OVERLAP $step $v" >>"$log"
echo "start $step $v" >>"$log"
rc=0
case $step in
version) cat "$HOME/version" ;;
update)
	s=5; [ -f "$HOME/update_seconds" ] && read -r s <"$HOME/update_seconds"
	sleep "$s"
	while [ -f "$HOME/hold" ]; do sleep 0.05; done
	echo "$v" >"$HOME/version" ;;
health) if [ -f "$HOME/unhealthy" ] && [ "$(cat "$HOME/version")" != v1 ]; then echo "unhealthy on $(cat "$HOME/version")"; rc=1; fi ;;
rollback)
	[ -f "$HOME/rollback_seconds" ] && { read -r s <"$HOME/rollback_seconds"; sleep "$s"; }
	while [ -f "$HOME/hold" ]; do sleep 0.05; done
	echo "$v" >"$HOME/version" ;;
esac
echo "end $step $v $rc" >>"$log"
rmdir "$HOME/busy"
exit $rc
`

// sshdFleet is a fixture whose hosts are machines of a real sshd.
type sshdFleet struct {
	*fixture
	sshd *sshdtest.Server
}

type sshdOptions struct {
	hosts       int
	concurrency int
	grace       time.Duration // rollout.shutdown_grace
	dbURL       string
}

func newSSHDFleet(t *testing.T, o sshdOptions) *sshdFleet {
	t.Helper()
	s := sshdtest.Start(t, sshdtest.Options{Hosts: o.hosts})
	dir := t.TempDir()
	script := filepath.Join(dir, "recipe.sh")
	if err := os.WriteFile(script, []byte(recipeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	var hosts []rollout.Host
	for _, h := range s.Hosts {
		hosts = append(hosts, h.Host)
		if err := os.WriteFile(filepath.Join(h.Home, "version"), []byte("v1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeHostsFile(filepath.Join(dir, "hosts.yaml"), hosts); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`state_dir: state
inventory:
  source: file
  file: hosts.yaml
ssh:
  user: %s
  key_file: %s
  known_hosts: %s
  command_timeout: 30s
rollout:
  stages: [100]
  pause: 0s
  concurrency: %d
  health_timeout: 5s
  health_interval: 200ms
  lease_ttl: 2s
  shutdown_grace: %s
recipe:
  version: %s version
  update: %s update {version}
  health: %s health
  rollback: %s rollback {version}
`, s.User, s.ClientKeys["ed25519"], s.KnownHosts(t, s.HostKeys["ed25519"]), o.concurrency, o.grace, script, script, script, script)
	path := filepath.Join(dir, "rolloutbot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, cfg: path}
	if o.dbURL != "" {
		f.env = append(f.env, "DATABASE_URL="+o.dbURL)
	}
	return &sshdFleet{fixture: f, sshd: s}
}

// set writes a machine's file in its home.
func (sf *sshdFleet) set(i int, name, content string) {
	sf.t.Helper()
	if err := os.WriteFile(filepath.Join(sf.sshd.Hosts[i].Home, name), []byte(content+"\n"), 0o644); err != nil {
		sf.t.Fatal(err)
	}
}

// log returns machine i's log lines.
func (sf *sshdFleet) log(i int) []string {
	b, _ := os.ReadFile(filepath.Join(sf.sshd.Hosts[i].Home, "host.log"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// count is how many lines of machine i's log start with prefix.
func (sf *sshdFleet) count(i int, prefix string) int {
	n := 0
	for _, l := range sf.log(i) {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// inFlight is how many machines run an update now.
func (sf *sshdFleet) inFlight() int {
	n := 0
	for i := range sf.sshd.Hosts {
		if sf.count(i, "start update") > sf.count(i, "end update") {
			n++
		}
	}
	return n
}

// assertHostsSafe checks the promises from the machines' side: no two recipe
// commands ever ran at once on one, none was updated more than once, and
// the store leaves none updating. It returns the updates per machine.
func (sf *sshdFleet) assertHostsSafe() []int {
	sf.t.Helper()
	updates := make([]int, len(sf.sshd.Hosts))
	for i := range sf.sshd.Hosts {
		if n := sf.count(i, "OVERLAP"); n > 0 {
			sf.t.Errorf("machine %d ran %d commands beside another:\n%s", i, n, strings.Join(sf.log(i), "\n"))
		}
		updates[i] = sf.count(i, "start update")
		if updates[i] > 1 {
			sf.t.Errorf("machine %d was updated %d times:\n%s", i, updates[i], strings.Join(sf.log(i), "\n"))
		}
	}
	db := sf.store()
	rs, err := db.Rollouts(context.Background(), 1)
	if err != nil || len(rs) != 1 {
		sf.t.Fatalf("rollouts: %v %v", err, rs)
	}
	results, _ := db.HostResults(context.Background(), rs[0].ID)
	for _, hr := range results {
		if hr.Status == rollout.StatusUpdating && rs[0].Phase.Ended() {
			sf.t.Errorf("%s left updating in a %s rollout", hr.Host.ID, rs[0].Phase)
		}
	}
	return updates
}

// assertCompleted checks that the rollout completed with every machine on v2,
// each updated exactly once.
func (sf *sshdFleet) assertCompleted() {
	sf.t.Helper()
	for i, n := range sf.assertHostsSafe() {
		if n != 1 {
			sf.t.Errorf("machine %d: %d updates, want 1", i, n)
		}
		if b, _ := os.ReadFile(filepath.Join(sf.sshd.Hosts[i].Home, "version")); strings.TrimSpace(string(b)) != "v2" {
			sf.t.Errorf("machine %d runs %q", i, b)
		}
	}
	rs, _ := sf.store().Rollouts(context.Background(), 1)
	if rs[0].Phase != rollout.PhaseCompleted {
		sf.t.Errorf("rollout %s, want completed", rollout.Outcome(rs[0], rollout.Counts{}))
	}
}

// hold keeps the updates of the given machines (all if none) running,
// once their update_seconds are over, until release: a test that needs an
// update still running at some point waits for that point, not for the
// clock, however slow the machine.
func (sf *sshdFleet) hold(machines ...int) {
	sf.t.Helper()
	if len(machines) == 0 {
		for i := range sf.sshd.Hosts {
			machines = append(machines, i)
		}
	}
	for _, i := range machines {
		sf.set(i, "hold", "")
	}
}

// release lets every held update end.
func (sf *sshdFleet) release() {
	sf.t.Helper()
	for _, h := range sf.sshd.Hosts {
		if err := os.Remove(filepath.Join(h.Home, "hold")); err != nil && !os.IsNotExist(err) {
			sf.t.Fatal(err)
		}
	}
}

// startMidUpdate starts a rollout of v2 and returns its driver once n
// updates run. The updates are held until release (kill releases them).
func (sf *sshdFleet) startMidUpdate(n int) *child {
	sf.t.Helper()
	sf.hold()
	c := sf.child("rollout", "start", "v2")
	sf.waitFor(fmt.Sprintf("%d updates in flight", n), func() bool { return sf.inFlight() == n })
	return c
}

// kill SIGKILLs driver c while held updates still run, then releases them.
func (sf *sshdFleet) kill(c *child) {
	sf.t.Helper()
	c.signal(sf.t, syscall.SIGKILL)
	c.wait(sf.t)
	if sf.inFlight() == 0 {
		sf.t.Fatal("the updates ended before the kill; the test needs them running")
	}
	sf.release()
}

func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// SIGKILL mid-update: the update runs on without its driver. The next driver
// waits for it on the host, reads how it ended, and updates nobody twice.
func TestSafetySIGKILLMidUpdate(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
	sf.kill(sf.startMidUpdate(2))
	code, out := sf.run("rollout", "resume")
	if code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("resume exited %d:\n%s", code, out)
	}
	sf.assertCompleted()
}

// SIGSTOP past the lease, then SIGCONT: the frozen driver wakes up after
// another took the rollout over, and runs no command anywhere.
func TestSafetySIGSTOPPastTheLease(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
	a := sf.startMidUpdate(2)
	a.signal(t, syscall.SIGSTOP)
	sf.release()
	b := sf.child("rollout", "resume")
	db := sf.store()
	sf.waitFor("the takeover", func() bool {
		r, err := db.ActiveRollout(context.Background())
		return err == nil && r.Epoch >= 2 && r.Owner != ""
	})
	sf.waitFor("the frozen driver's updates to end", func() bool { return sf.inFlight() == 0 })
	a.signal(t, syscall.SIGCONT)
	if code := b.wait(t); code != 0 {
		t.Fatalf("the new driver exited %d:\n%s", code, b.out.String())
	}
	if code := a.wait(t); code == 0 {
		t.Errorf("the replaced driver exited 0:\n%s", a.out.String())
	}
	sf.assertCompleted()
}

// SIGSTOP past the lease with nobody to take over, then SIGCONT, as when a
// hypervisor pauses the bot's machine: the driver wakes with its lease run
// out, starts nothing until the store renews it (nobody claimed the rollout
// meanwhile), and carries on to the end, each machine updated once.
func TestSafetySIGSTOPPastTheLeaseNobodyTakesOver(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
	a := sf.startMidUpdate(2)
	a.signal(t, syscall.SIGSTOP)
	sf.release()
	sf.waitLeaseOut()
	a.signal(t, syscall.SIGCONT)
	if code, out := a.wait(t), a.out.String(); code != 0 || !strings.Contains(out, "lease renewed after it ran out") {
		t.Fatalf("the driver woken past its lease exited %d, want 0 after renewing it:\n%s", code, out)
	}
	sf.assertCompleted()
}

// waitLeaseOut waits until the active rollout's lease ran out on the
// store's clock.
func (sf *sshdFleet) waitLeaseOut() {
	sf.t.Helper()
	db := sf.store()
	sf.waitFor("the lease to run out", func() bool {
		r, err1 := db.ActiveRollout(context.Background())
		now, err2 := db.Now(context.Background())
		return err1 == nil && err2 == nil && now.After(r.LeaseUntil)
	})
}

// SIGTERM with a grace shorter than the update: the driver says what it
// leaves behind and exits; the command it cut off still runs on the host,
// and the next driver waits for it instead of updating again.
func TestSafetySIGTERMGraceShorterThanTheUpdate(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 500 * time.Millisecond})
	a := sf.startMidUpdate(2)
	a.signal(t, syscall.SIGTERM)
	code := a.wait(t)
	out := a.out.String()
	if code != exitActive || !strings.Contains(out, "re-check") {
		t.Fatalf("after SIGTERM the driver exited %d, want %d (still active) and the hosts it cut off named:\n%s", code, exitActive, out)
	}
	if sf.inFlight() == 0 {
		t.Fatal("the updates ended within the grace; the test needs them cut off")
	}
	sf.release()
	code, out = sf.run("rollout", "resume")
	if code != 0 {
		t.Fatalf("resume exited %d:\n%s", code, out)
	}
	sf.assertCompleted()
}

// A halt, then the driver is killed while the hosts in flight finish: the
// next driver re-checks them before it settles the rollout as halted, and a
// resume after that counts each failure once and updates nobody twice.
func TestSafetyCrashAfterHalt(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 6, concurrency: 2, grace: 30 * time.Second})
	a := sf.startMidUpdate(2)
	if code, out := sf.run("rollout", "halt", "testing"); code != 0 {
		t.Fatalf("halt exited %d:\n%s", code, out)
	}
	sf.waitFor("the driver to see the halt", func() bool { return strings.Contains(a.out.String(), "halt requested") })
	sf.kill(a)
	code, out := sf.run("rollout", "resume")
	if code != 3 || !strings.Contains(out, "halted by") {
		t.Fatalf("the takeover of a halting rollout exited %d, want 3 and halted:\n%s", code, out)
	}
	updates := sf.assertHostsSafe()
	results, _ := sf.store().HostResults(context.Background(), 1)
	for i, hr := range results {
		if hr.Status == rollout.StatusUpdating {
			t.Errorf("host %d left updating after the halt", i)
		}
	}
	if n := updates[0] + updates[1] + updates[2] + updates[3] + updates[4] + updates[5]; n != 2 {
		t.Errorf("%d machines updated under the halt, want the 2 in flight", n)
	}
	code, out = sf.run("rollout", "resume")
	if code != 0 {
		t.Fatalf("resume after the halt exited %d:\n%s", code, out)
	}
	sf.assertCompleted()
}

// The threshold trips while hosts are in flight and the driver is killed:
// the next driver re-checks them, rolls back the unhealthy ones, and settles
// the rollout halted; nothing stays updating or on the new version unhealthy.
func TestSafetyCrashAfterThresholdTrip(t *testing.T) {
	sf := newSSHDFleet(t, sshdOptions{hosts: 6, concurrency: 6, grace: 30 * time.Second})
	// Two machines fail fast (at once unhealthy, for the 5 s health
	// timeout); four are still updating, held, when the threshold (two of
	// six) trips. Of those, two are unhealthy too.
	sf.hold(2, 3, 4, 5)
	for i := range 6 {
		sf.set(i, "update_seconds", strconv.Itoa(map[bool]int{true: 0, false: 1}[i < 2]))
		if i < 4 {
			sf.set(i, "unhealthy", "")
		}
	}
	a := sf.child("rollout", "start", "v2")
	sf.waitFor("the threshold to trip", func() bool { return strings.Contains(a.out.String(), "halting") })
	sf.kill(a)
	code, out := sf.run("rollout", "resume")
	if code != 3 || !strings.Contains(out, "threshold") {
		t.Fatalf("the takeover exited %d, want 3 and halted on the threshold:\n%s", code, out)
	}
	for i, n := range sf.assertHostsSafe() {
		if n != 1 {
			t.Errorf("machine %d: %d updates, want 1", i, n)
		}
	}
	results, _ := sf.store().HostResults(context.Background(), 1)
	for _, hr := range results {
		i := slicesIndex(sf.sshd.Hosts, hr.Host.ID)
		b, _ := os.ReadFile(filepath.Join(sf.sshd.Hosts[i].Home, "version"))
		want, status := "v2", rollout.StatusSuccess
		if i < 4 {
			want, status = "v1", rollout.StatusRolledBack
		}
		if hr.Status != status || strings.TrimSpace(string(b)) != want {
			t.Errorf("machine %d: %s on %s, want %s on %s (%s)", i, hr.Status, b, status, want, hr.Error)
		}
	}
	// Resuming now counts the failures from before once: the stage is done.
	code, out = sf.run("rollout", "resume")
	if code != exitWithFailures || !strings.Contains(out, "completed, 4 rolled back") {
		t.Fatalf("resume exited %d:\n%s", code, out)
	}
}

func slicesIndex(hosts []sshdtest.Host, id string) int {
	for i, h := range hosts {
		if h.ID == id {
			return i
		}
	}
	return -1
}

// `rollout halt` typed while the driver is dead, its lease still valid or
// already run out: the halt takes the rollout over, re-checks the hosts left
// in flight, and settles it halted; the pending hosts stay untouched.
func TestSafetyHaltWhileTheDriverIsDead(t *testing.T) {
	for _, leaseValid := range []bool{true, false} {
		t.Run(fmt.Sprintf("lease valid %v", leaseValid), func(t *testing.T) {
			sf := newSSHDFleet(t, sshdOptions{hosts: 4, concurrency: 2, grace: 30 * time.Second})
			sf.kill(sf.startMidUpdate(2))
			if !leaseValid {
				sf.waitLeaseOut()
				out := sf.mustRun(exitActive, "rollout", "status")
				assertContains(t, "status of a rollout whose driver died", out, "let its lease run out", "`rollout resume` does")
			}
			code, out := sf.run("rollout", "halt", "driver died")
			if code != 0 || !strings.Contains(out, "has no driver") || !strings.Contains(out, "halted by") {
				t.Fatalf("halt exited %d:\n%s", code, out)
			}
			updates := sf.assertHostsSafe()
			results, _ := sf.store().HostResults(context.Background(), 1)
			done := 0
			for _, hr := range results {
				switch hr.Status {
				case rollout.StatusSuccess:
					done++
				case rollout.StatusPending:
				default:
					t.Errorf("%s is %s after the halt", hr.Host.ID, hr.Status)
				}
			}
			if total := updates[0] + updates[1] + updates[2] + updates[3]; done != 2 || total != 2 {
				t.Errorf("%d hosts done and %d updated, want the 2 that were in flight", done, total)
			}
		})
	}
}
