// Package bench measures rolloutbot against the floor that x/crypto/ssh sets,
// on the in-process fleet simulator: speed, allocations, peak memory, store
// writes and the time the store adds, and the Slack API calls a rollout makes.
// Run it with `make bench`; each benchmark times its peers in the same run and
// reports ratios, since this machine is shared and noisy.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/store/pgtest"
)

// pg is a durable PostgreSQL (fsync on), so the store's cost is real.
var pg = pgtest.Server{Durable: true}

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv("BENCH_SIMULATE")); err == nil {
		simulate(n, os.Getenv("BENCH_SIM_DIR"))
		return
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

var sizes = []struct{ hosts, conc int }{{1000, 50}, {10000, 200}}

// sim is a simulated fleet that answers at once, and a runner for it.
type sim struct {
	fleet  *fleetsim.Fleet
	hosts  []rollout.Host
	runner *sshrunner.Runner
}

func newSim(b *testing.B, n int) *sim {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	fleet, err := fleetsim.Start(ctx, fleetsim.Options{Hosts: n})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fleet.Close() })
	dir := b.TempDir()
	if err := fleet.WriteFiles(dir); err != nil {
		b.Fatal(err)
	}
	s := &sim{fleet: fleet}
	for _, h := range fleet.Hosts() {
		s.hosts = append(s.hosts, rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port})
	}
	s.runner, err = sshrunner.New(sshrunner.Config{User: "fleet", KeyFile: filepath.Join(dir, "client_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"), ConnectTimeout: time.Minute, CommandTimeout: time.Minute,
		Recipe: sshrunner.Recipe{Version: "fleetctl version", Update: "fleetctl update {version}", Health: "fleetctl health",
			Rollback: "fleetctl rollback {version}"}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// rollout runs one staged rollout (10/50/100 %, no pause) of version and
// returns its wall time; every host must end updated.
func (s *sim) rollout(b *testing.B, st rollout.Store, inv rollout.Inventory, conc int, version string, n rollout.Notifier) time.Duration {
	b.Helper()
	eng := rollout.New(rollout.Config{Store: st, Inventory: inv, Updater: s.runner, Notifier: n,
		Defaults:      rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: conc, Threshold: 30},
		HealthTimeout: 300 * time.Millisecond, HealthInterval: 100 * time.Millisecond})
	ctx := context.Background()
	start := time.Now()
	r, err := eng.Start(ctx, rollout.StartRequest{Version: version, Actor: "bench", Source: rollout.SourceCLI})
	if err != nil {
		b.Fatal(err)
	}
	final, err := eng.Run(ctx, r.ID)
	d := time.Since(start)
	if err != nil || final.Phase != rollout.PhaseCompleted {
		b.Fatalf("rollout: %v %+v", err, final)
	}
	return d
}

// best is the shorter of two times, the first one given when the other is 0.
func best(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

func openStore(b *testing.B, dsn string, hosts []rollout.Host) *store.DB {
	b.Helper()
	db, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	if err := db.PutHosts(context.Background(), hosts); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkRollout times, back to back on one fleet: the x/crypto/ssh floor
// (one connection, three sessions a host, nothing else), a full staged
// rollout with an in-memory store, and the same rollout on the embedded
// SQLite store and on PostgreSQL. It reports hosts per second, the ratio to
// the floor, what the store adds, store writes per host, allocations per
// host and the process's peak RSS (simulator included) during the rollout.
func BenchmarkRollout(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("hosts=%d/c=%d", sz.hosts, sz.conc), func(b *testing.B) {
			s := newSim(b, sz.hosts)
			sq := openStore(b, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"), s.hosts)
			pq := openStore(b, pg.NewDatabase(b), s.hosts)
			for i := range b.N {
				// The machine is shared and noisy (a slow spell slows every
				// part of a run alike): the floor and the rollout on each
				// store go three times, interleaved, and each reports its
				// best.
				var floorD, memD, pqD, sqD time.Duration
				var memCPU, pgCPU, pgServer float64
				var ms0, ms1 runtime.MemStats
				var simRSS, peak int64
				var pqc *counting
				for rep := range 3 {
					runtime.GC()
					floorD = best(floorD, floor(b, sz.hosts, sz.conc))

					runtime.GC()
					if rep == 0 {
						simRSS = resetPeakRSS()
						runtime.ReadMemStats(&ms0)
					}
					mself0, _ := cpu()
					mem := newMemStore(s.hosts)
					memD = best(memD, s.rollout(b, mem, mem, sz.conc, fmt.Sprintf("v%d.mem%d", i+2, rep), nil))
					mself1, _ := cpu()
					if rep == 0 {
						runtime.ReadMemStats(&ms1)
						peak = peakRSS()
					}

					self0, pg0 := cpu()
					c := &counting{Store: pq}
					pqD = best(pqD, s.rollout(b, c, pq, sz.conc, fmt.Sprintf("v%d.pg%d", i+2, rep), nil))
					self1, pg1 := cpu()
					// The rollout is CPU-bound on this machine, so what the
					// store costs shows more steadily in CPU than in wall
					// time: the PostgreSQL run's CPU (here and in the server)
					// over the in-memory run's.
					if cur := (self1 - self0) + (pg1 - pg0); rep == 0 || cur < pgCPU {
						pgCPU, pgServer = cur, pg1-pg0
					}
					if cur := mself1 - mself0; rep == 0 || cur < memCPU {
						memCPU = cur
					}
					pqc = c
					sqD = best(sqD, s.rollout(b, sq, sq, sz.conc, fmt.Sprintf("v%d.sqlite%d", i+2, rep), nil))
				}

				b.ReportMetric(pgServer/float64(sz.hosts)*1e3, "pg-server-cpu-ms/host")
				b.ReportMetric(pgCPU/float64(sz.hosts)*1e3, "cpu-ms/host(pg)")
				b.ReportMetric(memCPU/float64(sz.hosts)*1e3, "cpu-ms/host(mem)")
				b.ReportMetric(100*(pgCPU-memCPU)/pgCPU, "pg-store-cpu-%")
				// The server's share of all the CPU the PostgreSQL run used:
				// steadier than the differences above, which subtract two
				// noisy runs. (The store's client side is about 0.6 % of the
				// process's CPU in a profile.)
				b.ReportMetric(100*pgServer/pgCPU, "pg-server-cpu-%")

				n := float64(sz.hosts)
				b.ReportMetric(n/memD.Seconds(), "hosts/s")
				b.ReportMetric(floorD.Seconds(), "floor-s")
				b.ReportMetric(memD.Seconds(), "mem-s")
				b.ReportMetric(sqD.Seconds(), "sqlite-s")
				b.ReportMetric(pqD.Seconds(), "pg-s")
				b.ReportMetric(memD.Seconds()/floorD.Seconds(), "x-floor")
				b.ReportMetric(sqD.Seconds()/floorD.Seconds(), "x-floor-sqlite")
				b.ReportMetric(pqD.Seconds()/floorD.Seconds(), "x-floor-pg")
				b.ReportMetric(100*(pqD-memD).Seconds()/pqD.Seconds(), "pg-store-%")
				b.ReportMetric(100*(sqD-memD).Seconds()/sqD.Seconds(), "sqlite-store-%")
				b.ReportMetric(float64(pqc.rows.Load())/n, "rows/host")
				b.ReportMetric(float64(pqc.txns.Load())/n, "txns/host")
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/host")
				b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/n/1024, "KiB-alloc/host")
				b.ReportMetric(float64(simRSS)/(1<<20), "sim-RSS-MB")
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
			}
		})
	}
}

// BenchmarkSlackCalls counts the Slack API calls of a rollout with 30 of its
// hosts failing, at 1,000 and at 10,000 hosts, through the live status
// message and its thread, against the fake Slack with the bot's default
// pacing. They must not grow with hosts: thread replies stop at a cap, and
// edits come at most one per edit interval, so only a longer rollout makes
// more of them.
func BenchmarkSlackCalls(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("hosts=%d/c=%d", sz.hosts, sz.conc), func(b *testing.B) {
			s := newSim(b, sz.hosts)
			for i := range 30 {
				s.fleet.SetBehavior((i*97+50)%sz.hosts, fleetsim.HealthFails)
			}
			fake := slackfake.New(slackfake.Options{})
			b.Cleanup(fake.Close)
			fake.AddChannel("C0OPS", "ops", true)
			api := bot.NewClient("xoxb-test", "xapp-test", fake.APIURL(), nil)
			for i := range b.N {
				mem := newMemStore(s.hosts)
				status := bot.NewStatus(api, bot.StatusConfig{Channel: "C0OPS"}, statusStore{mem}, nil)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { status.Run(ctx); close(done) }()
				before := len(fake.CallLog())
				d := s.rollout(b, mem, mem, sz.conc, fmt.Sprintf("v%d", i+2), status)
				// Let the status writer finish its final edit and thread.
				deadline := time.Now().Add(2 * time.Minute)
				for tick := time.NewTicker(50 * time.Millisecond); !status.Idle() && time.Now().Before(deadline); <-tick.C {
				}
				cancel()
				<-done
				calls := fake.CallLog()[before:]
				by := map[string]int{}
				for _, c := range calls {
					by[c.Method]++
				}
				b.ReportMetric(float64(len(calls)), "slack-calls")
				b.ReportMetric(float64(by["chat.update"]), "edits")
				b.ReportMetric(float64(by["chat.postMessage"]), "posts")
				b.ReportMetric(float64(len(calls)-by["chat.update"]), "calls-besides-edits")
				b.ReportMetric(d.Seconds(), "rollout-s")
				var parts []string
				for m, n := range by {
					parts = append(parts, m+"="+strconv.Itoa(n))
				}
				b.Logf("%d hosts in %s: %d Slack calls (%s)", sz.hosts, d.Round(time.Millisecond), len(calls), strings.Join(parts, " "))
			}
		})
	}
}

// statusStore gives the status writer the in-memory store.
type statusStore struct{ *memStore }

func (statusStore) SetStatusMessage(context.Context, int64, string, string) error { return nil }

// resetPeakRSS resets the kernel's high-water mark of this process's RSS and
// returns the RSS now.
func resetPeakRSS() int64 {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return procStatus("VmRSS:")
}

func peakRSS() int64 { return procStatus("VmHWM:") }

func procStatus(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpu returns the CPU seconds used so far by this process and by the
// PostgreSQL server's processes.
func cpu() (self, postgres float64) {
	self = procCPU("/proc/self/stat")
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err == nil && strings.HasPrefix(string(comm), "postgres") {
			postgres += procCPU(d + "/stat")
		}
	}
	return self, postgres
}

func procCPU(path string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100 // clock ticks; 100 a second on Linux
}

// simulate serves a simulated fleet from a child process, so the memory the
// engine uses can be measured without the simulator's: it writes the files
// to dir, then "ready", and serves until stdin closes.
func simulate(n int, dir string) {
	fleet, err := fleetsim.Start(context.Background(), fleetsim.Options{Hosts: n})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := fleet.WriteFiles(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var hosts []rollout.Host
	for _, h := range fleet.Hosts() {
		hosts = append(hosts, rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port})
	}
	f, _ := os.Create(filepath.Join(dir, "hosts.json"))
	_ = json.NewEncoder(f).Encode(hosts)
	f.Close()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	fleet.Close()
}

// BenchmarkEngineMemory measures the peak RSS of a process that runs a
// rollout of 10,000 hosts at concurrency 200 with the embedded store, the
// simulated fleet serving from a child process: what rolloutbot itself needs.
func BenchmarkEngineMemory(b *testing.B) {
	const n, conc = 10000, 200
	s := childSim(b, n)
	db := openStore(b, "sqlite:"+filepath.Join(b.TempDir(), "mem.db"), s.hosts)
	for i := range b.N {
		runtime.GC()
		before := resetPeakRSS()
		d := s.rollout(b, db, db, conc, fmt.Sprintf("v%d", i+2), nil)
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
		b.ReportMetric(float64(before)/(1<<20), "RSS-before-MB")
		b.ReportMetric(float64(n)/d.Seconds(), "hosts/s")
	}
}

// childSim serves a simulated fleet of n hosts from a child process, as
// real hosts are other machines: the hosts' side of SSH does not compete for
// this process's scheduler.
func childSim(b *testing.B, n int) *sim {
	b.Helper()
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BENCH_SIMULATE="+strconv.Itoa(n), "BENCH_SIM_DIR="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("simulator: %q %v", line, err)
	}
	var hosts []rollout.Host
	data, err := os.ReadFile(filepath.Join(dir, "hosts.json"))
	if err != nil || json.Unmarshal(data, &hosts) != nil {
		b.Fatal("simulator hosts", err)
	}
	runner, err := sshrunner.New(sshrunner.Config{User: "fleet", KeyFile: filepath.Join(dir, "client_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"), ConnectTimeout: time.Minute, CommandTimeout: time.Minute,
		Recipe: sshrunner.Recipe{Version: "fleetctl version", Update: "fleetctl update {version}", Health: "fleetctl health",
			Rollback: "fleetctl rollback {version}"}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &sim{hosts: hosts, runner: runner}
}

// BenchmarkStoreShare measures what making each host's start durable costs
// at 10,000 hosts: the rollout on each store beside the in-memory store, in
// rounds whose order rotates, with the fleet in a child process (as real
// hosts are other machines; in one process the simulator's SSH work crowds
// out the store's writer and charges the store for it). Each round gives
// each store's share of its own wall time over the in-memory run of that
// round; the median of the rounds is reported, steadier than a best-of
// difference on this shared machine.
func BenchmarkStoreShare(b *testing.B) {
	const n, conc, rounds = 10000, 200, 5
	s := childSim(b, n)
	sq := openStore(b, "sqlite:"+filepath.Join(b.TempDir(), "share.db"), s.hosts)
	pq := openStore(b, pg.NewDatabase(b), s.hosts)
	for i := range b.N {
		var sqShare, pqShare []float64
		for round := range rounds {
			d := map[string]time.Duration{}
			order := []string{"mem", "sqlite", "pg"}
			for range round % 3 {
				order = append(order[1:], order[0])
			}
			for _, name := range order {
				runtime.GC()
				v := fmt.Sprintf("v%d.%s%d", i+2, name, round)
				switch name {
				case "mem":
					mem := newMemStore(s.hosts)
					d[name] = s.rollout(b, mem, mem, conc, v, nil)
				case "sqlite":
					d[name] = s.rollout(b, sq, sq, conc, v, nil)
				case "pg":
					d[name] = s.rollout(b, pq, pq, conc, v, nil)
				}
			}
			sqShare = append(sqShare, 100*(d["sqlite"]-d["mem"]).Seconds()/d["sqlite"].Seconds())
			pqShare = append(pqShare, 100*(d["pg"]-d["mem"]).Seconds()/d["pg"].Seconds())
			b.Logf("round %d: mem %.2fs, sqlite %.2fs (%.1f %%), pg %.2fs (%.1f %%)", round, d["mem"].Seconds(),
				d["sqlite"].Seconds(), sqShare[round], d["pg"].Seconds(), pqShare[round])
		}
		b.ReportMetric(median(sqShare), "sqlite-store-%")
		b.ReportMetric(median(pqShare), "pg-store-%")
	}
}

func median(xs []float64) float64 {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys[len(ys)/2]
}
