package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/rollout"
)

func (m *Main) hostsCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, "usage: rolloutbot hosts import FILE | list | add ID ADDRESS | remove ID | disable ID | enable ID | unpin HOST:PORT\n")
		return errUsage
	}
	sub := args[0]
	fs, cfgPath := m.flags("hosts " + sub)
	port := fs.Int("port", 22, "SSH port (add)")
	user := fs.String("user", "", "SSH user, if not the configured one (add)")
	label := fs.String("label", "", "free text, e.g. the customer (add)")
	pos, err := parse(fs, args[1:], -1)
	if err != nil {
		return err
	}
	need := map[string]int{"import": 1, "list": 0, "add": 2, "remove": 1, "disable": 1, "enable": 1, "unpin": 1}
	n, ok := need[sub]
	if !ok {
		fmt.Fprintf(m.Stderr, "rolloutbot hosts: unknown command %q (import, list, add, remove, disable, enable, unpin)\n", sub)
		return errUsage
	}
	if len(pos) != n {
		return fmt.Errorf("%w: hosts %s takes %d argument(s), got %d", errUsage, sub, n, len(pos))
	}
	// Parse an import before touching the store: a bad file changes nothing.
	var imported []rollout.Host
	if sub == "import" {
		if imported, err = config.ReadHostsFile(pos[0]); err != nil {
			return err
		}
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Inventory.Source != "store" && sub != "list" && sub != "unpin" {
		return fmt.Errorf("inventory.source is %s: hosts are managed there, not with `rolloutbot hosts %s`", cfg.Inventory.Source, sub)
	}
	db, err := m.openStore(ctx, cfg, m.logger(cfg))
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "import":
		if err := db.PutHosts(ctx, imported); err != nil {
			return fmt.Errorf("import %s: %w", pos[0], err)
		}
		fmt.Fprintf(m.Stdout, "imported %d hosts from %s\n", len(imported), pos[0])
	case "list":
		hosts, err := inventory(cfg, db).ActiveHosts(ctx)
		if cfg.Inventory.Source == "store" {
			hosts, err = db.ListHosts(ctx)
		}
		if err != nil {
			return err
		}
		m.printHosts(hosts)
	case "add":
		h := rollout.Host{ID: pos[0], Address: pos[1], Port: *port, User: *user, Label: *label}
		if err := db.PutHosts(ctx, []rollout.Host{h}); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "added %s (%s)\n", h.ID, h.Addr())
	case "remove":
		if err := db.RemoveHost(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "removed %s\n", pos[0])
	case "disable", "enable":
		if err := db.SetHostDisabled(ctx, pos[0], sub == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "%sd %s\n", sub, pos[0])
	case "unpin":
		if err := db.UnpinHostKey(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "forgot the pinned host key of %s; the next connection pins the key it presents\n", pos[0])
	}
	return nil
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
	fmt.Fprintf(m.Stdout, "%d hosts\n", len(hosts))
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

func (m *Main) configCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(m.Stderr, "usage: rolloutbot config check [--config FILE] [--serve]\n")
		return errUsage
	}
	fs, cfgPath := m.flags("config check")
	forServe := fs.Bool("serve", false, "also check what `serve` needs (Slack tokens, channel, admins)")
	if _, err := parse(fs, args[1:], 0); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return fmt.Errorf("configuration is not valid:\n%w", err)
	}
	if *forServe {
		if err := cfg.ValidateSlack(); err != nil {
			return fmt.Errorf("configuration is not valid for serve:\n%w", err)
		}
	}
	// Load what can be loaded without connecting: the key and known_hosts.
	a, err := m.open(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("configuration is not valid:\n%w", err)
	}
	defer a.Close()
	s := cfg.Settings()
	fmt.Fprintf(m.Stdout, "configuration is valid\n  store: %s\n  inventory: %s\n  stages %v %%, %d at once, %s pause, threshold %d%%\n",
		a.db.Kind(), cfg.Inventory.Source, s.Stages, s.Concurrency, s.Pause, s.Threshold)
	if len(cfg.Schedules) > 0 {
		names := make([]string, len(cfg.Schedules))
		for i, sc := range cfg.Schedules {
			names[i] = sc.Name
		}
		sort.Strings(names)
		fmt.Fprintf(m.Stdout, "  schedules: %s\n", strings.Join(names, ", "))
	}
	return nil
}
