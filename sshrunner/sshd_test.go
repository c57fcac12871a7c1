package sshrunner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/sshdtest"
)

// shellRecipe keeps the version in a file of dir.
func shellRecipe(dir string) sshrunner.Recipe {
	v := filepath.Join(dir, "version")
	return sshrunner.Recipe{
		Version:  "cat " + v,
		Update:   "echo {version} > " + v,
		Health:   "test -f " + filepath.Join(dir, "healthy"),
		Rollback: "echo {version} > " + v,
	}
}

// sshdConfig is a runner's configuration for s, with the version kept in
// s.Dir.
func sshdConfig(t *testing.T, s *sshdtest.Server) sshrunner.Config {
	return sshrunner.Config{
		User:           s.User,
		KeyFile:        s.ClientKeys["ed25519"],
		KnownHostsFile: s.KnownHosts(t, s.HostKeys["ed25519"]),
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second,
		// Each test's own host directory, so parallel tests on one sshd do
		// not wait for each other's lock.
		HostDir: t.TempDir(),
		Recipe:  shellRecipe(s.Dir),
	}
}

func TestSSHD(t *testing.T) {
	start := time.Now()
	s := sshdtest.Start(t, sshdtest.Options{})
	host := s.Hosts[0].Host
	t.Logf("sshd up in %v on %s", time.Since(start), host.Addr())
	ctx := context.Background()
	versionFile := filepath.Join(s.Dir, "version")
	healthy := filepath.Join(s.Dir, "healthy")
	if err := os.WriteFile(versionFile, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("session refused", func(t *testing.T) {
		// The server is up and the login works, but it opens no session:
		// that is the host's refusal, not a lost connection.
		c := connect(t, newRunner(t, sshdConfig(t, s), nil), s.NoSessions)
		_, err := c.Version(ctx)
		mustContain(t, "Version", err, s.NoSessions.Addr()+" refused to open a session")
		if errors.Is(err, rollout.ErrConnLost) {
			t.Errorf("a refused session is not a lost connection: %v", err)
		}
	})

	t.Run("recipe", func(t *testing.T) {
		c := connect(t, newRunner(t, sshdConfig(t, s), nil), host)
		if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
			t.Fatalf("Version = %q, %v", v.Version, err)
		}
		// The quoted version lands literally, + and - included.
		if out, err := c.Update(ctx, "v1.0+build-7"); err != nil {
			t.Fatalf("Update: %v (%q)", err, out)
		}
		if b, _ := os.ReadFile(versionFile); string(b) != "v1.0+build-7\n" {
			t.Fatalf("version file = %q", b)
		}
		if v, err := c.Version(ctx); err != nil || v.Version != "v1.0+build-7" {
			t.Fatalf("Version after update = %q, %v", v.Version, err)
		}
		os.Remove(healthy)
		_, err := c.Health(ctx)
		mustContain(t, "Health without the healthy file", err, "exited with status 1")
		if errors.Is(err, rollout.ErrConnLost) {
			t.Errorf("an unhealthy host is not a lost connection: %v", err)
		}
		if err := os.WriteFile(healthy, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Health(ctx); err != nil {
			t.Fatalf("Health: %v", err)
		}
		if _, err := c.Rollback(ctx, "v1"); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
			t.Fatalf("Version after rollback = %q, %v", v.Version, err)
		}
		if _, err := c.Update(ctx, "v1; touch "+filepath.Join(s.Dir, "pwned")); !errors.Is(err, rollout.ErrInvalidVersion) {
			t.Fatalf("Update with a command in the version = %v", err)
		}
		if _, err := os.Stat(filepath.Join(s.Dir, "pwned")); err == nil {
			t.Fatal("the version ran as a command")
		}
	})

	// The server offers ed25519, RSA and ECDSA host keys; the runner must
	// ask for the kind known_hosts lists, whichever it is.
	for _, typ := range []string{"ed25519", "rsa", "ecdsa"} {
		t.Run("host key "+typ+" only", func(t *testing.T) {
			t.Parallel()
			cfg := sshdConfig(t, s)
			cfg.KnownHostsFile = s.KnownHosts(t, s.HostKeys[typ])
			c := connect(t, newRunner(t, cfg, nil), host)
			if _, err := c.Version(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Hashed entries, as ssh-keygen -H writes them (and OpenSSH clients do
	// with HashKnownHosts yes), hold no readable name to index by.
	t.Run("hashed known_hosts", func(t *testing.T) {
		t.Parallel()
		for _, typ := range []string{"ed25519", "rsa"} {
			t.Run(typ, func(t *testing.T) {
				path := s.KnownHosts(t, s.HostKeys[typ])
				if out, err := exec.Command("ssh-keygen", "-q", "-H", "-f", path).CombinedOutput(); err != nil {
					t.Fatalf("ssh-keygen -H: %v\n%s", err, out)
				}
				if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "|1|") {
					t.Fatalf("known_hosts not hashed: %q", b)
				}
				cfg := sshdConfig(t, s)
				cfg.KnownHostsFile = path
				c := connect(t, newRunner(t, cfg, nil), host)
				if _, err := c.Version(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("wildcard known_hosts", func(t *testing.T) {
		t.Parallel()
		cfg := sshdConfig(t, s)
		cfg.KnownHostsFile = writeKnownHosts(t, "[127.0.0.*]:"+strconv.Itoa(host.Port)+" "+authorizedKey(s.HostKeys["ed25519"]))
		connect(t, newRunner(t, cfg, nil), host)
	})

	// A @revoked line sends every host through knownhosts, which must still
	// ask the server for the kind of key listed.
	t.Run("known_hosts with a revoked key", func(t *testing.T) {
		t.Parallel()
		path := sshdtest.Keygen(t, t.TempDir(), "revoked", "-t", "ecdsa")
		cfg := sshdConfig(t, s)
		cfg.KnownHostsFile = writeKnownHosts(t,
			"@revoked * "+authorizedKey(sshdtest.ReadPublicKey(t, path+".pub")),
			knownhosts.Line([]string{host.Addr()}, s.HostKeys["ed25519"]))
		connect(t, newRunner(t, cfg, nil), host)
		// Revoking the key the server presents refuses it.
		cfg.KnownHostsFile = writeKnownHosts(t,
			"@revoked * "+authorizedKey(s.HostKeys["ed25519"]),
			knownhosts.Line([]string{host.Addr()}, s.HostKeys["ed25519"]))
		_, err := newRunner(t, cfg, nil).Connect(ctx, host, testFence)
		mustContain(t, "Connect", err, "revoked")
	})

	// A @cert-authority line (for other hosts) beside a plain entry: the
	// runner must still ask this server for the kind of key listed, and
	// also accept a certificate, which such files are for.
	t.Run("known_hosts with a cert authority", func(t *testing.T) {
		t.Parallel()
		ca := sshdtest.Keygen(t, t.TempDir(), "ca", "-t", "ed25519")
		for _, typ := range []string{"ed25519", "rsa"} {
			cfg := sshdConfig(t, s)
			cfg.KnownHostsFile = writeKnownHosts(t,
				"@cert-authority *.example.com "+authorizedKey(sshdtest.ReadPublicKey(t, ca+".pub")),
				knownhosts.Line([]string{host.Addr()}, s.HostKeys[typ]))
			c := connect(t, newRunner(t, cfg, nil), host)
			if _, err := c.Version(ctx); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
		}
		// Only the CA vouches for this server, which has no certificate.
		cfg := sshdConfig(t, s)
		cfg.KnownHostsFile = writeKnownHosts(t, "@cert-authority [127.0.0.1]:"+strconv.Itoa(host.Port)+" "+authorizedKey(sshdtest.ReadPublicKey(t, ca+".pub")))
		_, err := newRunner(t, cfg, nil).Connect(ctx, host, testFence)
		mustContain(t, "Connect", err, "presented a plain", "only through a certificate authority")
	})

	t.Run("changed host key", func(t *testing.T) {
		t.Parallel()
		cfg := sshdConfig(t, s)
		path := sshdtest.Keygen(t, t.TempDir(), "other", "-t", "ed25519")
		other := sshdtest.ReadPublicKey(t, path+".pub")
		cfg.KnownHostsFile = s.KnownHosts(t, other)
		_, err := newRunner(t, cfg, nil).Connect(ctx, host, testFence)
		mustContain(t, "Connect", err, "host key of "+host.Addr()+" changed", ssh.FingerprintSHA256(other), ssh.FingerprintSHA256(s.HostKeys["ed25519"]))
	})

	t.Run("trust on first use", func(t *testing.T) {
		t.Parallel()
		db := openStore(t)
		cfg := sshdConfig(t, s)
		cfg.KnownHostsFile = ""
		cfg.TrustOnFirstUse = true
		r := newRunner(t, cfg, db)
		connect(t, r, host).Close()
		pinned, err := db.PinnedHostKey(ctx, host.Addr())
		if err != nil || pinned == "" {
			t.Fatalf("pinned %q, %v", pinned, err)
		}
		// Later connections ask for the pinned kind of key and get it.
		connect(t, r, host).Close()
	})

	for _, typ := range []string{"rsa", "ecdsa"} {
		t.Run("client key "+typ, func(t *testing.T) {
			t.Parallel()
			cfg := sshdConfig(t, s)
			cfg.KeyFile = s.ClientKeys[typ]
			c := connect(t, newRunner(t, cfg, nil), host)
			if _, err := c.Version(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("stderr and exit status reach the report", func(t *testing.T) {
		t.Parallel()
		cfg := sshdConfig(t, s)
		cfg.Recipe.Health = "echo checking; echo 'disk full on /var' >&2; exit 3"
		c := connect(t, newRunner(t, cfg, nil), host)
		out, err := c.Health(ctx)
		mustContain(t, "Health", err, "exited with status 3")
		if !strings.Contains(out, "disk full on /var") || !strings.Contains(out, "checking") {
			t.Errorf("output tail %q lacks the command's output", out)
		}
	})

	t.Run("long output keeps its tail", func(t *testing.T) {
		t.Parallel()
		cfg := sshdConfig(t, s)
		cfg.OutputTail = 64
		cfg.Recipe.Health = "seq 1 100000; echo last words; exit 1"
		cfg.Recipe.Version = "echo v7; seq 1 100000"
		c := connect(t, newRunner(t, cfg, nil), host)
		out, err := c.Health(ctx)
		mustContain(t, "Health", err, "exited with status 1")
		if !strings.HasPrefix(out, "…") || len(out) != len("…")+64 || !strings.HasSuffix(out, "99999\n100000\nlast words\n") {
			t.Errorf("output tail = %q (%d bytes), want the last 64 bytes, marked cut", out, len(out))
		}
		if v, err := c.Version(ctx); err != nil || v.Version != "v7" {
			t.Errorf("Version with long output = %q, %v", v.Version, err)
		}
	})

	// sshd kills a command on the runner's signal request, except in root's
	// sessions: without privilege separation after login (as for root) it
	// refuses signals ("session signalling requires privilege separation")
	// and keeps the channel until the command ends. The runner then drops
	// the connection a second after the timeout, and the command runs on.
	asRoot := s.User == "root"
	for _, tt := range []struct {
		name   string
		cancel bool // cancel the context instead of the command timeout
	}{{"command timeout", false}, {"cancelled", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Long enough for sshd to start the command on a loaded machine.
			const after = 2 * time.Second
			cfg := sshdConfig(t, s)
			cfg.CommandTimeout = after
			if tt.cancel {
				cfg.CommandTimeout = time.Minute
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			cfg.Recipe.Health = "echo $$ > " + pidFile + "; exec sleep 30"
			c := connect(t, newRunner(t, cfg, nil), host)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			start := time.Now()
			if tt.cancel {
				// Cancelled once the command runs, and not before after.
				go func() {
					pidOf(pidFile, time.Minute)
					time.AfterFunc(after-time.Since(start), cancel)
				}()
			}
			_, err := c.Health(ctx)
			bound := after + slack
			if asRoot {
				bound += time.Second // the runner's grace before it drops the connection
			}
			within(t, "Health running sleep 30", time.Since(start), after, bound)
			pid := readPid(t, pidFile)
			if tt.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("Health = %v, want context.Canceled", err)
			}
			if !tt.cancel {
				mustContain(t, "Health", err, "timed out after "+after.String())
			}
			if asRoot {
				// The sleep outlives the connection: end it, it is ours.
				t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
				if !errors.Is(err, rollout.ErrConnLost) {
					t.Fatalf("Health = %v: sshd kept the channel open, so the runner should have dropped the connection", err)
				}
				// It still holds the host: the next command waits for it,
				// and is refused when it does not end in time.
				c = connect(t, newRunner(t, cfg, nil), host)
				vctx, vcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
				_, err := c.Version(vctx)
				vcancel()
				if err == nil || syscall.Kill(pid, 0) != nil {
					t.Fatalf("Version = %v beside the timed-out command; want it held back while that command runs", err)
				}
				syscall.Kill(pid, syscall.SIGKILL)
				waitGone(t, pid)
				c = connect(t, newRunner(t, cfg, nil), host)
			} else {
				if errors.Is(err, rollout.ErrConnLost) {
					t.Errorf("sshd ended the killed command; the connection should be kept: %v", err)
				}
				waitGone(t, pid)
			}
			if v, err := c.Version(context.Background()); err != nil || v.Version != "v1" {
				t.Fatalf("Version after the timeout = %q, %v", v.Version, err)
			}
		})
	}

	t.Run("not authorized", func(t *testing.T) {
		t.Parallel()
		cfg := sshdConfig(t, s)
		cfg.KeyFile = writeNewKey(t)
		_, err := newRunner(t, cfg, nil).Connect(ctx, host, testFence)
		mustContain(t, "Connect", err, "unable to authenticate")
	})
	t.Cleanup(func() { t.Logf("TestSSHD took %v", time.Since(start)) })
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	pid, err := pidOf(path, 10*time.Second)
	if err != nil {
		t.Fatalf("the command did not start: %v", err)
	}
	return pid
}

// pidOf polls, at most for wait, until the file at path holds a process id.
func pidOf(path string, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	for tick := time.NewTicker(5 * time.Millisecond); ; <-tick.C {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 1 {
			tick.Stop()
			return pid, nil
		}
		if time.Now().After(deadline) {
			tick.Stop()
			return 0, fmt.Errorf("%s holds %q (%v)", path, b, err)
		}
	}
}

// waitGone polls, for a bounded time, until process pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(slack)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the timed out command (pid %d) still runs", pid)
		}
		<-tick.C
	}
}

// A server whose host key is certified by a CA, with known_hosts listing only
// the CA (@cert-authority): the runner asks for and verifies the certificate.
func TestSSHDHostCertificate(t *testing.T) {
	var caPub ssh.PublicKey
	s := sshdtest.Start(t, sshdtest.Options{Extra: func(dir string) []string {
		ca := sshdtest.Keygen(t, dir, "host_ca", "-t", "ed25519")
		caPub = sshdtest.ReadPublicKey(t, ca+".pub")
		if out, err := exec.Command("ssh-keygen", "-q", "-s", ca, "-I", "rolloutbot-test", "-h", "-n", "127.0.0.1",
			filepath.Join(dir, "host_ed25519.pub")).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
		}
		return []string{"HostCertificate " + filepath.Join(dir, "host_ed25519-cert.pub")}
	}})
	host := s.Hosts[0].Host
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(s.Dir, "version"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	caLine := "@cert-authority [127.0.0.1]:" + strconv.Itoa(host.Port) + " " + authorizedKey(caPub)
	for name, lines := range map[string][]string{
		"the CA only": {caLine},
		// A plain entry for its RSA key too: the certificate is still asked for first.
		"the CA and a plain entry": {caLine, knownhosts.Line([]string{host.Addr()}, s.HostKeys["rsa"])},
	} {
		cfg := sshdConfig(t, s)
		cfg.KnownHostsFile = writeKnownHosts(t, lines...)
		c := connect(t, newRunner(t, cfg, nil), host)
		if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
			t.Fatalf("%s: Version = %q, %v", name, v.Version, err)
		}
	}
	// Another CA's line does not vouch for it.
	other := sshdtest.Keygen(t, t.TempDir(), "other_ca", "-t", "ed25519")
	cfg := sshdConfig(t, s)
	cfg.KnownHostsFile = writeKnownHosts(t, "@cert-authority [127.0.0.1]:"+strconv.Itoa(host.Port)+" "+authorizedKey(sshdtest.ReadPublicKey(t, other+".pub")))
	_, err := newRunner(t, cfg, nil).Connect(ctx, host, testFence)
	mustContain(t, "Connect to a host certified by another CA", err, "check host key of "+host.Addr(), "no authorities")

	// Trust on first use pins the host's own key, not its certificate,
	// which is reissued (often daily) and would then read as a changed key.
	db := openStore(t)
	cfg = sshdConfig(t, s)
	cfg.KnownHostsFile = ""
	cfg.TrustOnFirstUse = true
	connect(t, newRunner(t, cfg, db), host).Close()
	pinned, err := db.PinnedHostKey(ctx, host.Addr())
	if err != nil || strings.Contains(pinned, "cert") {
		t.Fatalf("pinned %q, %v; want a plain host key", pinned, err)
	}
}
