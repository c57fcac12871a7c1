package sshrunner_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// reloadStep is one edit of a file the runner watches, and the next
// connection's outcome.
type reloadStep struct {
	name  string
	edit  func(t *testing.T, path string) // nil leaves the file as it is
	wants []string                        // substrings of the Connect error; none: it connects
}

// runReloadSteps edits path and connects to h with r, step by step, and
// stops at the first step that fails: the later ones build on it.
func runReloadSteps(t *testing.T, r *sshrunner.Runner, h rollout.Host, path string, steps []reloadStep) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.edit != nil {
				st.edit(t, path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := r.Connect(ctx, h, testFence)
			if st.wants == nil {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				c.Close()
				return
			}
			mustContain(t, "Connect", err, st.wants...)
		})
		if !ok {
			t.FailNow()
		}
	}
}

// replaced writes lines to a new file and renames it over path, as
// editors and configuration management do.
func replaced(lines ...string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// rewritten writes lines into path itself: the same inode, truncated.
func rewritten(lines ...string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// rewrittenSameStamp rewrites path in place with content of the same size
// and sets its mtime back, as a rewrite within one tick of a coarse clock
// leaves it: only the content (and the ctime) tells.
func rewrittenSameStamp(lines ...string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		rewritten(lines...)(t, path)
		if err := os.Chtimes(path, time.Time{}, before.ModTime()); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) ||
			after.Sys().(*syscall.Stat_t).Ino != before.Sys().(*syscall.Stat_t).Ino {
			t.Fatalf("the rewrite changed the size, mtime or inode: the test needs lines of the same length")
		}
	}
}

func newPublicKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newLoggedRunner is newRunner with its log, debug lines included, in logs.
func newLoggedRunner(t *testing.T, cfg sshrunner.Config, logs *syncBuffer) *sshrunner.Runner {
	t.Helper()
	r, err := sshrunner.New(cfg, nil, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("sshrunner.New: %v", err)
	}
	return r
}

// logLines are the lines of logs with the message msg.
func logLines(logs *syncBuffer, msg string) []string {
	var out []string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "msg=\""+msg+"\"") {
			out = append(out, l)
		}
	}
	return out
}

// waitForLog polls, for a bounded time, until logs has a line with msg.
func waitForLog(t *testing.T, logs *syncBuffer, msg string) {
	t.Helper()
	deadline := time.Now().Add(slack)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for len(logLines(logs, msg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after %s:\n%s", msg, slack, logs)
		}
		<-tick.C
	}
}

// A key added, rotated or revoked in known_hosts counts from the next
// connection on, however the file is written; a file that does not parse
// leaves the last good keys in force.
func TestKnownHostsReload(t *testing.T) {
	s := startSim(t, fleetsim.Options{Hosts: 2})
	addr0, key0 := s.addr(0), s.HostKey(0)
	other := newPublicKey(t)
	listed := knownhosts.Line([]string{addr0}, key0)
	stale := knownhosts.Line([]string{addr0}, other) // as long as listed
	host1 := knownhosts.Line([]string{s.addr(1)}, s.HostKey(1))
	revoked := "@revoked * " + authorizedKey(key0)
	fp0 := ssh.FingerprintSHA256(key0)

	var logs syncBuffer
	cfg := s.config()
	cfg.KnownHostsFile = writeKnownHosts(t, listed, host1)
	path := cfg.KnownHostsFile
	r := newLoggedRunner(t, cfg, &logs)
	runReloadSteps(t, r, s.host(0), path, []reloadStep{
		{"listed", nil, nil},
		{"revoked, the file replaced by rename", replaced(listed, host1, revoked), []string{"host key of " + addr0 + " (" + fp0 + ") is revoked in " + path}},
		{"revocation taken back", replaced(listed, host1), nil},
		{"revoked, the file rewritten in place", rewritten(listed, host1, revoked), []string{"revoked"}},
		{"rotated on the host, the old key listed", replaced(stale, host1), []string{"host key of " + addr0 + " changed", ssh.FingerprintSHA256(other), fp0}},
		{"the new key added", rewritten(stale, host1, listed), nil},
		{"a torn file keeps the last good keys", rewritten(host1, "127.0.0.1 ssh-ed25519 !!!notbase64"), nil},
		{"still torn", nil, nil},
		{"the next good write counts", replaced(listed, revoked), []string{"revoked"}},
		{"back", replaced(listed, host1), nil},
		{"same size, inode and mtime", rewrittenSameStamp(stale, host1), []string{"host key of " + addr0 + " changed"}},
	})

	warned := logLines(&logs, "known_hosts does not parse; keeping the last good one until it changes")
	if len(warned) != 1 || !strings.Contains(warned[0], "path="+path) || !strings.Contains(warned[0], "illegal base64") {
		t.Errorf("warnings of the torn file: %q, want one naming the file and the error", warned)
	}
	// One reload per good write, none per connection.
	reloaded := logLines(&logs, "known_hosts reloaded")
	if len(reloaded) != 8 {
		t.Errorf("%d reloads, want 8:\n%s", len(reloaded), logs.String())
	}
	if len(reloaded) > 0 && (!strings.Contains(reloaded[0], "path="+path) || !strings.Contains(reloaded[0], "entries=3")) {
		t.Errorf("reload logged as %q, want the path and 3 entries", reloaded[0])
	}
}

// A deleted known_hosts refuses every host, naming the file, rather than
// trust keys the operator may have removed on purpose; a file that is back
// within the grace (deleted, then written anew) fails nobody.
func TestKnownHostsGone(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: 1})
	var logs syncBuffer
	cfg := s.config()
	path := cfg.KnownHostsFile
	r := newLoggedRunner(t, cfg, &logs)
	connect(t, r, s.host(0)).Close()

	t.Run("back within the grace", func(t *testing.T) {
		sshrunner.SetGoneGrace(r, time.Minute)
		defer sshrunner.SetGoneGrace(r, 0)
		if err := os.Rename(path, path+".old"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			c, err := r.Connect(ctx, s.host(0), testFence)
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		waitForLog(t, &logs, "known_hosts is missing; waiting for it to come back")
		if err := os.Rename(path+".old", path); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Connect across the gap: %v", err)
		}
	})

	t.Run("gone", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := r.Connect(ctx, s.host(0), testFence)
			mustContain(t, "Connect without known_hosts", err, "host key of "+s.addr(0)+" not checked", path, "every host is refused until the file is back")
		}
		if got := logLines(&logs, "known_hosts is gone or unreadable; refusing every host until it is back"); len(got) != 1 || !strings.Contains(got[0], path) {
			t.Errorf("logged %q, want one error naming the file", got)
		}
	})

	t.Run("back torn: still refused", func(t *testing.T) {
		rewritten("127.0.0.1 ssh-ed25519 !!!notbase64")(t, path)
		_, err := r.Connect(ctx, s.host(0), testFence)
		mustContain(t, "Connect with a torn known_hosts after it was gone", err, path, "every host is refused until it parses")
	})

	t.Run("back", func(t *testing.T) {
		replaced(string(s.KnownHosts()))(t, path)
		connect(t, r, s.host(0)).Close()
	})
}

// Connections that find known_hosts changed at once reload it once. The
// file lists a fleet of 10,000, so that the reload takes long enough for
// the others to find it under way.
func TestKnownHostsReloadConcurrent(t *testing.T) {
	const hosts, conns, fleet = 4, 40, 10_000
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: hosts})
	var logs syncBuffer
	cfg := s.config()
	r := newLoggedRunner(t, cfg, &logs)
	lines := []string{string(s.KnownHosts())}
	k := newPublicKey(t)
	for i := range fleet {
		lines = append(lines, knownhosts.Line([]string{fmt.Sprintf("[10.0.%d.%d]:22", i/250, i%250)}, k))
	}
	replaced(lines...)(t, cfg.KnownHostsFile)

	start := make(chan struct{})
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			<-start
			c, err := r.Connect(ctx, s.host(i%hosts), testFence)
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := logLines(&logs, "known_hosts reloaded"); len(got) != 1 || !strings.Contains(got[0], fmt.Sprintf("entries=%d", hosts+fleet)) {
		t.Errorf("reloads: %q, want one, of %d entries", got, hosts+fleet)
	}
}

// A client key rotated in the key file is used from the next connection on,
// with the configured passphrase; a key file that goes bad or away leaves
// the last good key in use.
func TestKeyFileReload(t *testing.T) {
	t.Parallel() // bcrypt is slow under the race detector
	const passphrase = "correct horse battery staple"
	s := oneHost(t, fleetsim.OK)
	client, err := ssh.ParsePrivateKey(s.ClientKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := s.config()
	cfg.KeyFile = writeNewKey(t) // not authorized on the fleet
	cfg.KeyPassphrase = passphrase
	path := cfg.KeyFile
	r := newLoggedRunner(t, cfg, &logs)
	rotate := func(t *testing.T, path string) {
		tmp := path + ".new"
		writeEncryptedKey(t, s, tmp, passphrase)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(t *testing.T, path string) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	runReloadSteps(t, r, s.host(0), path, []reloadStep{
		{"a key the hosts do not know", nil, []string{"unable to authenticate"}},
		{"rotated to the authorized key, encrypted", rotate, nil},
		{"a torn key file keeps the last good key", rewritten("-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAAA"), nil},
		{"still torn", nil, nil},
		{"a removed key file keeps the last good key", remove, nil},
	})
	if got := logLines(&logs, "key file reloaded"); len(got) != 1 || !strings.Contains(got[0], ssh.FingerprintSHA256(client.PublicKey())) {
		t.Errorf("reloads: %q, want one naming the new key", got)
	}
	if got := logLines(&logs, "key file does not parse; keeping the last good one until it changes"); len(got) != 1 || !strings.Contains(got[0], path) {
		t.Errorf("warnings: %q, want one naming the file", got)
	}
	if got := logLines(&logs, "key file is gone or unreadable; keeping the last good one"); len(got) != 1 || !strings.Contains(got[0], path) {
		t.Errorf("warnings: %q, want one naming the file", got)
	}
	if strings.Contains(logs.String(), passphrase) {
		t.Error("the log shows the passphrase")
	}
}
