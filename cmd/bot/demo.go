package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
)

// simRecipe is the recipe the simulated hosts answer, the same as the
// benchmark's real sshd fleet.
var simRecipe = config.Recipe{
	Version:  "fleetctl version",
	Update:   "fleetctl update {version}",
	Health:   "fleetctl health",
	Rollback: "fleetctl rollback {version}",
}

// demoFailures are the ways the demo's failing hosts fail, in turn.
var demoFailures = []fleetsim.Behavior{fleetsim.HealthFails, fleetsim.UpdateFails, fleetsim.Hang, fleetsim.RollbackFails, fleetsim.Drop}

func (m *Main) demo(ctx context.Context, args []string) error {
	fs, _ := m.flags("demo")
	n := fs.Int("hosts", 40, "simulated `N` hosts")
	failShare := fs.Float64("fail", 0.1, "share of hosts that fail (update, health, hang, rollback, drop, in turn)")
	conc := fs.Int("concurrency", 5, "hosts updated at once")
	seed := fs.Int64("seed", 42, "shuffle seed: the same seed gives the same run")
	pause := fs.Duration("pause", 2*time.Second, "pause between stages")
	latency := fs.Duration("latency", 100*time.Millisecond, "simulated time each remote command takes (plus up to as much again)")
	stateDir := fs.String("state", "", "keep the demo's store and files in this directory (default: a temporary one, removed)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *n > 20000 || *failShare < 0 || *failShare > 1 || *conc < 1 {
		return fmt.Errorf("%w: --hosts must be 1..20000, --fail 0..1, --concurrency at least 1", errUsage)
	}
	dir := *stateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "rolloutbot-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	settings := rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: *conc, Pause: *pause, Threshold: 30}

	fleet, hosts, err := startSimulation(ctx, simOptions{hosts: *n, latency: *latency, seed: *seed}, dir)
	if err != nil {
		return err
	}
	defer fleet.Close()
	failing := placeFailures(hosts, *seed, settings, int(math.Round(*failShare*float64(*n))))
	for i, b := range failing {
		fleet.SetBehavior(i, b)
	}
	where := "store in " + dir
	if *stateDir == "" {
		where = "store in a temporary directory, removed at the end (--state DIR keeps it)"
	}
	fmt.Fprintf(m.Stdout, "demo: %d simulated SSH hosts on 127.0.0.1 (real SSH, one port each), %d of them set to fail; %s\n",
		*n, len(failing), where)
	fmt.Fprintf(m.Stdout, "      %s\n\n", console.Legend)

	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rolloutbot.db"), nil)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PutHosts(ctx, hosts); err != nil {
		return err
	}
	runner, err := sshrunner.New(sshrunner.Config{
		User: "fleet", KeyFile: filepath.Join(dir, "client_ed25519"), KnownHostsFile: filepath.Join(dir, "known_hosts"),
		ConnectTimeout: 3 * time.Second, CommandTimeout: 2 * time.Second, Recipe: sshrunner.Recipe(simRecipe),
	}, db, nil)
	if err != nil {
		return err
	}
	progress := console.NewProgress(m.Stdout, m.TTY)
	engine := rollout.New(rollout.Config{
		Store: db, Inventory: db, Updater: runner, Notifier: progress, Defaults: settings,
		Seed: func() int64 { return *seed }, HealthTimeout: time.Second, HealthInterval: 250 * time.Millisecond,
	})
	r, err := engine.Start(ctx, rollout.StartRequest{Version: "v2", Actor: actor(), Source: rollout.SourceCLI})
	if err != nil {
		return err
	}
	final, err := engine.Run(ctx, r.ID)
	progress.Finish()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(m.Stdout, "interrupted: hosts in flight finished, the rest were left alone")
			return nil
		}
		return err
	}
	results, err := db.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout)
	if *stateDir == "" {
		// The store goes with the demo: point to what keeps it, not to a command that would find nothing.
		console.WriteStatusMore(m.Stdout, final, results, 10, time.Now(), "run the demo with --state DIR to keep its store and see them all")
	} else {
		console.WriteStatusMore(m.Stdout, final, results, 10, time.Now(), "all of them are in the demo's store, "+filepath.Join(dir, "rolloutbot.db"))
	}
	fmt.Fprintf(m.Stdout, "\nsimulated hosts served %d SSH connections and %d exec sessions; every host was updated at most once: %v\n",
		fleet.Totals().Connections, fleet.Totals().Sessions, updatedAtMostOnce(fleet))
	return nil
}

func updatedAtMostOnce(f *fleetsim.Fleet) bool {
	for _, h := range f.Hosts() {
		if f.Stats(h.Index).Updates > 1 {
			return false
		}
	}
	return true
}

// placeFailures picks k hosts to fail, spread over the stages after the
// canary and kept under each stage's threshold when they fit, so a default
// demo completes and shows rollbacks. It returns behaviours by host index.
func placeFailures(hosts []rollout.Host, seed int64, s rollout.Settings, k int) map[int]fleetsim.Behavior {
	index := map[string]int{}
	for i, h := range hosts {
		index[h.ID] = i
	}
	order := rollout.Shuffle(hosts, seed)
	stages := rollout.Stages(len(hosts), s.Stages)
	room := make([]int, len(stages))
	for i, st := range stages {
		room[i] = st.Size()
		if at := rollout.HaltsAt(st.Size(), s.Threshold); at > 0 {
			room[i] = at - 1
		}
	}
	used := make([]int, len(stages))
	out := map[int]fleetsim.Behavior{}
	for placed := 0; placed < k; {
		progress := false
		for i := len(stages) - 1; i >= 1 && placed < k; i-- {
			if used[i] < room[i] {
				st := stages[i]
				// Spread within the stage: every few hosts rather than the first ones.
				pos := st.Start + (used[i]*7+3)%st.Size()
				for out[index[order[pos].ID]] != "" {
					pos = st.Start + (pos-st.Start+1)%st.Size()
				}
				out[index[order[pos].ID]] = demoFailures[placed%len(demoFailures)]
				used[i]++
				placed++
				progress = true
			}
		}
		if !progress {
			break // more failures than fit under the thresholds: the demo will halt
		}
	}
	// What does not fit goes anywhere, and the rollout halts, as it should.
	for i := 0; len(out) < k && i < len(order); i++ {
		if j := index[order[i].ID]; out[j] == "" {
			out[j] = demoFailures[len(out)%len(demoFailures)]
		}
	}
	return out
}
