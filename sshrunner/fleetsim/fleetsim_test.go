package fleetsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// startFleet starts a fleet that is closed when the test ends.
func startFleet(t testing.TB, opts Options) *Fleet {
	t.Helper()
	f, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// clientConfig is what a real client would use: known_hosts from a file and the fleet's key.
func clientConfig(t testing.TB, f *Fleet) *ssh.ClientConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, f.KnownHosts(), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(path)
	if err != nil {
		t.Fatalf("knownhosts.New: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(f.ClientKeyPEM())
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return &ssh.ClientConfig{User: "fleet", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 5 * time.Second}
}

func addr(f *Fleet, i int) string {
	h := f.Hosts()[i]
	return net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
}

// dial connects to host i with a deadline on the whole handshake, since
// ClientConfig.Timeout only bounds the TCP connect.
func dial(f *Fleet, i int, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	nc, err := net.DialTimeout("tcp", addr(f, i), timeout)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(timeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr(f, i), cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

func mustDial(t testing.TB, f *Fleet, i int, cfg *ssh.ClientConfig) *ssh.Client {
	t.Helper()
	c, err := dial(f, i, cfg, 5*time.Second)
	if err != nil {
		t.Fatalf("dial host %d: %v", i, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run execs cmd and returns its output and exit status (-1: no status, see err).
func run(t testing.TB, c *ssh.Client, cmd string) (stdout, stderr string, status int, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s.Close()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr = &o, &e
	err = s.Run(cmd)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		status = 0
	case errors.As(err, &exit):
		status, err = exit.ExitStatus(), nil
	default:
		status = -1
	}
	return o.String(), e.String(), status, err
}

type step struct {
	cmd            string
	status         int
	stdout, stderr string // substrings
}

func TestBehaviors(t *testing.T) {
	tests := []struct {
		b     Behavior
		steps []step
		final string
	}{
		{OK, []step{
			{cmd: "version", stdout: "v1\n"},
			{cmd: "fleetctl update v2", stdout: "v2"},
			{cmd: "/tmp/fleet/etc/fleetctl version", stdout: "v2\n"},
			{cmd: "health"},
			{cmd: "fleetctl rollback 'v1'"},
			{cmd: "update 'v2.4.1'"},
			{cmd: "frob v2", status: 127, stderr: "sh: 1: frob: not found\n"},
			{cmd: "fleetctl update", status: 2, stderr: "usage"},
		}, "v2.4.1"},
		{UpdateFails, []step{
			{cmd: "update v2", status: 1, stderr: "E: update to v2 failed on sim-0001\n"},
			{cmd: "version", stdout: "v1\n"},
			{cmd: "health"},
		}, "v1"},
		{HealthFails, []step{
			{cmd: "health"},
			{cmd: "update v2"},
			{cmd: "health", status: 1, stderr: "unhealthy"},
			{cmd: "rollback v1"},
			{cmd: "health"},
		}, "v1"},
		{RollbackFails, []step{
			{cmd: "update v2"},
			{cmd: "health", status: 1, stderr: "unhealthy"},
			{cmd: "rollback v1", status: 1, stderr: "E: rollback to v1 failed"},
			{cmd: "version", stdout: "v2\n"},
			{cmd: "health", status: 1},
		}, "v2"},
		{Slow, []step{{cmd: "update v2"}, {cmd: "health"}}, "v2"},
	}
	for _, tt := range tests {
		t.Run(string(tt.b), func(t *testing.T) {
			f := startFleet(t, Options{Hosts: 1, Behaviors: map[int]Behavior{0: tt.b}, SlowDelay: 30 * time.Millisecond})
			c := mustDial(t, f, 0, clientConfig(t, f))
			for _, s := range tt.steps {
				start := time.Now()
				stdout, stderr, status, err := run(t, c, s.cmd)
				if err != nil || status != s.status || !strings.Contains(stdout, s.stdout) || !strings.Contains(stderr, s.stderr) {
					t.Errorf("%q = (%q, %q, %d, %v), want (%q, %q, %d)", s.cmd, stdout, stderr, status, err, s.stdout, s.stderr, s.status)
				}
				if d := time.Since(start); tt.b == Slow && d < 30*time.Millisecond {
					t.Errorf("%q on a slow host took %v", s.cmd, d)
				}
			}
			if v := f.Version(0); v != tt.final {
				t.Errorf("Version = %q, want %q", v, tt.final)
			}
		})
	}
}

func TestHang(t *testing.T) {
	f := startFleet(t, Options{Hosts: 1, Behaviors: map[int]Behavior{0: Hang}})
	c := mustDial(t, f, 0, clientConfig(t, f))
	if out, _, status, err := run(t, c, "version"); out != "v1\n" || status != 0 || err != nil {
		t.Fatalf("version on a hanging host = %q, %d, %v", out, status, err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if err := s.Start("update v2"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	select {
	case err := <-done:
		t.Fatalf("update on a hanging host returned: %v", err)
	case <-ctx.Done():
	}
	c.Close() // the client gives up
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the client closed")
	}
	if out.Len()+errOut.Len() != 0 || f.Version(0) != "v1" {
		t.Errorf("hanging update printed %q %q, version %q", out.String(), errOut.String(), f.Version(0))
	}
}

func TestConnectFailures(t *testing.T) {
	f := startFleet(t, Options{Hosts: 3, Behaviors: map[int]Behavior{0: HangConnect, 1: ChangedKey, 2: Unreachable}})
	cfg := clientConfig(t, f)

	start := time.Now()
	_, err := dial(f, 0, cfg, 100*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 5*time.Second {
		t.Errorf("hang-connect: err %v after %v, want a handshake timeout", err, time.Since(start))
	}

	_, err = dial(f, 1, cfg, 5*time.Second)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		t.Errorf("changed-key: err %v, want a *knownhosts.KeyError with Want", err)
	} else if !bytes.Equal(ke.Want[0].Key.Marshal(), f.HostKey(1).Marshal()) {
		t.Errorf("changed-key: Want is not HostKey(1)")
	}

	_, err = dial(f, 2, cfg, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unreachable: err %v, want connection refused", err)
	}
}

func TestDrop(t *testing.T) {
	f := startFleet(t, Options{Hosts: 1, Behaviors: map[int]Behavior{0: Drop}})
	cfg := clientConfig(t, f)
	c := mustDial(t, f, 0, cfg)
	_, _, _, err := run(t, c, "update v2")
	var missing *ssh.ExitMissingError
	if !errors.As(err, &missing) {
		t.Errorf("dropped update: err %v, want *ssh.ExitMissingError", err)
	}
	if err := c.Wait(); err == nil {
		t.Error("client.Wait after drop = nil, want the connection's end")
	}
	if v := f.Version(0); v != "v2" {
		t.Errorf("version after drop = %q, want v2", v)
	}
	c = mustDial(t, f, 0, cfg)
	for _, s := range []step{{cmd: "health", status: 1}, {cmd: "rollback v1"}, {cmd: "health"}, {cmd: "update v3"}, {cmd: "health", status: 1}} {
		if _, _, status, err := run(t, c, s.cmd); status != s.status || err != nil {
			t.Errorf("%q after drop = %d, %v; want %d", s.cmd, status, err, s.status)
		}
	}
}

func TestAuthAndRequests(t *testing.T) {
	f := startFleet(t, Options{Hosts: 1})
	cfg := clientConfig(t, f)

	wrongUser := *cfg
	wrongUser.User = "root"
	if _, err := dial(f, 0, &wrongUser, 5*time.Second); err == nil {
		t.Error("wrong user was accepted")
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(key)
	otherKey := *cfg
	otherKey.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	if _, err := dial(f, 0, &otherKey, 5*time.Second); err == nil {
		t.Error("unknown key was accepted")
	}
	f.AuthorizeKey(signer.PublicKey())
	c := mustDial(t, f, 0, &otherKey)

	if ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil); ok || err != nil {
		t.Errorf("keepalive = %v, %v; want a failure reply", ok, err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Setenv("LANG", "C"); err != nil {
		t.Errorf("env refused: %v", err)
	}
	if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("pty-req accepted")
	}
	if err := s.Shell(); err == nil {
		t.Error("shell accepted")
	}
}

func TestStatsAndSetBehavior(t *testing.T) {
	f := startFleet(t, Options{Hosts: 12, InitialVersion: "v7"})
	cfg := clientConfig(t, f)
	if h := f.Hosts(); h[0].Name != "sim-0001" || h[11].Name != "sim-0012" || h[3].Index != 3 {
		t.Errorf("names: %+v", h)
	}
	c := mustDial(t, f, 3, cfg)
	for _, cmd := range []string{"version", "update v8", "health", "health", "rollback v7", "nope"} {
		run(t, c, cmd)
	}
	want := Stats{Connections: 1, Sessions: 6, Versions: 1, Updates: 1, HealthChecks: 2, Rollbacks: 1, MaxRunning: 1}
	if got := f.Stats(3); got != want {
		t.Errorf("Stats(3) = %+v, want %+v", got, want)
	}
	if got := f.Totals(); got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}

	f.SetBehavior(3, UpdateFails)
	if _, _, status, _ := run(t, c, "update v8"); status != 1 || f.Behavior(3) != UpdateFails {
		t.Errorf("update after SetBehavior(UpdateFails) = %d", status)
	}
	f.SetBehavior(3, ChangedKey)
	var ke *knownhosts.KeyError
	if _, err := dial(f, 3, cfg, 5*time.Second); !errors.As(err, &ke) {
		t.Errorf("dial after SetBehavior(ChangedKey): %v", err)
	}
	f.SetBehavior(3, Unreachable)
	if _, err := dial(f, 3, cfg, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after SetBehavior(Unreachable): %v", err)
	}
	f.SetBehavior(3, OK)
	f.SetVersion(3, "v9")
	c = mustDial(t, f, 3, cfg)
	if out, _, _, _ := run(t, c, "version"); out != "v9\n" {
		t.Errorf("version after SetVersion = %q", out)
	}
}

func TestCloseAndCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := Start(ctx, Options{Hosts: 20, Behaviors: map[int]Behavior{0: Hang, 1: HangConnect, 2: Slow}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, f)
	c := mustDial(t, f, 0, cfg)
	s, _ := c.NewSession()
	s.Start("update v2") // hangs until the fleet closes
	slow := mustDial(t, f, 2, cfg)
	s2, _ := slow.NewSession()
	s2.Start("version") // waits SlowDelay (2s) unless the fleet closes
	nc, err := net.Dial("tcp", addr(f, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := f.WriteFiles(t.TempDir()); err != nil {
		t.Fatal(err)
	}

	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.Dial("tcp", addr(f, 5)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fleet still accepting after its context was cancelled")
		}
		runtime.Gosched()
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	c.Close()
	slow.Close()
	nc.Close()
	for n := runtime.NumGoroutine(); n > before; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestWriteFiles(t *testing.T) {
	f := startFleet(t, Options{Hosts: 2})
	dir := t.TempDir()
	if err := f.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "client_ed25519")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("client key file: %v, %v", fi, err)
	}
	kh, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if err != nil || !strings.HasPrefix(string(kh), "[127.0.0.1]:") || bytes.Count(kh, []byte("ssh-ed25519")) != 2 {
		t.Errorf("known_hosts = %q, %v", kh, err)
	}
}

func TestParse(t *testing.T) {
	if b, err := ParseBehavior("rollback-fails"); b != RollbackFails || err != nil {
		t.Errorf("ParseBehavior = %q, %v", b, err)
	}
	if _, err := ParseBehavior("explode"); err == nil {
		t.Error("ParseBehavior accepted explode")
	}
	if _, err := Start(context.Background(), Options{Hosts: 1, Behaviors: map[int]Behavior{1: OK}}); err == nil {
		t.Error("Start accepted a behaviour for a host that does not exist")
	}
	for cmd, want := range map[string][2]string{
		"version": {"version", ""}, "fleetctl update 'v2.4.1'": {"update", "v2.4.1"},
		"/x/fleetctl  rollback v1": {"rollback", "v1"}, "ls": {"", ""}, "a b c d": {"", ""}, "": {"", ""},
	} {
		if v, a := parseCommand(cmd); v != want[0] || a != want[1] {
			t.Errorf("parseCommand(%q) = %q, %q; want %q", cmd, v, a, want)
		}
	}
}

// BenchmarkRollout does what /work/shared/bench/floor does against its
// answer-at-once server: per host one connection and three exec sessions, at
// concurrency c. Compare hosts/s with `go run . -n 2000 -c 50` there.
func BenchmarkRollout(b *testing.B) {
	for _, bc := range []struct{ n, c int }{{2000, 50}, {10000, 200}} {
		b.Run(fmt.Sprintf("n=%d/c=%d", bc.n, bc.c), func(b *testing.B) {
			f := startFleet(b, Options{Hosts: bc.n})
			signer, err := ssh.ParsePrivateKey(f.ClientKeyPEM())
			if err != nil {
				b.Fatal(err)
			}
			hosts := f.Hosts()
			b.ResetTimer()
			for b.Loop() {
				jobs := make(chan int)
				var wg sync.WaitGroup
				for range bc.c {
					wg.Go(func() {
						for i := range jobs {
							cfg := &ssh.ClientConfig{User: "fleet", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(f.HostKey(i))}
							cl, err := ssh.Dial("tcp", net.JoinHostPort(hosts[i].Address, strconv.Itoa(hosts[i].Port)), cfg)
							if err != nil {
								b.Error(err)
								continue
							}
							for _, cmd := range []string{"version", "update v2", "health"} {
								s, err := cl.NewSession()
								if err == nil {
									err = s.Run(cmd)
								}
								if err != nil {
									b.Error(err)
								}
							}
							cl.Close()
						}
					})
				}
				for i := range bc.n {
					jobs <- i
				}
				close(jobs)
				wg.Wait()
			}
			b.ReportMetric(float64(bc.n*b.N)/b.Elapsed().Seconds(), "hosts/s")
		})
	}
}

// BenchmarkStart reports how long 10,000 hosts take to come up and the heap
// and goroutine stacks they hold while idle.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		f, err := Start(context.Background(), Options{Hosts: 10000})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds()*1000, "start-ms")
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/(1<<20), "stack-MB")
		f.Close()
	}
}

// A held update is neither applied nor answered until Release; other
// commands go on meanwhile.
func TestHoldAndRelease(t *testing.T) {
	f := startFleet(t, Options{Hosts: 1})
	c := mustDial(t, f, 0, clientConfig(t, f))
	f.Hold()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("update v2"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for tick := time.NewTicker(time.Millisecond); f.Stats(0).Updates == 0; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatal("the update never reached the host")
		}
	}
	if out, _, status, err := run(t, c, "version"); out != "v1\n" || status != 0 || err != nil {
		t.Fatalf("version while an update is held = %q, %d, %v", out, status, err)
	}
	select {
	case err := <-done:
		t.Fatalf("a held update answered: %v", err)
	default:
	}
	f.Release()
	if err := <-done; err != nil {
		t.Fatalf("released update: %v", err)
	}
	if v := f.Version(0); v != "v2" {
		t.Errorf("version after release %q, want v2", v)
	}
}
