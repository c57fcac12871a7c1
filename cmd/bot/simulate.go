package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

type simOptions struct {
	hosts     int
	latency   time.Duration
	seed      int64
	behaviors map[int]fleetsim.Behavior
	// updateDelay is added to every update, for updates that outlast a lease.
	updateDelay time.Duration
}

// startSimulation starts a simulated fleet and writes dir/known_hosts and
// dir/client_ed25519 for the SSH runner. It returns the fleet's inventory.
func startSimulation(ctx context.Context, o simOptions, dir string) (*fleetsim.Fleet, []rollout.Host, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	fleet, err := fleetsim.Start(ctx, fleetsim.Options{
		Hosts: o.hosts, Latency: o.latency, Jitter: o.latency, Seed: o.seed, Behaviors: o.behaviors,
		UpdateDelay: o.updateDelay,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start simulated fleet: %w", err)
	}
	if err := fleet.WriteFiles(dir); err != nil {
		fleet.Close()
		return nil, nil, err
	}
	var hosts []rollout.Host
	for _, h := range fleet.Hosts() {
		hosts = append(hosts, rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port, Label: "simulated"})
	}
	return fleet, hosts, nil
}

// writeHostsFile writes an inventory file the file source reads.
func writeHostsFile(path string, hosts []rollout.Host) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = config.WriteHostsYAML(f, hosts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// simConfig is a configuration file for rolling out to a simulated fleet in dir.
const simConfig = `# rolloutbot configuration for the simulated fleet in this directory
# (written by rolloutbot simulate). Try:
#   rolloutbot rollout plan v2 --config %[1]s/rolloutbot.yaml
#   rolloutbot rollout start v2 --config %[1]s/rolloutbot.yaml
state_dir: state
inventory:
  source: file
  file: hosts.yaml
ssh:
  user: fleet
  key_file: client_ed25519
  known_hosts: known_hosts
  connect_timeout: 5s
  command_timeout: 10s
rollout:
  pause: 2s
  health_timeout: 2s
  health_interval: 250ms
recipe:
  version: %[2]q
  update: %[3]q
  health: %[4]q
  rollback: %[5]q
`

func (m *Main) simulate(ctx context.Context, args []string) error {
	fs, _ := m.flags("simulate")
	n := fs.Int("hosts", 100, "simulated hosts")
	dir := fs.String("dir", "rolloutbot-sim", "directory for hosts.yaml, known_hosts, the client key and a config")
	latency := fs.Duration("latency", 0, "time each remote command takes (plus up to as much again)")
	seed := fs.Int64("seed", 1, "seed for the simulated latency")
	behaviors := fs.String("behaviors", "", "comma-separated INDEX=BEHAVIOR, e.g. 3=health-fails,7=hang (ok, update-fails, "+
		"health-fails, rollback-fails, hang, hang-connect, drop, slow, changed-key, unreachable)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	bs := map[int]fleetsim.Behavior{}
	for _, kv := range strings.Split(*behaviors, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= *n {
			return fmt.Errorf("%w: --behaviors: %q is not INDEX=BEHAVIOR with 0 <= INDEX < %d", errUsage, kv, *n)
		}
		if bs[i], err = fleetsim.ParseBehavior(v); err != nil {
			return fmt.Errorf("%w: --behaviors: %w", errUsage, err)
		}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	fleet, hosts, err := startSimulation(ctx, simOptions{hosts: *n, latency: *latency, seed: *seed, behaviors: bs}, abs)
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := writeHostsFile(filepath.Join(abs, "hosts.yaml"), hosts); err != nil {
		return err
	}
	cfg := fmt.Sprintf(simConfig, abs, simRecipe.Version, simRecipe.Update, simRecipe.Health, simRecipe.Rollback)
	if err := os.WriteFile(filepath.Join(abs, "rolloutbot.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "simulating %d SSH hosts on 127.0.0.1 ports %d–%d; files in %s\n"+
		"in another terminal: rolloutbot rollout start v2 --config %s/rolloutbot.yaml\n"+
		"stop with Ctrl-C\n", *n, hosts[0].Port, hosts[len(hosts)-1].Port, abs, abs)
	<-ctx.Done()
	t := fleet.Totals()
	fmt.Fprintf(m.Stdout, "served %d connections, %d sessions, %d updates, %d rollbacks\n", t.Connections, t.Sessions, t.Updates, t.Rollbacks)
	return nil
}
