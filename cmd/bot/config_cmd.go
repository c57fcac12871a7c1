package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
)

// configCheck validates the configuration without side effects: no store
// is opened (nor created, nor migrated) and nothing is connected to, unless
// --connect asks to try the store, Slack and SSH to one host.
func (m *Main) configCheck(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("config check")
	forServe := fs.Bool("serve", false, "also check what `serve` needs (Slack tokens, channel, admins)")
	connect := fs.Bool("connect", false, "also try the connections: open the store (applying its migrations), "+
		"Slack's auth.test when a token is set, and SSH to one host")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return fmt.Errorf("configuration is not valid:\n%w", err)
	}
	var errs []error
	if *forServe {
		if err := cfg.ValidateSlack(); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.DatabaseURL == "" {
		if err := checkStateDir(cfg.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	// The key and known_hosts are read, without the store's pinned keys.
	if _, err := sshrunner.New(cfg.Runner(), noPins{}, nil); err != nil {
		errs = append(errs, err)
	}
	if cfg.Inventory.Source == "file" {
		if _, err := config.ReadHostsFile(cfg.Inventory.File); err != nil {
			errs = append(errs, fmt.Errorf("inventory.file: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("configuration is not valid:\n%w", err)
	}
	s := cfg.Settings()
	kind := "PostgreSQL (DATABASE_URL)"
	if cfg.DatabaseURL == "" {
		kind = "SQLite, " + filepath.Join(cfg.StateDir, "rolloutbot.db")
	}
	fmt.Fprintf(m.Stdout, "configuration is valid\n  store: %s\n  inventory: %s\n  stages %v %%, %d at once, %s pause, threshold %d%%\n",
		kind, cfg.Inventory.Source, s.Stages, s.Concurrency, s.Pause, s.Threshold)
	if len(cfg.Schedules) > 0 {
		names := make([]string, len(cfg.Schedules))
		for i, sc := range cfg.Schedules {
			names[i] = sc.Name
		}
		sort.Strings(names)
		fmt.Fprintf(m.Stdout, "  schedules: %s\n", strings.Join(names, ", "))
	}
	if !*connect {
		return nil
	}
	return m.checkConnections(ctx, cfg)
}

// checkConnections tries the store, Slack and SSH to the first active host,
// saying how each went; any failure fails the check.
func (m *Main) checkConnections(ctx context.Context, cfg *config.Config) error {
	var errs []error
	try := func(what string, f func() (string, error)) {
		detail, err := f()
		if err != nil {
			fmt.Fprintf(m.Stdout, "  ✗ %s: %v\n", what, err)
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		fmt.Fprintf(m.Stdout, "  ✓ %s: %s\n", what, detail)
	}
	a, err := m.open(ctx, cfg, nil)
	if err != nil {
		fmt.Fprintf(m.Stdout, "  ✗ store: %v\n", err)
		return fmt.Errorf("connections: %w", err)
	}
	defer a.Close()
	try("store", func() (string, error) {
		applied, err := a.db.AppliedMigrations(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, at migration %d", a.db.Kind(), applied[len(applied)-1]), a.db.Ping(ctx)
	})
	if cfg.Slack.BotToken != "" {
		try("slack", func() (string, error) {
			api := bot.NewClient(cfg.Slack.BotToken, cfg.Slack.AppToken, cfg.Slack.APIURL, &http.Client{Timeout: 10 * time.Second})
			res, err := api.AuthTestContext(ctx)
			if err != nil {
				return "", fmt.Errorf("auth.test: %w", err)
			}
			return fmt.Sprintf("auth.test: %s in %s", res.User, res.Team), nil
		})
	}
	try("ssh", func() (string, error) {
		hosts, err := a.inv.ActiveHosts(ctx)
		if err != nil {
			return "", fmt.Errorf("inventory: %w", err)
		}
		if len(hosts) == 0 {
			return "", rollout.ErrNoHosts
		}
		runner, err := sshrunner.New(cfg.Runner(), a.db, nil)
		if err != nil {
			return "", err
		}
		// A handshake verifies the host key and logs in; no command runs.
		c, err := runner.Connect(ctx, hosts[0], rollout.Fence{})
		if err != nil {
			return "", err
		}
		c.Close()
		return fmt.Sprintf("logged in to %s (%s), host key verified", hosts[0].ID, hosts[0].Addr()), nil
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("connections:\n%w", err)
	}
	return nil
}

// checkStateDir says, naming state_dir, when the embedded store could not
// be created there: the directory, or the nearest one that exists above
// it, must be writable. Nothing is created.
func checkStateDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("state_dir %s: %w", dir, err)
	}
	for p := abs; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist) && p != filepath.Dir(p):
			continue
		case err != nil:
			return fmt.Errorf("state_dir %s: %w", dir, err)
		case !st.IsDir():
			return fmt.Errorf("state_dir %s: %s is not a directory", dir, p)
		case syscall.Access(p, 2|1) != nil: // W_OK|X_OK
			if p == abs {
				return fmt.Errorf("state_dir %s: not writable by this user (the embedded store lives there)", dir)
			}
			return fmt.Errorf("state_dir %s: does not exist, and %s is not writable by this user to create it", dir, p)
		}
		return nil
	}
}

// noPins is the key store of a check without the store: nothing pinned,
// and nothing pinned by it (it connects nowhere).
type noPins struct{}

func (noPins) PinnedHostKey(context.Context, string) (string, error) { return "", nil }
func (noPins) PinHostKey(_ context.Context, _, key string) (string, error) {
	return key, nil
}
