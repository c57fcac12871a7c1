package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/store/pgtest"
)

var pg pgtest.Server

// TestMain doubles as the rolloutbot binary: a child started with
// ROLLOUTBOT_RUN_MAIN=1 runs main() instead of the tests, so the crash and
// shutdown tests kill and signal a real process running the real program.
func TestMain(m *testing.M) {
	if os.Getenv("ROLLOUTBOT_RUN_MAIN") == "1" {
		os.Args = append([]string{"rolloutbot"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// fixture is a simulated fleet with the files a rolloutbot process needs to
// reach it: key, known_hosts, inventory and a configuration.
type fixture struct {
	t     *testing.T
	dir   string
	cfg   string
	fleet *fleetsim.Fleet
	env   []string
}

type fixtureOptions struct {
	hosts   int
	latency time.Duration
	dbURL   string // empty: the embedded store in dir
	extra   string // more YAML for the configuration
	// updateDelay is added to every update on the simulated hosts.
	updateDelay time.Duration
	// lease is rollout.lease_ttl (default 3s, which a loaded machine's late
	// renewal does not run out). Tests that kill a driver and wait for its
	// lease to run out set 1s.
	lease time.Duration
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	fleet, hosts, err := startSimulation(ctx, simOptions{hosts: o.hosts, latency: o.latency, seed: 1, updateDelay: o.updateDelay}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	if err := writeHostsFile(filepath.Join(dir, "hosts.yaml"), hosts); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`state_dir: state
inventory:
  source: file
  file: hosts.yaml
ssh:
  user: fleet
  key_file: client_ed25519
  known_hosts: known_hosts
  command_timeout: 10s
rollout:
  pause: 0s
  concurrency: 3
  health_timeout: 3s
  health_interval: 100ms
  lease_ttl: %s
  shutdown_grace: 10s
recipe:
  version: %q
  update: %q
  health: %q
  rollback: %q
%s`, cmp.Or(o.lease, 3*time.Second), simRecipe.Version, simRecipe.Update, simRecipe.Health, simRecipe.Rollback, o.extra)
	path := filepath.Join(dir, "rolloutbot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, dir: dir, cfg: path, fleet: fleet}
	if o.dbURL != "" {
		fx.env = append(fx.env, "DATABASE_URL="+o.dbURL)
	}
	return fx
}

// child starts rolloutbot with args in a child process.
func (f *fixture) child(args ...string) *child {
	f.t.Helper()
	return f.childWith(f.cfg, args...)
}

// childWith starts rolloutbot with args and the configuration file cfg.
func (f *fixture) childWith(cfg string, args ...string) *child {
	f.t.Helper()
	cmd := exec.Command(os.Args[0], append(args, "--config", cfg)...)
	cmd.Env = append(append(os.Environ(), "ROLLOUTBOT_RUN_MAIN=1"), f.env...)
	c := &child{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &c.out, &c.out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	f.t.Cleanup(func() { _ = cmd.Process.Kill(); <-c.done })
	return c
}

type child struct {
	cmd  *exec.Cmd
	out  syncBuffer
	err  error
	done chan struct{}
}

// wait waits, at most 60 s, for the child to exit, and returns its exit code.
func (c *child) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("child did not exit; output:\n%s", c.out.String())
	}
	return c.cmd.ProcessState.ExitCode()
}

// run runs rolloutbot to its end and returns its exit code and output.
func (f *fixture) run(args ...string) (int, string) {
	f.t.Helper()
	c := f.child(args...)
	code := c.wait(f.t)
	return code, c.out.String()
}

// waitUpdates waits, at most 30 s, until the fleet has seen n update commands.
func (f *fixture) waitUpdates(n int64) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(5 * time.Millisecond); f.fleet.Totals().Updates < n; <-tick.C {
		if time.Now().After(deadline) {
			f.t.Fatalf("the fleet saw %d updates, waiting for %d", f.fleet.Totals().Updates, n)
		}
	}
}

// waitFor polls, at most 60 s, until cond holds.
func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for tick := time.NewTicker(10 * time.Millisecond); !cond(); <-tick.C {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitOutput waits until each of the children printed want.
func (f *fixture) waitOutput(want string, cs ...*child) {
	f.t.Helper()
	for _, c := range cs {
		f.waitFor(fmt.Sprintf("%q in the output of rolloutbot %s", want, strings.Join(c.cmd.Args[1:], " ")),
			func() bool { return strings.Contains(c.out.String(), want) })
	}
}

func (f *fixture) store() *store.DB {
	f.t.Helper()
	dsn := "sqlite:" + filepath.Join(f.dir, "state", "rolloutbot.db")
	for _, e := range f.env {
		if u, ok := strings.CutPrefix(e, "DATABASE_URL="); ok {
			dsn = u
		}
	}
	db, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(db.Close)
	return db
}

// assertEachHostOnce checks that every host runs v2, updated exactly once,
// and that the store has every result of a completed rollout.
func (f *fixture) assertEachHostOnce() {
	f.t.Helper()
	for _, h := range f.fleet.Hosts() {
		if st := f.fleet.Stats(h.Index); st.Updates != 1 || f.fleet.Version(h.Index) != "v2" {
			f.t.Errorf("%s: %d updates, runs %s", h.Name, st.Updates, f.fleet.Version(h.Index))
		}
	}
	db := f.store()
	rs, err := db.Rollouts(context.Background(), 10)
	if err != nil || len(rs) != 1 || rs[0].Phase != rollout.PhaseCompleted {
		f.t.Fatalf("rollouts: %v %+v", err, rs)
	}
	results, _ := db.HostResults(context.Background(), rs[0].ID)
	for _, hr := range results {
		if hr.Status != rollout.StatusSuccess || hr.NewVersion != "v2" || hr.PrevVersion != "v1" || hr.FinishedAt.IsZero() {
			f.t.Errorf("result of %s: %+v", hr.Host.ID, hr)
		}
	}
}

// A rollout killed with SIGKILL mid-stage is finished by the next start,
// every host updated exactly once and every result stored.
func TestCrashAndResume(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			o := fixtureOptions{hosts: 30, latency: 20 * time.Millisecond, lease: time.Second}
			if backend == "postgres" {
				o.dbURL = pg.NewDatabase(t)
			}
			f := newFixture(t, o)
			c := f.child("rollout", "start", "v2")
			f.waitUpdates(8)
			if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			c.wait(t)
			killedAt := f.fleet.Totals().Updates
			if killedAt >= 30 {
				t.Fatalf("the rollout finished before the kill")
			}
			code, out := f.run("rollout", "resume")
			if code != 0 {
				t.Fatalf("resume exited %d:\n%s", code, out)
			}
			if !strings.Contains(out, "completed") {
				t.Errorf("resume output:\n%s", out)
			}
			f.assertEachHostOnce()
		})
	}
}

// Chaos on PostgreSQL: the driving process is SIGKILLed at ten random points
// of one rollout whose updates outlast the lease, and a new one takes over
// each time. From the hosts' side, no two commands ever ran at once on one
// and none was updated twice; the store ends with every host updated and
// none left updating.
func TestChaosKillsOnPostgres(t *testing.T) {
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (set CHAOS_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	f := newFixture(t, fixtureOptions{hosts: 24, latency: 20 * time.Millisecond, updateDelay: 1500 * time.Millisecond,
		lease: time.Second, dbURL: pg.NewDatabase(t)})
	c := f.child("rollout", "start", "v2")
	db := f.store()
	for kill := range 10 {
		// A random point: up to 3 s into this driver's life, but while the
		// rollout still has hosts to update.
		at := time.Duration(rng.Int64N(int64(3 * time.Second)))
		select {
		case <-c.done:
		case <-time.After(at):
		}
		if r, err := db.Rollouts(context.Background(), 1); err == nil && len(r) == 1 && r[0].Phase.Ended() {
			t.Logf("the rollout ended after %d kills", kill)
			break
		}
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		c.wait(t)
		t.Logf("kill %d at %s: %d updates so far", kill+1, at.Round(time.Millisecond), f.fleet.Totals().Updates)
		c = f.child("rollout", "resume")
	}
	if code := c.wait(t); code != 0 {
		t.Fatalf("the last driver exited %d:\n%s", code, c.out.String())
	}
	for _, h := range f.fleet.Hosts() {
		if st := f.fleet.Stats(h.Index); st.MaxRunning > 1 {
			t.Errorf("%s ran %d commands at once", h.Name, st.MaxRunning)
		}
	}
	f.assertEachHostOnce()
}

// Two processes race to start a rollout on one PostgreSQL: exactly one wins.
func TestTwoProcessesRaceToStart(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 5, dbURL: pg.NewDatabase(t)})
	f.run("migrate") // so the race is about the rollout, not the schema
	// The winner's updates wait until one of the two has exited, so the
	// other cannot come after a finished rollout, however slow it starts.
	f.fleet.Hold()
	cs := []*child{f.child("rollout", "start", "v2"), f.child("rollout", "start", "v2")}
	select {
	case <-cs[0].done:
	case <-cs[1].done:
	case <-time.After(60 * time.Second):
		t.Fatal("neither start ended")
	}
	f.fleet.Release()
	codes, outs := make([]int, 2), make([]string, 2)
	for i, c := range cs {
		codes[i] = c.wait(t)
		outs[i] = c.out.String()
	}
	wins := 0
	for i, code := range codes {
		switch {
		case code == 0:
			wins++
		case code != 1 || !strings.Contains(outs[i], "is already running"):
			t.Errorf("loser exited %d:\n%s", code, outs[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners:\n%s\n---\n%s", wins, outs[0], outs[1])
	}
	f.assertEachHostOnce()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
