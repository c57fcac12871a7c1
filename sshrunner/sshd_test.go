package sshrunner_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
)

// sshdPath is started by absolute path: sshd re-executes itself and refuses
// a relative one.
const sshdPath = "/usr/sbin/sshd"

const installHint = "the SSH runner is tested against a real OpenSSH server: apt-get install -y openssh-server"

// sshd is a real OpenSSH server on a loopback port, with its own host keys,
// authorized keys and configuration in a temporary directory.
type sshd struct {
	dir  string
	host rollout.Host
	// noSessions is the same server on a second port, where MaxSessions is
	// 0: logins work, sessions are refused.
	noSessions rollout.Host
	user       string
	hostKeys   map[string]ssh.PublicKey // by ssh-keygen type: ed25519, rsa, ecdsa
	// clientKeys are private key files whose public keys are authorized,
	// by ssh-keygen type.
	clientKeys map[string]string
	log        string // sshd's own log, shown when a test fails
}

// keygen runs ssh-keygen to make a key at dir/name and returns its path.
func keygen(dir, name string, args ...string) (string, error) {
	path := filepath.Join(dir, name)
	out, err := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-C", name, "-f", path}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path, nil
}

func readPublicKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

// startSSHD starts sshd and returns once it accepts connections. It fails
// the test, never skips it, when OpenSSH is not installed.
// startSSHD starts a server; extra lines go at the end of its sshd_config,
// and extra may use {dir} for the server's directory.
func startSSHD(t *testing.T, setup func(dir string) (extra []string)) *sshd {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s: %v; %s", sshdPath, err, installHint)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatalf("ssh-keygen: %v; %s", err, installHint)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// Privilege separation chroots into this directory; it must exist.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("privilege separation directory: %v", err)
		}
	}
	dir := t.TempDir()
	s := &sshd{dir: dir, user: u.Username, hostKeys: map[string]ssh.PublicKey{}, clientKeys: map[string]string{}, log: filepath.Join(dir, "sshd.log")}

	// Host keys of three types, so the server offers several; RSA is the
	// slow one, so the keys are made in parallel.
	keyArgs := map[string][]string{
		"ed25519": {"-t", "ed25519"},
		"rsa":     {"-t", "rsa", "-b", "2048"},
		"ecdsa":   {"-t", "ecdsa", "-b", "256"},
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var hostKeyLines, authorized []string
	for typ, args := range keyArgs {
		wg.Go(func() {
			hk, err := keygen(dir, "host_"+typ, args...)
			if err != nil {
				t.Error(err)
				return
			}
			// Client keys in each type too; the RSA one in PEM, the format
			// older tools write.
			if typ == "rsa" {
				args = append(args, "-m", "PEM")
			}
			ck, err := keygen(dir, "client_"+typ, args...)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			s.clientKeys[typ] = ck
			hostKeyLines = append(hostKeyLines, "HostKey "+hk)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for typ, ck := range s.clientKeys {
		s.hostKeys[typ] = readPublicKey(t, filepath.Join(dir, "host_"+typ+".pub"))
		authorized = append(authorized, authorizedKey(readPublicKey(t, ck+".pub")))
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(strings.Join(authorized, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var extra []string
	if setup != nil {
		extra = setup(dir)
	}

	// A free port can be taken between the check and sshd's bind: try again.
	for attempt := 1; ; attempt++ {
		port, port2 := freePort(t), freePort(t)
		conf := filepath.Join(dir, "sshd_config")
		lines := slices.Concat(hostKeyLines, []string{
			"ListenAddress 127.0.0.1:" + strconv.Itoa(port),
			"ListenAddress 127.0.0.1:" + strconv.Itoa(port2),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"PermitRootLogin prohibit-password",
			"AllowUsers " + s.user,
			"UseDNS no",
			"X11Forwarding no",
			"PrintMotd no",
			"LogLevel VERBOSE",
		}, extra, []string{
			"Match LocalPort " + strconv.Itoa(port2), // last: a Match block runs to the end
			"MaxSessions 0",
		})
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		// The log is a file, not a pipe: sshd's children inherit it, and a
		// pipe would make Wait wait for them too.
		cmd := exec.Command(sshdPath, "-D", "-e", "-f", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start %s: %v", sshdPath, err)
		}
		logf.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		err = waitForPort(port, exited, 5*time.Second)
		if err == nil {
			err = waitForPort(port2, exited, 5*time.Second)
		}
		if err == nil {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					s.dumpLog(t)
				}
			})
			s.host = rollout.Host{ID: "sshd", Address: "127.0.0.1", Port: port}
			s.noSessions = rollout.Host{ID: "sshd-no-sessions", Address: "127.0.0.1", Port: port2}
			return s
		}
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if attempt == 3 || !strings.Contains(s.readLog(), "Address already in use") {
			s.dumpLog(t)
			t.Fatalf("sshd did not come up: %v", err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitForPort polls until port accepts, sshd exits, or timeout passes.
func waitForPort(port int, exited <-chan error, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited: %v", err)
		case <-deadline.C:
			return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
		case <-tick.C:
		}
	}
}

func (s *sshd) readLog() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

func (s *sshd) dumpLog(t *testing.T) {
	t.Helper()
	t.Logf("sshd log:\n%s", s.readLog())
}

// knownHosts writes a known_hosts file listing keys for the server.
func (s *sshd) knownHosts(t *testing.T, keys ...ssh.PublicKey) string {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, knownhosts.Line([]string{s.host.Addr(), s.noSessions.Addr()}, k))
	}
	return writeKnownHosts(t, lines...)
}

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

func (s *sshd) config(t *testing.T) sshrunner.Config {
	return sshrunner.Config{
		User:           s.user,
		KeyFile:        s.clientKeys["ed25519"],
		KnownHostsFile: s.knownHosts(t, s.hostKeys["ed25519"]),
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second,
		Recipe:         shellRecipe(s.dir),
	}
}

func TestSSHD(t *testing.T) {
	start := time.Now()
	s := startSSHD(t, nil)
	t.Logf("sshd up in %v on %s", time.Since(start), s.host.Addr())
	ctx := context.Background()
	versionFile := filepath.Join(s.dir, "version")
	healthy := filepath.Join(s.dir, "healthy")
	if err := os.WriteFile(versionFile, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("session refused", func(t *testing.T) {
		// The server is up and the login works, but it opens no session:
		// that is the host's refusal, not a lost connection.
		c := connect(t, newRunner(t, s.config(t), nil), s.noSessions)
		_, err := c.Version(ctx)
		mustContain(t, "Version", err, s.noSessions.Addr()+" refused to open a session")
		if errors.Is(err, rollout.ErrConnLost) {
			t.Errorf("a refused session is not a lost connection: %v", err)
		}
	})

	t.Run("recipe", func(t *testing.T) {
		c := connect(t, newRunner(t, s.config(t), nil), s.host)
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
		if _, err := c.Update(ctx, "v1; touch "+filepath.Join(s.dir, "pwned")); !errors.Is(err, rollout.ErrInvalidVersion) {
			t.Fatalf("Update with a command in the version = %v", err)
		}
		if _, err := os.Stat(filepath.Join(s.dir, "pwned")); err == nil {
			t.Fatal("the version ran as a command")
		}
	})

	// The server offers ed25519, RSA and ECDSA host keys; the runner must
	// ask for the kind known_hosts lists, whichever it is.
	for _, typ := range []string{"ed25519", "rsa", "ecdsa"} {
		t.Run("host key "+typ+" only", func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t)
			cfg.KnownHostsFile = s.knownHosts(t, s.hostKeys[typ])
			c := connect(t, newRunner(t, cfg, nil), s.host)
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
				path := s.knownHosts(t, s.hostKeys[typ])
				if out, err := exec.Command("ssh-keygen", "-q", "-H", "-f", path).CombinedOutput(); err != nil {
					t.Fatalf("ssh-keygen -H: %v\n%s", err, out)
				}
				if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "|1|") {
					t.Fatalf("known_hosts not hashed: %q", b)
				}
				cfg := s.config(t)
				cfg.KnownHostsFile = path
				c := connect(t, newRunner(t, cfg, nil), s.host)
				if _, err := c.Version(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("wildcard known_hosts", func(t *testing.T) {
		t.Parallel()
		cfg := s.config(t)
		cfg.KnownHostsFile = writeKnownHosts(t, "[127.0.0.*]:"+strconv.Itoa(s.host.Port)+" "+authorizedKey(s.hostKeys["ed25519"]))
		connect(t, newRunner(t, cfg, nil), s.host)
	})

	// A @revoked line sends every host through knownhosts, which must still
	// ask the server for the kind of key listed.
	t.Run("known_hosts with a revoked key", func(t *testing.T) {
		t.Parallel()
		path, err := keygen(t.TempDir(), "revoked", "-t", "ecdsa")
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.config(t)
		cfg.KnownHostsFile = writeKnownHosts(t,
			"@revoked * "+authorizedKey(readPublicKey(t, path+".pub")),
			knownhosts.Line([]string{s.host.Addr()}, s.hostKeys["ed25519"]))
		connect(t, newRunner(t, cfg, nil), s.host)
		// Revoking the key the server presents refuses it.
		cfg.KnownHostsFile = writeKnownHosts(t,
			"@revoked * "+authorizedKey(s.hostKeys["ed25519"]),
			knownhosts.Line([]string{s.host.Addr()}, s.hostKeys["ed25519"]))
		_, err = newRunner(t, cfg, nil).Connect(ctx, s.host, testFence)
		mustContain(t, "Connect", err, "revoked")
	})

	// A @cert-authority line (for other hosts) beside a plain entry: the
	// runner must still ask this server for the kind of key listed, and
	// also accept a certificate, which such files are for.
	t.Run("known_hosts with a cert authority", func(t *testing.T) {
		t.Parallel()
		ca, err := keygen(t.TempDir(), "ca", "-t", "ed25519")
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []string{"ed25519", "rsa"} {
			cfg := s.config(t)
			cfg.KnownHostsFile = writeKnownHosts(t,
				"@cert-authority *.example.com "+authorizedKey(readPublicKey(t, ca+".pub")),
				knownhosts.Line([]string{s.host.Addr()}, s.hostKeys[typ]))
			c := connect(t, newRunner(t, cfg, nil), s.host)
			if _, err := c.Version(ctx); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
		}
		// Only the CA vouches for this server, which has no certificate.
		cfg := s.config(t)
		cfg.KnownHostsFile = writeKnownHosts(t, "@cert-authority [127.0.0.1]:"+strconv.Itoa(s.host.Port)+" "+authorizedKey(readPublicKey(t, ca+".pub")))
		_, err = newRunner(t, cfg, nil).Connect(ctx, s.host, testFence)
		mustContain(t, "Connect", err, "presented a plain", "only through a certificate authority")
	})

	t.Run("changed host key", func(t *testing.T) {
		t.Parallel()
		cfg := s.config(t)
		path, err := keygen(t.TempDir(), "other", "-t", "ed25519")
		if err != nil {
			t.Fatal(err)
		}
		other := readPublicKey(t, path+".pub")
		cfg.KnownHostsFile = s.knownHosts(t, other)
		_, err = newRunner(t, cfg, nil).Connect(ctx, s.host, testFence)
		mustContain(t, "Connect", err, "host key of "+s.host.Addr()+" changed", ssh.FingerprintSHA256(other), ssh.FingerprintSHA256(s.hostKeys["ed25519"]))
	})

	t.Run("trust on first use", func(t *testing.T) {
		t.Parallel()
		db := openStore(t)
		cfg := s.config(t)
		cfg.KnownHostsFile = ""
		cfg.TrustOnFirstUse = true
		r := newRunner(t, cfg, db)
		connect(t, r, s.host).Close()
		pinned, err := db.PinnedHostKey(ctx, s.host.Addr())
		if err != nil || pinned == "" {
			t.Fatalf("pinned %q, %v", pinned, err)
		}
		// Later connections ask for the pinned kind of key and get it.
		connect(t, r, s.host).Close()
	})

	for _, typ := range []string{"rsa", "ecdsa"} {
		t.Run("client key "+typ, func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t)
			cfg.KeyFile = s.clientKeys[typ]
			c := connect(t, newRunner(t, cfg, nil), s.host)
			if _, err := c.Version(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("stderr and exit status reach the report", func(t *testing.T) {
		t.Parallel()
		cfg := s.config(t)
		cfg.Recipe.Health = "echo checking; echo 'disk full on /var' >&2; exit 3"
		c := connect(t, newRunner(t, cfg, nil), s.host)
		out, err := c.Health(ctx)
		mustContain(t, "Health", err, "exited with status 3")
		if !strings.Contains(out, "disk full on /var") || !strings.Contains(out, "checking") {
			t.Errorf("output tail %q lacks the command's output", out)
		}
	})

	t.Run("long output keeps its tail", func(t *testing.T) {
		t.Parallel()
		cfg := s.config(t)
		cfg.OutputTail = 64
		cfg.Recipe.Health = "seq 1 100000; echo last words; exit 1"
		cfg.Recipe.Version = "echo v7; seq 1 100000"
		c := connect(t, newRunner(t, cfg, nil), s.host)
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
	asRoot := s.user == "root"
	for _, tt := range []struct {
		name   string
		cancel bool // cancel the context instead of the command timeout
	}{{"command timeout", false}, {"cancelled", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const after = 500 * time.Millisecond
			cfg := s.config(t)
			cfg.CommandTimeout = after
			if tt.cancel {
				cfg.CommandTimeout = time.Minute
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			cfg.Recipe.Health = "echo $$ > " + pidFile + "; exec sleep 30"
			c := connect(t, newRunner(t, cfg, nil), s.host)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tt.cancel {
				time.AfterFunc(after, cancel)
			}
			start := time.Now()
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
				mustContain(t, "Health", err, "timed out after 500ms")
			}
			if asRoot {
				// The sleep outlives the connection: end it, it is ours.
				t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
				if !errors.Is(err, rollout.ErrConnLost) {
					t.Fatalf("Health = %v: sshd kept the channel open, so the runner should have dropped the connection", err)
				}
				c = connect(t, newRunner(t, cfg, nil), s.host)
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
		cfg := s.config(t)
		cfg.KeyFile = writeNewKey(t)
		_, err := newRunner(t, cfg, nil).Connect(ctx, s.host, testFence)
		mustContain(t, "Connect", err, "unable to authenticate")
	})
	t.Cleanup(func() { t.Logf("TestSSHD took %v", time.Since(start)) })
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the command did not start: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
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
	s := startSSHD(t, func(dir string) []string {
		ca, err := keygen(dir, "host_ca", "-t", "ed25519")
		if err != nil {
			t.Fatal(err)
		}
		caPub = readPublicKey(t, ca+".pub")
		if out, err := exec.Command("ssh-keygen", "-q", "-s", ca, "-I", "rolloutbot-test", "-h", "-n", "127.0.0.1",
			filepath.Join(dir, "host_ed25519.pub")).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
		}
		return []string{"HostCertificate " + filepath.Join(dir, "host_ed25519-cert.pub")}
	})
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(s.dir, "version"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	caLine := "@cert-authority [127.0.0.1]:" + strconv.Itoa(s.host.Port) + " " + authorizedKey(caPub)
	for name, lines := range map[string][]string{
		"the CA only": {caLine},
		// A plain entry for its RSA key too: the certificate is still asked for first.
		"the CA and a plain entry": {caLine, knownhosts.Line([]string{s.host.Addr()}, s.hostKeys["rsa"])},
	} {
		cfg := s.config(t)
		cfg.KnownHostsFile = writeKnownHosts(t, lines...)
		c := connect(t, newRunner(t, cfg, nil), s.host)
		if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
			t.Fatalf("%s: Version = %q, %v", name, v.Version, err)
		}
	}
	// Another CA's line does not vouch for it.
	other, err := keygen(t.TempDir(), "other_ca", "-t", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.config(t)
	cfg.KnownHostsFile = writeKnownHosts(t, "@cert-authority [127.0.0.1]:"+strconv.Itoa(s.host.Port)+" "+authorizedKey(readPublicKey(t, other+".pub")))
	_, err = newRunner(t, cfg, nil).Connect(ctx, s.host, testFence)
	mustContain(t, "Connect to a host certified by another CA", err, "check host key of "+s.host.Addr(), "no authorities")

	// Trust on first use pins the host's own key, not its certificate,
	// which is reissued (often daily) and would then read as a changed key.
	db := openStore(t)
	cfg = s.config(t)
	cfg.KnownHostsFile = ""
	cfg.TrustOnFirstUse = true
	connect(t, newRunner(t, cfg, db), s.host).Close()
	pinned, err := db.PinnedHostKey(ctx, s.host.Addr())
	if err != nil || strings.Contains(pinned, "cert") {
		t.Fatalf("pinned %q, %v; want a plain host key", pinned, err)
	}
}
