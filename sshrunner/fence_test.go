package sshrunner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/sshdtest"
)

func TestFencedRoundTrip(t *testing.T) {
	for _, f := range []sshrunner.Fenced{
		{Dir: ".rolloutbot", Fence: rollout.Fence{Store: "0f9c2e", Rollout: 7, Epoch: 3}, Step: rollout.StepUpdate, LockWait: 300,
			Command: `apt-get install -y myapp='2.4.1' && echo "it's done" | tee /tmp/x`, From: "2.4.0"},
		{Dir: "/var/lib/my dir/it's", Fence: rollout.Fence{Rollout: 1, Epoch: 1}, Step: rollout.StepVersion, LockWait: 1, Command: "cat VERSION"},
	} {
		got, ok := sshrunner.ParseFenced(f.String())
		if !ok || got != f {
			t.Errorf("ParseFenced(String(%+v)) = %+v, %v", f, got, ok)
		}
	}
	if _, ok := sshrunner.ParseFenced("fleetctl version"); ok {
		t.Error("a plain command parsed as fenced")
	}
}

// runWrapper runs a fenced command with this machine's sh, as sshd's login
// shell would, with PATH as given.
func runWrapper(t *testing.T, f sshrunner.Fenced, path string) (string, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", f.String())
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir(), "SHELL=/bin/sh"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// A host without flock(1) is named as such, and nothing runs there.
func TestWrapperWithoutFlock(t *testing.T) {
	bin := t.TempDir() // sh only: no flock on this PATH
	if err := os.Symlink("/bin/sh", filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	out, code := runWrapper(t, sshrunner.Fenced{Dir: dir, Fence: rollout.Fence{Rollout: 1, Epoch: 1}, Step: rollout.StepUpdate,
		LockWait: 1, Command: "echo > " + marker}, bin)
	if code != 122 || !strings.Contains(out, "rolloutbot: flock(1) is not installed on this host") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran on a host without its lock")
	}
}

// Against a real sshd: a driver whose fence is older than the host's runs
// nothing there, and says so; a version read reports the host's record of
// its last update.
func TestSSHDFencing(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.Options{})
	host := s.Hosts[0].Host
	cfg := sshdConfig(t, s)
	for name, content := range map[string]string{"version": "v1\n", "healthy": ""} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := newRunner(t, cfg, nil)
	ctx := context.Background()
	open := func(f rollout.Fence) rollout.Conn {
		t.Helper()
		c, err := r.Connect(ctx, host, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	old, replaced := open(rollout.Fence{Rollout: 4, Epoch: 1}), open(rollout.Fence{Rollout: 4, Epoch: 2})
	if _, err := old.Version(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Update(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	hs, err := replaced.Version(ctx)
	// The host recorded the version the update started from, as old read it.
	want := rollout.LastCommand{Fence: rollout.Fence{Rollout: 4, Epoch: 1}, Step: rollout.StepUpdate, Finished: true, From: "v1"}
	if err != nil || hs.Version != "v2" || hs.Last != want {
		t.Fatalf("Version = %+v, %v; want v2 and %+v", hs, err, want)
	}
	// The new driver has been here: the old one may do nothing more.
	_, err = old.Rollback(ctx, "v1")
	if !errors.Is(err, rollout.ErrFenced) || !strings.Contains(err.Error(), "rollout 4 epoch 2") {
		t.Fatalf("Rollback under the old fence = %v, want it fenced off", err)
	}
	if hs, _ := replaced.Version(ctx); hs.Version != "v2" {
		t.Fatalf("the fenced rollback ran: the host runs %s", hs.Version)
	}
	// A later rollout's fence is newer than any epoch of an earlier one.
	if _, err := open(rollout.Fence{Rollout: 5, Epoch: 1}).Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := replaced.Health(ctx); !errors.Is(err, rollout.ErrFenced) {
		t.Fatalf("Health under rollout 4's fence after rollout 5 = %v", err)
	}
	// Another store (one set up anew counts rollouts from 1 again) is not
	// fenced off by this one's numbers, and its record of the last update is
	// not taken for its own.
	fresh := open(rollout.Fence{Store: "a-new-store", Rollout: 1, Epoch: 1})
	if hs, err := fresh.Version(ctx); err != nil || hs.Last.Of(rollout.Fence{Store: "a-new-store", Rollout: 4}) {
		t.Fatalf("Version under a new store's fence = %+v, %v", hs, err)
	}
	if _, err := fresh.Health(ctx); err != nil {
		t.Fatalf("Health under a new store's fence: %v", err)
	}
}

// {address} in the host directory is each host's own address.
func TestHostDirPerAddress(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.Options{})
	cfg := sshdConfig(t, s)
	base := t.TempDir()
	cfg.HostDir = filepath.Join(base, "{address}.rolloutbot")
	if err := os.WriteFile(filepath.Join(s.Dir, "version"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := connect(t, newRunner(t, cfg, nil), s.Hosts[0].Host)
	if _, err := c.Version(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, s.Hosts[0].Address+".rolloutbot", "lock")); err != nil {
		t.Fatalf("no lock in the host's own directory: %v", err)
	}
}

// A host's record reads back as written, and records in the forms older
// wrappers wrote still read: without the version an update started from,
// and without the store.
func TestLastRecord(t *testing.T) {
	for _, l := range []rollout.LastCommand{
		{Fence: rollout.Fence{Store: "0f9c2e", Rollout: 7, Epoch: 3}, Step: rollout.StepUpdate, From: "2.4.0"},
		{Fence: rollout.Fence{Store: "0f9c2e", Rollout: 7, Epoch: 3}, Step: rollout.StepUpdate, Finished: true, Exit: 4, From: "2.4.0"},
		{Fence: rollout.Fence{Rollout: 1, Epoch: 1}, Step: rollout.StepRollback, Finished: true},
	} {
		if got, err := sshrunner.ParseLast(sshrunner.FormatLast(l)); err != nil || got != l {
			t.Errorf("ParseLast(FormatLast(%+v)) = %+v, %v", l, got, err)
		}
	}
	for line, want := range map[string]rollout.LastCommand{
		"0f9c2e 7 3 update 0": {Fence: rollout.Fence{Store: "0f9c2e", Rollout: 7, Epoch: 3}, Step: rollout.StepUpdate, Finished: true},
		"7 3 update running":  {Fence: rollout.Fence{Rollout: 7, Epoch: 3}, Step: rollout.StepUpdate},
		"":                    {},
	} {
		if got, err := sshrunner.ParseLast(line); err != nil || got != want {
			t.Errorf("ParseLast(%q) = %+v, %v; want %+v", line, got, err, want)
		}
	}
	if _, err := sshrunner.ParseLast("0f9c2e 7 3 update"); err == nil {
		t.Error("a record without its status read")
	}
}

// A daemon started by an update inherits the host's lock: the next command
// is refused once its wait for the lock ends, saying that the update ended
// and that a process it left running keeps the lock, and how to start one.
// A daemon that closes fd 9 leaves the host free.
func TestWrapperDaemonKeepsTheLock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		redirs  string
		blocked bool
	}{
		{"inherits fd 9", "", true},
		{"closes fd 9", " 9>&-", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "daemon.pid")
			t.Cleanup(func() {
				if b, err := os.ReadFile(pidFile); err == nil {
					exec.Command("kill", strings.TrimSpace(string(b))).Run()
				}
			})
			fence := rollout.Fence{Store: "s1", Rollout: 1, Epoch: 1}
			start := "sh -c 'echo $$ >" + pidFile + "; exec sleep 60' >/dev/null 2>&1" + tc.redirs + " &"
			if out, code := runWrapper(t, sshrunner.Fenced{Dir: dir, Fence: fence, Step: rollout.StepUpdate, LockWait: 1,
				Command: start, From: "v1"}, "/usr/bin:/bin"); code != 0 {
				t.Fatalf("the update exited %d: %s", code, out)
			}
			out, code := runWrapper(t, sshrunner.Fenced{Dir: dir, Fence: fence, Step: rollout.StepHealth, LockWait: 1, Command: "true"}, "/usr/bin:/bin")
			switch {
			case !tc.blocked && code != 0:
				t.Fatalf("with fd 9 closed for the daemon, the next command exited %d: %s", code, out)
			case tc.blocked && (code != 121 || !strings.Contains(out, "though the last update recorded here ended (status 0): most likely a process it started is still running and keeps the lock") ||
				!strings.Contains(out, "9>&-")):
				t.Fatalf("the next command exited %d, want 121 naming the daemon: %s", code, out)
			}
		})
	}
}
