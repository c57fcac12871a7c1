package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/checks"
	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/store"
)

// loadConfig reads the configuration file named by the flag, the
// environment, or ./rolloutbot.yaml when it exists.
func (m *Main) loadConfig(path string) (*config.Config, error) {
	if path == "" {
		path = m.Getenv("ROLLOUTBOT_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("rolloutbot.yaml"); err == nil {
			path = "rolloutbot.yaml"
		}
	}
	return config.Load(path, m.Getenv)
}

// logger logs to Stderr at the configured level. While a command draws
// live progress on a terminal (logs.above), logs go above the bar, and only
// warnings and errors unless log.level is debug (the info lines say what
// the display shows); with --log-file every line at the configured level
// goes to the file, and warnings and errors to the terminal too.
func (m *Main) logger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	handler := func(w io.Writer, level slog.Level) slog.Handler {
		opts := &slog.HandlerOptions{Level: level}
		if cfg.Log.Format == "json" {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	out, shown := m.Stderr, level
	if m.logs.above != nil {
		out = m.logs.above
		if level > slog.LevelDebug {
			shown = max(level, slog.LevelWarn)
		}
	}
	if m.logs.file != nil {
		return slog.New(slog.NewMultiHandler(handler(m.logs.file, level), handler(out, max(level, slog.LevelWarn))))
	}
	return slog.New(handler(out, shown))
}

// logRouting says where a command's logs go besides Stderr.
type logRouting struct {
	above io.Writer      // above the live progress bar, instead of Stderr
	file  io.WriteCloser // --log-file
}

// addLogFileFlag adds --log-file to a command that shows live progress.
func addLogFileFlag(fs *flag.FlagSet) *string {
	return fs.String("log-file", "", "append every log line to `FILE`; the terminal then shows only warnings and errors")
}

// routeLogs sends logs above progress when it is drawn in place, and to
// the log file when one is named (Run closes it).
func (m *Main) routeLogs(progress *console.Progress, logFile string) error {
	if m.TTY {
		m.logs.above = progress.Log()
	}
	if logFile == "" {
		return nil
	}
	f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("%w: --log-file: %w", errUsage, err)
	}
	m.logs.file = f
	return nil
}

// app is the wired program: store, inventory and the engine with its SSH runner.
type app struct {
	cfg    *config.Config
	log    *slog.Logger
	db     *store.DB
	inv    rollout.Inventory
	engine *rollout.Engine
}

// openStore opens the configured store, applying migrations.
func (m *Main) openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*store.DB, error) {
	dsn := cfg.Store()
	db, err := store.Open(ctx, dsn, log)
	if err != nil {
		if cfg.DatabaseURL != "" {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		return nil, fmt.Errorf("state_dir %s: %w", cfg.StateDir, err)
	}
	return db, nil
}

func inventory(cfg *config.Config, db *store.DB) rollout.Inventory {
	switch cfg.Inventory.Source {
	case "file":
		return config.FileInventory{Path: cfg.Inventory.File}
	case "sql":
		return store.QueryInventory{URL: cfg.Inventory.SQLDatabaseURL, Query: cfg.Inventory.SQL}
	}
	return db
}

// notify makes the engine's notifier once the store is open: the Slack
// status keeps its message's place there.
type notify func(cfg *config.Config, db *store.DB) rollout.Notifier

// open wires everything a rollout needs; notify may be nil.
func (m *Main) open(ctx context.Context, cfg *config.Config, notify notify) (*app, error) {
	return m.openSeeded(ctx, cfg, notify, nil)
}

// openSeeded is open with the engine's shuffle seeds from seed (nil: random).
func (m *Main) openSeeded(ctx context.Context, cfg *config.Config, notify notify, seed func() int64) (*app, error) {
	log := m.logger(cfg)
	db, err := m.openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	var notifier rollout.Notifier
	if notify != nil {
		notifier = notify(cfg, db)
	}
	runner, err := sshrunner.New(cfg.Runner(), db, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	cks, err := checks.New(cfg.Rollout.Checks, &http.Client{})
	if err != nil {
		db.Close()
		return nil, err
	}
	a := &app{cfg: cfg, log: log, db: db, inv: inventory(cfg, db)}
	cal, _ := cfg.Calendar() // validated with the configuration
	a.engine = rollout.New(rollout.Config{
		Calendar: cal, Freezes: db,
		Checks: cks, CheckInterval: cfg.Rollout.CheckInterval,
		Store: db, Inventory: a.inv, Updater: runner, Notifier: notifier, Logger: log,
		Defaults: cfg.Settings(), HealthTimeout: cfg.Rollout.HealthTimeout, HealthInterval: cfg.Rollout.HealthInterval,
		LeaseTTL: cfg.Rollout.LeaseTTL, Grace: cfg.Rollout.Grace, Latest: latestVersion(cfg.Rollout.LatestVersionCommand),
		Seed: seed,
	})
	return a, nil
}

// withSlack returns a notify for open that adds the Slack status message to
// the terminal's progress when Slack is configured, so a rollout started or
// resumed from a terminal shows in the channel like any other, Halt button
// included (a running bot takes the press). With Slack away the rollout goes
// on without it. follow runs the writer.
func (m *Main) withSlack(progress *console.Progress, status **bot.Status) notify {
	return func(cfg *config.Config, db *store.DB) rollout.Notifier {
		if cfg.Slack.BotToken == "" || cfg.Slack.Channel == "" {
			return progress
		}
		api := bot.NewClient(cfg.Slack.BotToken, cfg.Slack.AppToken, cfg.Slack.APIURL, &http.Client{Timeout: 10 * time.Second})
		*status = bot.NewStatus(api, bot.StatusConfig{Channel: cfg.Slack.Channel, EditInterval: cfg.Slack.EditInterval, Link: webLinks(cfg)}, db, m.logger(cfg))
		return rollout.Notifiers{progress, *status}
	}
}

func (a *app) Close() {
	// Audit entries held back by a store outage get a last chance.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.engine.FlushAudit(ctx); err != nil {
		a.log.Error("audit entries lost at exit", "err", err)
	}
	a.db.Close()
}

// actor names the person at the terminal, for the audit log.
func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if s := strings.TrimSpace(os.Getenv("USER")); s != "" {
		return s
	}
	return "cli"
}

// latestVersion runs the configured command that prints the latest version,
// or returns nil when none is configured. Its answer is validated like any
// version before it is used.
func latestVersion(command string) func(context.Context) (string, error) {
	if command == "" {
		return nil
	}
	return func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).Output()
		if err != nil {
			return "", fmt.Errorf("rollout.latest_version_command: %w", err)
		}
		v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(v), nil
	}
}
