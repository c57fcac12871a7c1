package sshrunner_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
)

// simRecipe is the recipe fleetsim answers.
var simRecipe = sshrunner.Recipe{
	Version:  "fleetctl version",
	Update:   "fleetctl update {version}",
	Health:   "fleetctl health",
	Rollback: "fleetctl rollback {version}",
}

// slack is what a step may take past the timeout under test: scheduling
// under the race detector on a busy, shared CI machine. The timeouts a test
// leaves alone are a minute (and the sshd test's command sleeps 30 s), so a
// step that waited for one of those still fails.
const slack = 15 * time.Second

// sim is a fleet with its known_hosts and client key written to disk.
type sim struct {
	*fleetsim.Fleet
	knownHosts string // dir/known_hosts
	clientKey  string // dir/client_ed25519
}

func startSim(t *testing.T, opts fleetsim.Options) *sim {
	t.Helper()
	f, err := fleetsim.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("fleetsim.Start: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	dir := t.TempDir()
	if err := f.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	return &sim{Fleet: f, knownHosts: filepath.Join(dir, "known_hosts"), clientKey: filepath.Join(dir, "client_ed25519")}
}

// oneHost starts a fleet of one host with behaviour b.
func oneHost(t *testing.T, b fleetsim.Behavior) *sim {
	t.Helper()
	return startSim(t, fleetsim.Options{Hosts: 1, Behaviors: map[int]fleetsim.Behavior{0: b}, SlowDelay: 100 * time.Millisecond})
}

// config verifies with the fleet's known_hosts and logs in with its client key.
func (s *sim) config() sshrunner.Config {
	return sshrunner.Config{
		User:           "fleet",
		KeyFile:        s.clientKey,
		KnownHostsFile: s.knownHosts,
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second,
		Recipe:         simRecipe,
	}
}

func (s *sim) host(i int) rollout.Host {
	h := s.Hosts()[i]
	return rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port}
}

func (s *sim) addr(i int) string { return s.host(i).Addr() }

// writeKnownHosts writes lines to a new known_hosts file.
func writeKnownHosts(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newRunner(t *testing.T, cfg sshrunner.Config, pins sshrunner.KeyStore) *sshrunner.Runner {
	t.Helper()
	r, err := sshrunner.New(cfg, pins, nil)
	if err != nil {
		t.Fatalf("sshrunner.New: %v", err)
	}
	return r
}

// testFence is the fence the tests' commands run under.
var testFence = rollout.Fence{Rollout: 1, Epoch: 1}

func connect(t *testing.T, r *sshrunner.Runner, h rollout.Host) rollout.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.Connect(ctx, h, testFence)
	if err != nil {
		t.Fatalf("Connect %s: %v", h.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "rolloutbot.db"), nil)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// authorizedKey is key in the form the store pins it.
func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func mustContain(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one containing %q", what, subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

// within fails the test unless d is at least lo and under hi.
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d >= hi {
		t.Fatalf("%s took %v, want [%v, %v)", what, d, lo, hi)
	}
}

func TestHappyPath(t *testing.T) {
	s := startSim(t, fleetsim.Options{Hosts: 1})
	r := newRunner(t, s.config(), nil)
	c := connect(t, r, s.host(0))
	ctx := context.Background()

	if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
		t.Fatalf("Version = %q, %v; want v1", v.Version, err)
	}
	out, err := c.Update(ctx, "v2")
	if err != nil {
		t.Fatalf("Update: %v (output %q)", err, out)
	}
	if !strings.Contains(out, "switched sim-0001 to v2") {
		t.Errorf("Update output = %q, want the host's stdout", out)
	}
	if out, err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v (output %q)", err, out)
	}
	if got := s.Stats(0); got != (fleetsim.Stats{Connections: 1, Sessions: 3, Versions: 1, Updates: 1, HealthChecks: 1, MaxRunning: 1}) {
		t.Errorf("Stats after version+update+health = %+v, want one connection and three sessions", got)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != "v2" {
		t.Fatalf("Version after update = %q, %v; want v2", v.Version, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := s.Stats(0); got.Connections != 1 || got.Sessions != 4 {
		t.Errorf("Stats = %+v, want 1 connection, 4 sessions", got)
	}
	if v := s.Version(0); v != "v2" {
		t.Errorf("host runs %q, want v2", v)
	}
}

func TestBehaviors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		b      fleetsim.Behavior
		config func(*sshrunner.Config)
		check  func(t *testing.T, s *sim, r *sshrunner.Runner)
	}{
		{b: fleetsim.UpdateFails, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			c := connect(t, r, s.host(0))
			out, err := c.Update(ctx, "v2")
			mustContain(t, "Update", err, "exited with status 1")
			if errors.Is(err, rollout.ErrConnLost) {
				t.Errorf("a failed command is not a lost connection: %v", err)
			}
			if !strings.Contains(out, "E: update to v2 failed on sim-0001") {
				t.Errorf("output tail %q lacks the host's stderr", out)
			}
			if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
				t.Errorf("Version after failed update = %q, %v", v.Version, err)
			}
		}},
		{b: fleetsim.HealthFails, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			c := connect(t, r, s.host(0))
			if _, err := c.Update(ctx, "v2"); err != nil {
				t.Fatalf("Update: %v", err)
			}
			out, err := c.Health(ctx)
			mustContain(t, "Health", err, "exited with status 1")
			if !strings.Contains(out, "unhealthy: sim-0001 runs v2") {
				t.Errorf("output tail %q lacks the host's stderr", out)
			}
			if _, err := c.Rollback(ctx, "v1"); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			if _, err := c.Health(ctx); err != nil {
				t.Errorf("Health after rollback: %v", err)
			}
		}},
		{b: fleetsim.RollbackFails, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			c := connect(t, r, s.host(0))
			if _, err := c.Update(ctx, "v2"); err != nil {
				t.Fatalf("Update: %v", err)
			}
			if _, err := c.Health(ctx); err == nil {
				t.Fatal("Health passed on a health-failing host")
			}
			out, err := c.Rollback(ctx, "v1")
			mustContain(t, "Rollback", err, "exited with status 1")
			if !strings.Contains(out, "E: rollback to v1 failed on sim-0001") {
				t.Errorf("output tail %q lacks the host's stderr", out)
			}
		}},
		// The command timeout is also the rollback's, which first waits for
		// the host's lock: long enough for a loaded machine.
		{b: fleetsim.Hang, config: func(c *sshrunner.Config) { c.CommandTimeout = 2 * time.Second },
			check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
				c := connect(t, r, s.host(0))
				start := time.Now()
				_, err := c.Update(ctx, "v2")
				within(t, "Update on a hanging host", time.Since(start), 2*time.Second, 2*time.Second+slack)
				mustContain(t, "Update", err, "timed out after 2s")
				if errors.Is(err, rollout.ErrConnLost) {
					t.Errorf("a timed out command on a live connection is not a lost connection: %v", err)
				}
				// When the caller's own deadline ends first, that is what
				// the error says, not the command timeout.
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				if _, err := c.Update(short, "v2"); !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timed out after") {
					t.Errorf("Update past the caller's deadline = %v, want context.DeadlineExceeded", err)
				}
				// The connection survives: the rollback runs on it.
				if _, err := c.Rollback(ctx, "v1"); err != nil {
					t.Fatalf("Rollback after the timeout: %v", err)
				}
				if got := s.Stats(0); got.Connections != 1 || got.Rollbacks != 1 {
					t.Errorf("Stats = %+v, want the rollback on the same connection", got)
				}
			}},
		{b: fleetsim.HangConnect, config: func(c *sshrunner.Config) { c.ConnectTimeout = 300 * time.Millisecond },
			check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
				start := time.Now()
				_, err := r.Connect(ctx, s.host(0), testFence)
				within(t, "Connect to a host that never speaks SSH", time.Since(start), 300*time.Millisecond, 300*time.Millisecond+slack)
				mustContain(t, "Connect", err, "ssh handshake with "+s.addr(0), "no answer within 300ms")
			}},
		{b: fleetsim.Drop, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			c := connect(t, r, s.host(0))
			_, err := c.Update(ctx, "v2")
			if !errors.Is(err, rollout.ErrConnLost) {
				t.Fatalf("Update on a dropping host = %v, want rollout.ErrConnLost", err)
			}
			mustContain(t, "Update", err, s.addr(0))
			// Every later step on the dead connection says so too, so the
			// engine knows to reconnect before it rolls back.
			if _, err := c.Rollback(ctx, "v1"); !errors.Is(err, rollout.ErrConnLost) {
				t.Fatalf("Rollback on the dropped connection = %v, want rollout.ErrConnLost", err)
			}
			c2 := connect(t, r, s.host(0))
			if _, err := c2.Rollback(ctx, "v1"); err != nil {
				t.Fatalf("Rollback after reconnecting: %v", err)
			}
		}},
		{b: fleetsim.Unreachable, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			_, err := r.Connect(ctx, s.host(0), testFence)
			mustContain(t, "Connect", err, "ssh dial "+s.addr(0), "connection refused")
		}},
		{b: fleetsim.ChangedKey, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			_, err := r.Connect(ctx, s.host(0), testFence)
			mustContain(t, "Connect", err, "host key of "+s.addr(0)+" changed", ssh.FingerprintSHA256(s.HostKey(0)), s.knownHosts)
			// The fingerprint of the key presented is named too.
			if fps := regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`).FindAllString(err.Error(), -1); len(fps) != 2 || fps[0] == fps[1] {
				t.Errorf("error %q should name the listed and the presented fingerprint", err)
			}
			if got := s.Stats(0); got.Sessions != 0 {
				t.Errorf("Stats = %+v: a session was opened on a host with a changed key", got)
			}
		}},
		{b: fleetsim.Slow, check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
			c := connect(t, r, s.host(0))
			start := time.Now()
			if _, err := c.Update(ctx, "v2"); err != nil {
				t.Fatalf("Update on a slow host within its timeout: %v", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond {
				t.Errorf("Update on a slow host took %v", d)
			}
		}},
		{b: fleetsim.Slow, config: func(c *sshrunner.Config) { c.CommandTimeout = 30 * time.Millisecond },
			check: func(t *testing.T, s *sim, r *sshrunner.Runner) {
				c := connect(t, r, s.host(0))
				_, err := c.Health(ctx)
				mustContain(t, "Health on a host slower than the timeout", err, "timed out after 30ms")
			}},
	}
	for _, tt := range tests {
		name := string(tt.b)
		if tt.config != nil {
			name += "/tight-timeout"
		}
		t.Run(name, func(t *testing.T) {
			s := oneHost(t, tt.b)
			cfg := s.config()
			if tt.config != nil {
				tt.config(&cfg)
			}
			tt.check(t, s, newRunner(t, cfg, nil))
		})
	}
}

// Every refusal of a host key leaves the host without a session.
func TestHostKeyPolicy(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: 3})
	addr0 := s.addr(0)
	key0 := s.HostKey(0)
	port0 := strconv.Itoa(s.Hosts()[0].Port)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherPriv.Public())
	hashed := knownhosts.HashHostname(knownhosts.Normalize(addr0))
	tests := []struct {
		name  string
		lines []string // known_hosts
		want  []string // substrings of the Connect error; none: it connects
	}{
		{"plain", []string{knownhosts.Line([]string{addr0}, key0)}, nil},
		{"other hosts listed", []string{knownhosts.Line([]string{s.addr(1)}, s.HostKey(1)), knownhosts.Line([]string{s.addr(2)}, s.HostKey(2))},
			[]string{"host " + addr0 + " is not in", "ssh-keyscan"}},
		{"empty file", []string{"# nobody yet"}, []string{"is not in"}},
		{"hashed", []string{knownhosts.Line([]string{hashed}, key0)}, nil},
		{"hashed next to plain entries", []string{knownhosts.Line([]string{s.addr(1)}, s.HostKey(1)), knownhosts.Line([]string{hashed}, key0)}, nil},
		{"hashed, changed", []string{knownhosts.Line([]string{hashed}, other)}, []string{"host key of " + addr0 + " changed", ssh.FingerprintSHA256(other), ssh.FingerprintSHA256(key0)}},
		{"hashed, other host", []string{knownhosts.Line([]string{knownhosts.HashHostname("[127.0.0.1]:1")}, key0)}, []string{"is not in"}},
		{"wildcard", []string{"[127.0.0.?]:" + port0 + " " + authorizedKey(key0)}, nil},
		{"wildcard star", []string{"[127.*]:" + port0 + " " + authorizedKey(key0)}, nil},
		{"wildcard, other port", []string{"[127.*]:1 " + authorizedKey(key0)}, []string{"is not in"}},
		{"wildcard, changed", []string{"[127.*]:" + port0 + " " + authorizedKey(other)}, []string{"changed", ssh.FingerprintSHA256(key0)}},
		{"negated", []string{"[127.*]:" + port0 + ",![127.0.0.1]:" + port0 + " " + authorizedKey(key0)}, []string{"is not in"}},
		{"several keys, one matches", []string{knownhosts.Line([]string{addr0}, other), knownhosts.Line([]string{addr0}, key0)}, nil},
		{"revoked", []string{knownhosts.Line([]string{addr0}, key0), "@revoked * " + authorizedKey(key0)}, []string{"revoked", ssh.FingerprintSHA256(key0)}},
		{"revoked other key", []string{knownhosts.Line([]string{addr0}, key0), "@revoked * " + authorizedKey(other)}, nil},
		{"cert authority line", []string{"@cert-authority *.example.com " + authorizedKey(other), knownhosts.Line([]string{addr0}, key0)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.config()
			cfg.KnownHostsFile = writeKnownHosts(t, tt.lines...)
			r := newRunner(t, cfg, nil)
			before := s.Stats(0)
			c, err := r.Connect(ctx, s.host(0), testFence)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				defer c.Close()
				if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
					t.Fatalf("Version = %q, %v", v.Version, err)
				}
				return
			}
			mustContain(t, "Connect", err, tt.want...)
			if got := s.Stats(0); got.Sessions != before.Sessions {
				t.Errorf("a session was opened on a refused host: %+v", got)
			}
		})
	}
}

// Host names match known_hosts in any case, as in OpenSSH: the inventory may
// say LocalHost where ssh-keyscan wrote localhost.
func TestHostKeyNameCase(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: 1})
	key := s.HostKey(0)
	name := "[localhost]:" + strconv.Itoa(s.Hosts()[0].Port)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherPriv.Public())
	for _, tt := range []struct {
		name, line, address string
		changed             bool
	}{
		{"plain", knownhosts.Line([]string{name}, key), "LocalHost", false},
		{"plain, changed", knownhosts.Line([]string{name}, other), "LocalHost", true},
		{"hashed", knownhosts.Line([]string{knownhosts.HashHostname(name)}, key), "LOCALHOST", false},
		{"wildcard", strings.Replace(name, "localhost", "local*", 1) + " " + authorizedKey(key), "LocalHost", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.config()
			cfg.KnownHostsFile = writeKnownHosts(t, tt.line)
			h := s.host(0)
			h.Address = tt.address
			c, err := newRunner(t, cfg, nil).Connect(ctx, h, testFence)
			if tt.changed {
				mustContain(t, "Connect", err, "host key of "+h.Addr()+" changed")
				return
			}
			if err != nil {
				t.Fatalf("Connect to %s: %v", h.Addr(), err)
			}
			c.Close()
		})
	}
}

func TestNewRefuses(t *testing.T) {
	s := oneHost(t, fleetsim.OK)
	tests := []struct {
		name   string
		config func(*sshrunner.Config)
		pins   sshrunner.KeyStore
		want   []string
	}{
		{"no known_hosts and no TOFU", func(c *sshrunner.Config) { c.KnownHostsFile = "" }, nil, []string{"ssh.known_hosts", "always verified"}},
		{"missing known_hosts", func(c *sshrunner.Config) { c.KnownHostsFile = filepath.Join(t.TempDir(), "nope") }, nil, []string{"ssh.known_hosts", "no such file"}},
		{"garbled known_hosts", func(c *sshrunner.Config) { c.KnownHostsFile = writeKnownHosts(t, "127.0.0.1 ssh-ed25519 !!!notbase64") }, nil, []string{"ssh.known_hosts"}},
		{"TOFU without a store", func(c *sshrunner.Config) { c.KnownHostsFile = ""; c.TrustOnFirstUse = true }, nil, []string{"ssh.trust_on_first_use"}},
		{"no user", func(c *sshrunner.Config) { c.User = "" }, nil, []string{"ssh.user"}},
		{"no key and no agent", func(c *sshrunner.Config) { c.KeyFile = "" }, nil, []string{"ssh.key_file"}},
		{"missing key file", func(c *sshrunner.Config) { c.KeyFile = filepath.Join(t.TempDir(), "id_nope") }, nil, []string{"ssh.key_file", "no such file"}},
		{"not a key", func(c *sshrunner.Config) { c.KeyFile = s.knownHosts }, nil, []string{"ssh.key_file", s.knownHosts}},
		{"agent without SSH_AUTH_SOCK", func(c *sshrunner.Config) { c.KeyFile = ""; c.UseAgent = true }, nil, []string{"ssh.agent", "SSH_AUTH_SOCK"}},
		{"recipe without {version}", func(c *sshrunner.Config) { c.Recipe.Update = "fleetctl update latest" }, nil, []string{"recipe.update", "{version}"}},
		{"recipe with {version} in health", func(c *sshrunner.Config) { c.Recipe.Health = "fleetctl health {version}" }, nil, []string{"recipe.health", "must not"}},
		{"empty rollback", func(c *sshrunner.Config) { c.Recipe.Rollback = " " }, nil, []string{"recipe.rollback", "empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", "")
			cfg := s.config()
			tt.config(&cfg)
			_, err := sshrunner.New(cfg, tt.pins, nil)
			mustContain(t, "New", err, tt.want...)
		})
	}
}

// writeEncryptedKey writes the fleet's client key encrypted with passphrase.
func writeEncryptedKey(t *testing.T, s *sim, path, passphrase string) {
	t.Helper()
	raw, err := ssh.ParseRawPrivateKey(s.ClientKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "encrypted test key", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: 2})
	db := openStore(t)
	cfg := s.config()
	cfg.KnownHostsFile = ""
	cfg.TrustOnFirstUse = true
	r := newRunner(t, cfg, db)
	addr := s.addr(0)

	// First use pins the key.
	c := connect(t, r, s.host(0))
	if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
		t.Fatalf("Version = %q, %v", v.Version, err)
	}
	c.Close()
	if k, err := db.PinnedHostKey(ctx, addr); err != nil || k != authorizedKey(s.HostKey(0)) {
		t.Fatalf("pinned key = %q, %v; want %q", k, err, authorizedKey(s.HostKey(0)))
	}
	// The same key again is fine.
	connect(t, r, s.host(0)).Close()

	// A changed key is refused, with the way out, before any session.
	s.SetBehavior(0, fleetsim.ChangedKey)
	before := s.Stats(0)
	_, err := r.Connect(ctx, s.host(0), testFence)
	mustContain(t, "Connect with a changed key", err, "host key of "+addr+" changed", ssh.FingerprintSHA256(s.HostKey(0)),
		"was pinned on first use", "rolloutbot hosts unpin "+addr)
	if got := s.Stats(0); got.Sessions != before.Sessions {
		t.Errorf("a session was opened on a host with a changed key: %+v", got)
	}
	if k, _ := db.PinnedHostKey(ctx, addr); k != authorizedKey(s.HostKey(0)) {
		t.Errorf("the pinned key was replaced by %q", k)
	}

	// After the operator unpins it, the new key is pinned.
	if err := db.UnpinHostKey(ctx, addr); err != nil {
		t.Fatal(err)
	}
	connect(t, r, s.host(0)).Close()
	if k, _ := db.PinnedHostKey(ctx, addr); k == "" || k == authorizedKey(s.HostKey(0)) {
		t.Errorf("after unpinning, pinned key = %q, want the new one", k)
	}
	// The other host was never touched.
	if k, _ := db.PinnedHostKey(ctx, s.addr(1)); k != "" {
		t.Errorf("host 1 pinned without a connection: %q", k)
	}
}

// With both a known_hosts file and TOFU, listed hosts are verified by the
// file and never pinned; unlisted ones are pinned.
func TestTrustOnFirstUseWithKnownHosts(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, fleetsim.Options{Hosts: 2})
	db := openStore(t)
	cfg := s.config()
	cfg.KnownHostsFile = writeKnownHosts(t, knownhosts.Line([]string{s.addr(0)}, s.HostKey(0)))
	cfg.TrustOnFirstUse = true
	r := newRunner(t, cfg, db)

	connect(t, r, s.host(0)).Close()
	connect(t, r, s.host(1)).Close()
	if k, _ := db.PinnedHostKey(ctx, s.addr(0)); k != "" {
		t.Errorf("a host listed in known_hosts was pinned: %q", k)
	}
	if k, _ := db.PinnedHostKey(ctx, s.addr(1)); k != authorizedKey(s.HostKey(1)) {
		t.Errorf("unlisted host pinned %q, want its key", k)
	}
	// known_hosts wins over TOFU: a listed host with a changed key is refused.
	s.SetBehavior(0, fleetsim.ChangedKey)
	_, err := r.Connect(ctx, s.host(0), testFence)
	mustContain(t, "Connect", err, "changed", cfg.KnownHostsFile)
	if k, _ := db.PinnedHostKey(ctx, s.addr(0)); k != "" {
		t.Errorf("a changed key of a listed host was pinned: %q", k)
	}
}

// Concurrent first connections to one host pin one key, and the runner is
// safe for concurrent use.
func TestConcurrentConnects(t *testing.T) {
	ctx := context.Background()
	const hosts, perHost = 8, 3
	s := startSim(t, fleetsim.Options{Hosts: hosts})
	db := openStore(t)
	cfg := s.config()
	cfg.KnownHostsFile = ""
	cfg.TrustOnFirstUse = true
	r := newRunner(t, cfg, db)
	var wg sync.WaitGroup
	errs := make(chan error, hosts*perHost)
	for i := range hosts {
		for range perHost {
			wg.Go(func() {
				c, err := r.Connect(ctx, s.host(i), testFence)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				if _, err := c.Update(ctx, "v2"); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range hosts {
		if k, _ := db.PinnedHostKey(ctx, s.addr(i)); k != authorizedKey(s.HostKey(i)) {
			t.Errorf("host %d pinned %q", i, k)
		}
		if st := s.Stats(i); st.Connections != perHost || st.Updates != perHost {
			t.Errorf("host %d stats %+v", i, st)
		}
	}
}

func TestVersionSafety(t *testing.T) {
	ctx := context.Background()
	s := oneHost(t, fleetsim.OK)
	r := newRunner(t, s.config(), nil)
	c := connect(t, r, s.host(0))
	for _, v := range []string{
		"v1; rm -rf /",
		"$(reboot)",
		"`id`",
		"v1'x",
		"v1 v2",
		"v1\nid",
		"v1&&id",
		"v1|id",
		"v1>x",
		"-rf",
		".hidden",
		"",
		strings.Repeat("v", 129),
	} {
		t.Run(strconv.Quote(v), func(t *testing.T) {
			if _, err := c.Update(ctx, v); !errors.Is(err, rollout.ErrInvalidVersion) {
				t.Errorf("Update(%q) = %v, want ErrInvalidVersion", v, err)
			}
			if _, err := c.Rollback(ctx, v); !errors.Is(err, rollout.ErrInvalidVersion) {
				t.Errorf("Rollback(%q) = %v, want ErrInvalidVersion", v, err)
			}
			if _, err := sshrunner.Command(simRecipe.Update, v); !errors.Is(err, rollout.ErrInvalidVersion) {
				t.Errorf("Command(%q) = %v, want ErrInvalidVersion", v, err)
			}
		})
	}
	if got := s.Stats(0); got.Sessions != 0 || got.Updates != 0 || got.Rollbacks != 0 {
		t.Errorf("refused versions reached the host: %+v", got)
	}
	if v := s.Version(0); v != "v1" {
		t.Errorf("host runs %q", v)
	}

	for _, tt := range []struct{ cmd, version, want string }{
		{"fleetctl update {version}", "v2.4.1", "fleetctl update 'v2.4.1'"},
		{"fleetctl update {version}", "v1.0+build-7", "fleetctl update 'v1.0+build-7'"},
		{"cd /srv && ./deploy {version} && echo {version} > VERSION", "2024.05.01_rc-1", "cd /srv && ./deploy '2024.05.01_rc-1' && echo '2024.05.01_rc-1' > VERSION"},
		{strings.Repeat("x", 3), strings.Repeat("v", 128), "xxx"},
	} {
		got, err := sshrunner.Command(tt.cmd, tt.version)
		if err != nil || got != tt.want {
			t.Errorf("Command(%q, %q) = %q, %v; want %q", tt.cmd, tt.version, got, err, tt.want)
		}
	}
	// A quoted version reaches the host as the version itself.
	if _, err := c.Update(ctx, "v1.0+build-7"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != "v1.0+build-7" {
		t.Errorf("Version = %q, %v", v.Version, err)
	}
}

// An encrypted key file: bcrypt makes every parse slow under the race
// detector, so one key serves every case and the cases run in parallel.
func TestKeyPassphrase(t *testing.T) {
	const passphrase = "correct horse battery staple"
	s := oneHost(t, fleetsim.OK)
	path := filepath.Join(t.TempDir(), "id_encrypted")
	writeEncryptedKey(t, s, path, passphrase)
	tests := []struct {
		name       string
		passphrase string
		want       []string // substrings of New's error; none: it connects
	}{
		{"right passphrase", passphrase, nil},
		{"no passphrase", "", []string{"ssh.key_file", path, "is encrypted", "SSH_KEY_PASSPHRASE"}},
		{"wrong passphrase", "hunter2-wrong", []string{"ssh.key_file", path, "password incorrect"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := s.config()
			cfg.KeyFile = path
			cfg.KeyPassphrase = tt.passphrase
			r, err := sshrunner.New(cfg, nil, nil)
			if tt.want != nil {
				mustContain(t, "New", err, tt.want...)
				if tt.passphrase != "" && strings.Contains(err.Error(), tt.passphrase) {
					t.Errorf("error %q shows the passphrase", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			c, err := r.Connect(context.Background(), s.host(0), testFence)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer c.Close()
			if v, err := c.Version(context.Background()); err != nil || v.Version != "v1" {
				t.Fatalf("Version = %q, %v", v.Version, err)
			}
		})
	}
}

func TestAuthRefused(t *testing.T) {
	s := oneHost(t, fleetsim.OK)
	tests := []struct {
		name   string
		config func(*sshrunner.Config)
		want   []string
	}{
		{"unknown key", func(c *sshrunner.Config) { c.KeyFile = writeNewKey(t) }, []string{"ssh handshake with " + s.addr(0) + " as fleet", "unable to authenticate"}},
		{"wrong user", func(c *sshrunner.Config) { c.User = "root" }, []string{"as root", "unable to authenticate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.config()
			tt.config(&cfg)
			_, err := newRunner(t, cfg, nil).Connect(context.Background(), s.host(0), testFence)
			mustContain(t, "Connect", err, tt.want...)
		})
	}
	if st := s.Stats(0); st.Sessions != 0 {
		t.Errorf("sessions on refused logins: %+v", st)
	}
}

// writeNewKey writes a fresh ed25519 key nobody authorized.
func writeNewKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent serves an in-memory agent holding keys at a socket in a new
// temporary directory and points SSH_AUTH_SOCK at it.
// startAgent serves an ssh-agent holding keys at sock and points
// SSH_AUTH_SOCK at it; stop ends it, as a restart of the agent would.
func startAgent(t *testing.T, sock string, keys ...[]byte) (stop func()) {
	t.Helper()
	keyring := agent.NewKeyring()
	for _, pemBytes := range keys {
		raw, err := ssh.ParseRawPrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() { agent.ServeAgent(keyring, nc) })
		}
	})
	stop = sync.OnceFunc(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	t.Cleanup(stop)
	t.Setenv("SSH_AUTH_SOCK", sock)
	return stop
}

func TestAgent(t *testing.T) {
	s := oneHost(t, fleetsim.OK)
	stranger, err := os.ReadFile(writeNewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		agentKeys [][]byte
		keyFile   string
		wantErr   string
	}{
		{"agent only", [][]byte{s.ClientKeyPEM()}, "", ""},
		{"agent with several keys", [][]byte{stranger, s.ClientKeyPEM()}, "", ""},
		{"key file rejected, agent key accepted", [][]byte{s.ClientKeyPEM()}, writeNewKey(t), ""},
		{"key file accepted, agent key rejected", [][]byte{stranger}, s.clientKey, ""},
		{"agent without the key", [][]byte{stranger}, "", "unable to authenticate"},
		{"empty agent", nil, "", "unable to authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			startAgent(t, filepath.Join(t.TempDir(), "agent.sock"), tt.agentKeys...)
			cfg := s.config()
			cfg.KeyFile = tt.keyFile
			cfg.UseAgent = true
			r := newRunner(t, cfg, nil)
			c, err := r.Connect(context.Background(), s.host(0), testFence)
			if tt.wantErr != "" {
				mustContain(t, "Connect", err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer c.Close()
			if v, err := c.Version(context.Background()); err != nil || v.Version != "v1" {
				t.Fatalf("Version = %q, %v", v.Version, err)
			}
		})
	}
}

// The agent is asked afresh for each connection: an agent that restarts
// (a new login session, a reloaded systemd unit) does not break later ones.
func TestAgentRestart(t *testing.T) {
	s := oneHost(t, fleetsim.OK)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	stop := startAgent(t, sock, s.ClientKeyPEM())
	cfg := s.config()
	cfg.KeyFile = ""
	cfg.UseAgent = true
	r := newRunner(t, cfg, nil)
	c := connect(t, r, s.host(0))
	c.Close()

	stop()
	_, err := r.Connect(context.Background(), s.host(0), testFence)
	mustContain(t, "Connect while the agent is away", err, "ssh-agent", sock)

	startAgent(t, sock, s.ClientKeyPEM())
	c = connect(t, r, s.host(0))
	if v, err := c.Version(context.Background()); err != nil || v.Version != "v1" {
		t.Fatalf("Version after the agent restarted = %q, %v", v.Version, err)
	}
	c.Close()
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name string
		b    fleetsim.Behavior
		step func(ctx context.Context, t *testing.T, s *sim, r *sshrunner.Runner) error
	}{
		{"hung update", fleetsim.Hang, func(ctx context.Context, t *testing.T, s *sim, r *sshrunner.Runner) error {
			_, err := connect(t, r, s.host(0)).Update(ctx, "v2")
			return err
		}},
		{"hung handshake", fleetsim.HangConnect, func(ctx context.Context, t *testing.T, s *sim, r *sshrunner.Runner) error {
			_, err := r.Connect(ctx, s.host(0), testFence)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := oneHost(t, tt.b)
			cfg := s.config()
			cfg.ConnectTimeout = time.Minute
			cfg.CommandTimeout = time.Minute
			r := newRunner(t, cfg, nil)
			ctx, cancel := context.WithCancel(context.Background())
			// Cancel once the host has the command (or the connection).
			polled := make(chan struct{})
			defer func() { cancel(); <-polled }()
			go func() {
				defer close(polled)
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for ctx.Err() == nil {
					if st := s.Stats(0); (tt.b == fleetsim.Hang && st.Updates > 0) || (tt.b == fleetsim.HangConnect && st.Connections > 0) {
						cancel()
						return
					}
					<-tick.C
				}
			}()
			start := time.Now()
			err := tt.step(ctx, t, s, r)
			within(t, tt.name+" after cancel", time.Since(start), 0, slack)
			if err == nil {
				t.Fatal("no error after cancel")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want context.Canceled", err)
			}
			if tt.b == fleetsim.Hang && errors.Is(err, rollout.ErrConnLost) {
				t.Errorf("the host ended the cancelled command; the connection should be kept: %v", err)
			}
		})
	}
}

// freezer is a TCP proxy that can stop forwarding without closing anything,
// like a host whose network went away after the handshake.
type freezer struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	freeze func()
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezer{ln: ln, target: target, frozen: make(chan struct{}), done: make(chan struct{})}
	p.freeze = sync.OnceFunc(func() { close(p.frozen) })
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezer) host() rollout.Host {
	a := p.ln.Addr().(*net.TCPAddr)
	return rollout.Host{ID: "frozen", Address: a.IP.String(), Port: a.Port}
}

func (p *freezer) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(out, in) })
		p.wg.Go(func() { p.pump(in, out) })
	}
}

func (p *freezer) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-p.frozen:
				<-p.done
				return
			default:
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// A host that goes silent mid-rollout holds no step past its timeout, and a
// cancelled context is honoured even then.
func TestFrozenHost(t *testing.T) {
	tests := []struct {
		name      string
		command   time.Duration
		keepAlive time.Duration
		cancel    bool
		bound     time.Duration // the step must return within bound + slack
		want      error
	}{
		// Long enough that the keepalives before the freeze are answered on a loaded machine.
		{"keepalive closes it", time.Minute, time.Second, false, 2 * time.Second, rollout.ErrConnLost},
		// The runner waits a second for the kill to be acknowledged, then drops the connection.
		{"command timeout", 300 * time.Millisecond, time.Minute, false, 1300 * time.Millisecond, rollout.ErrConnLost},
		{"cancelled", time.Minute, time.Minute, true, 1100 * time.Millisecond, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := oneHost(t, fleetsim.OK)
			p := startFreezer(t, s.addr(0))
			cfg := s.config()
			cfg.KnownHostsFile = writeKnownHosts(t, knownhosts.Line([]string{p.host().Addr()}, s.HostKey(0)))
			cfg.CommandTimeout = tt.command
			cfg.KeepAlive = tt.keepAlive
			var logs syncBuffer
			r, err := sshrunner.New(cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			c := connect(t, r, p.host())
			ctx := context.Background()
			if v, err := c.Version(ctx); err != nil || v.Version != "v1" {
				t.Fatalf("Version = %q, %v", v.Version, err)
			}
			p.freeze()
			if tt.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			start := time.Now()
			_, err = c.Update(ctx, "v2")
			within(t, "Update on a frozen host", time.Since(start), 0, tt.bound+slack)
			if !errors.Is(err, tt.want) || !errors.Is(err, rollout.ErrConnLost) {
				t.Fatalf("Update = %v, want %v and rollout.ErrConnLost", err, tt.want)
			}
			if tt.command < time.Minute {
				mustContain(t, "Update", err, "timed out after "+tt.command.String())
			}
			if tt.name == "keepalive closes it" && !strings.Contains(logs.String(), "keepalive unanswered") {
				t.Errorf("logs lack the keepalive warning:\n%s", logs.String())
			}
		})
	}
}

// Keepalives that the server answers with failure (as OpenSSH does for
// unknown requests, and fleetsim does) keep the connection.
func TestKeepAliveAnswered(t *testing.T) {
	// About six keepalives per update; each must be answered within the
	// interval, so not so short that a loaded machine misses one.
	s := startSim(t, fleetsim.Options{Hosts: 1, Behaviors: map[int]fleetsim.Behavior{0: fleetsim.Slow}, SlowDelay: 1500 * time.Millisecond})
	cfg := s.config()
	cfg.KeepAlive = 250 * time.Millisecond
	c := connect(t, newRunner(t, cfg, nil), s.host(0))
	for range 2 {
		if _, err := c.Update(context.Background(), "v2"); err != nil {
			t.Fatalf("Update with frequent keepalives: %v", err)
		}
	}
	if st := s.Stats(0); st.Connections != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
