package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// openHosts loads the configuration and opens the store for a hosts
// command; those that change the list need the store's own inventory.
func (m *Main) openHosts(ctx context.Context, cfgPath, sub string, changes bool) (*config.Config, *store.DB, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	if changes && cfg.Inventory.Source != "store" {
		return nil, nil, fmt.Errorf("inventory.source is %s: hosts are managed there, not with `rolloutbot hosts %s`", cfg.Inventory.Source, sub)
	}
	db, err := m.openStore(ctx, cfg, m.logger(cfg))
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

// exactly parses a hosts command's flags and wants n arguments.
func exactly(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	pos, err := parse(fs, args, -1)
	if err != nil {
		return nil, err
	}
	if len(pos) != n {
		return nil, fmt.Errorf("%w: %s takes %d argument(s), got %d\n%s", errUsage,
			strings.TrimPrefix(fs.Name(), "rolloutbot "), n, len(pos), usageLine(fs))
	}
	return pos, nil
}

func (m *Main) hostsImport(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("hosts import")
	pos, err := exactly(fs, args, 1)
	if err != nil {
		return err
	}
	// Parse the file before touching the store: a bad file changes nothing.
	imported, err := config.ReadHostsFile(pos[0])
	if err != nil {
		return err
	}
	if len(imported) == 0 {
		return fmt.Errorf("%s has no hosts: nothing imported", pos[0])
	}
	_, db, err := m.openHosts(ctx, *cfgPath, "import", true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PutHosts(ctx, imported); err != nil {
		return fmt.Errorf("import %s: %w", pos[0], err)
	}
	fmt.Fprintf(m.Stdout, "imported %s from %s\n", hostsCount(len(imported)), pos[0])
	return nil
}

func (m *Main) hostsList(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("hosts list")
	out := addOutput(fs)
	if _, err := exactly(fs, args, 0); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	cfg, db, err := m.openHosts(ctx, *cfgPath, "list", false)
	if err != nil {
		return err
	}
	defer db.Close()
	var hosts []rollout.Host
	if cfg.Inventory.Source == "store" {
		hosts, err = db.ListHosts(ctx)
	} else {
		hosts, err = inventory(cfg, db).ActiveHosts(ctx)
	}
	if err != nil {
		return err
	}
	if out.json() {
		return m.writeJSON(console.HostsToJSON(hosts))
	}
	m.printHosts(hosts)
	return nil
}

func (m *Main) hostsAdd(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("hosts add")
	port := fs.Int("port", 0, "SSH `PORT` (default 22, or the one in ADDRESS)")
	user := fs.String("user", "", "SSH `USER`, if not ssh.user")
	label := fs.String("label", "", "free `TEXT`, e.g. the customer")
	pos, err := exactly(fs, args, 2)
	if err != nil {
		return err
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "port" })
	h := rollout.Host{ID: pos[0], User: *user, Label: *label}
	if h.Address, h.Port, err = config.SplitAddress(pos[1], *port, given); err != nil {
		return fmt.Errorf("host %s: %w", h.ID, err)
	}
	_, db, err := m.openHosts(ctx, *cfgPath, "add", true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PutHosts(ctx, []rollout.Host{h}); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "added %s (%s)\n", h.ID, h.Addr())
	return nil
}

func (m *Main) hostsRemove(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("hosts remove")
	ids, err := parse(fs, args, -1)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: hosts remove takes one or more host ids\n%s", errUsage, usageLine(fs))
	}
	_, db, err := m.openHosts(ctx, *cfgPath, "remove", true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.RemoveHosts(ctx, ids); err != nil {
		if errors.Is(err, rollout.ErrNotFound) {
			return fmt.Errorf("%w: none removed", err)
		}
		return err
	}
	fmt.Fprintf(m.Stdout, "removed %s: %s\n", hostsCount(len(ids)), strings.Join(ids, ", "))
	return nil
}

func (m *Main) hostsDisable(ctx context.Context, args []string) error {
	return m.setDisabled(ctx, "disable", args)
}

func (m *Main) hostsEnable(ctx context.Context, args []string) error {
	return m.setDisabled(ctx, "enable", args)
}

func (m *Main) setDisabled(ctx context.Context, sub string, args []string) error {
	fs, cfgPath := m.flags("hosts " + sub)
	pos, err := exactly(fs, args, 1)
	if err != nil {
		return err
	}
	_, db, err := m.openHosts(ctx, *cfgPath, sub, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.SetHostDisabled(ctx, pos[0], sub == "disable"); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%sd %s\n", sub, pos[0])
	return nil
}

// hostsUnpin forgets a pinned host key. Keys are pinned by address:port; a
// host id of the store's inventory, or an address without a port (22), is
// turned into that. Nothing pinned there is an error, not a silent success.
func (m *Main) hostsUnpin(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("hosts unpin")
	pos, err := exactly(fs, args, 1)
	if err != nil {
		return err
	}
	_, db, err := m.openHosts(ctx, *cfgPath, "unpin", false)
	if err != nil {
		return err
	}
	defer db.Close()
	addr := pos[0]
	if hosts, err := db.ListHosts(ctx); err == nil {
		for _, h := range hosts {
			if h.ID == addr {
				addr = h.Addr()
			}
		}
	}
	if a, p, err := config.SplitAddress(addr, 0, false); err == nil {
		addr = rollout.Host{Address: a, Port: p}.Addr()
	}
	if err := db.UnpinHostKey(ctx, addr); err != nil {
		if errors.Is(err, rollout.ErrNotFound) {
			return fmt.Errorf("%s: no host key is pinned for %s (keys are pinned by address:port, on first use): nothing unpinned", pos[0], addr)
		}
		return err
	}
	fmt.Fprintf(m.Stdout, "forgot the pinned host key of %s; the next connection pins the key it presents\n", addr)
	return nil
}

// hostsCount is "1 host", "3 hosts".
func hostsCount(n int) string {
	if n == 1 {
		return "1 host"
	}
	return fmt.Sprintf("%d hosts", n)
}

func (m *Main) printHosts(hosts []rollout.Host) {
	tw := tabwriter.NewWriter(m.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tUSER\tLABEL\tSTATE")
	for _, h := range hosts {
		state := "active"
		if h.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.ID, h.Addr(), h.User, h.Label, state)
	}
	tw.Flush()
	fmt.Fprintln(m.Stdout, hostsCount(len(hosts)))
}

func (m *Main) migrate(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("migrate")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	db, err := m.storeOnly(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.AppliedMigrations(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%s store is at migration %d (%d applied)\n", db.Kind(), applied[len(applied)-1], len(applied))
	return nil
}
