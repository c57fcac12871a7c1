// Package config reads rolloutbot's configuration: one YAML file for the
// settings, environment variables for the secrets (each also as NAME_FILE, the
// path of a file holding it). It is parsed once, validated with errors that
// name the setting, and passed down as a struct.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/sshrunner"
)

// Config is the whole configuration.
type Config struct {
	// DatabaseURL is PostgreSQL (postgres://…) for production, or sqlite:PATH;
	// empty means the embedded SQLite file in StateDir. From DATABASE_URL.
	DatabaseURL string `yaml:"-"`
	StateDir    string `yaml:"state_dir"`

	Log       Log        `yaml:"log"`
	Rollout   Rollout    `yaml:"rollout"`
	SSH       SSH        `yaml:"ssh"`
	Recipe    Recipe     `yaml:"recipe"`
	Inventory Inventory  `yaml:"inventory"`
	Slack     Slack      `yaml:"slack"`
	HTTP      HTTP       `yaml:"http"`
	Web       Web        `yaml:"web"`
	Schedules []Schedule `yaml:"schedules"`
	Freezes   []Freeze   `yaml:"freezes"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// Rollout holds the defaults of new rollouts and the engine's timings.
type Rollout struct {
	Stages         []int         `yaml:"stages"`
	Concurrency    int           `yaml:"concurrency"`
	Pause          time.Duration `yaml:"pause"`
	Threshold      int           `yaml:"threshold"`
	HealthTimeout  time.Duration `yaml:"health_timeout"`
	HealthInterval time.Duration `yaml:"health_interval"`
	LeaseTTL       time.Duration `yaml:"lease_ttl"`
	Grace          time.Duration `yaml:"shutdown_grace"`
	// LatestVersionCommand prints the version to roll out when a start or a
	// schedule names none (run locally, output validated like any version).
	LatestVersionCommand string `yaml:"latest_version_command"`
	// Windows are when rollouts may start hosts, e.g. "Mon-Thu 02:00-05:00
	// Europe/Berlin"; none means any time.
	Windows []string `yaml:"windows"`
	// Timezone shows freeze and window times to people, and reads freeze
	// end times given without a zone (default: the first window's, or UTC).
	Timezone string `yaml:"timezone"`
	Gating   `yaml:",inline"`
}

// SSH configures connections to the hosts.
type SSH struct {
	User            string        `yaml:"user"`
	KeyFile         string        `yaml:"key_file"`
	KeyPassphrase   string        `yaml:"-"` // SSH_KEY_PASSPHRASE
	Agent           bool          `yaml:"agent"`
	KnownHosts      string        `yaml:"known_hosts"`
	TrustOnFirstUse bool          `yaml:"trust_on_first_use"`
	ConnectTimeout  time.Duration `yaml:"connect_timeout"`
	CommandTimeout  time.Duration `yaml:"command_timeout"`
	KeepAlive       time.Duration `yaml:"keepalive"`
	// HostDir is where each host keeps rolloutbot's lock and fence files,
	// relative to the SSH user's home unless absolute.
	HostDir string `yaml:"host_dir"`
}

// Recipe is the update procedure run on every host.
type Recipe struct {
	Version  string `yaml:"version"`
	Update   string `yaml:"update"`
	Health   string `yaml:"health"`
	Rollback string `yaml:"rollback"`
}

// Inventory says where the host list comes from.
type Inventory struct {
	// Source is "store" (hosts managed with `rolloutbot hosts …`), "file"
	// (File, read at each rollout start) or "sql" (a read-only query against
	// the operator's own application database).
	Source string `yaml:"source"`
	File   string `yaml:"file"`
	// SQL is the query; it returns id, address, port, user, label.
	SQL string `yaml:"sql"`
	// SQLDatabaseURL is the application database, from INVENTORY_DATABASE_URL.
	SQLDatabaseURL string `yaml:"-"`
}

// Slack configures the bot.
type Slack struct {
	APIURL          string        `yaml:"api_url"`
	Channel         string        `yaml:"channel"`
	Admins          []string      `yaml:"admins"`
	AdminGroups     []string      `yaml:"admin_groups"`
	WorkspaceAdmins bool          `yaml:"workspace_admins"`
	EditInterval    time.Duration `yaml:"edit_interval"`
	BotToken        string        `yaml:"-"` // SLACK_BOT_TOKEN
	AppToken        string        `yaml:"-"` // SLACK_APP_TOKEN

	// ConfirmStart makes /rollout start answer with the plan and Start /
	// Cancel buttons first (default true); `start … now` skips it.
	ConfirmStart *bool `yaml:"confirm_start"`
}

// HTTP configures the ops endpoints (/healthz, /metrics) and the web view.
type HTTP struct {
	Addr string `yaml:"addr"`
	// PublicURL is where people reach the web view (e.g. through a reverse
	// proxy with TLS); Slack links point there.
	PublicURL string `yaml:"public_url"`
}

// Schedule is a rollout started by cron.
type Schedule struct {
	Name     string `yaml:"name"`
	Cron     string `yaml:"cron"`
	Timezone string `yaml:"timezone"`
	Version  string `yaml:"version"` // empty: the latest version command's answer
}

// Default is the configuration before the file and environment apply.
func Default() Config {
	return Config{
		StateDir: "rolloutbot-state",
		Log:      Log{Level: "info", Format: "text"},
		Rollout: Rollout{
			Stages: []int{10, 50, 100}, Concurrency: 5, Pause: 10 * time.Second, Threshold: 30,
			HealthTimeout: 60 * time.Second, HealthInterval: 2 * time.Second,
			LeaseTTL: 15 * time.Second, Grace: 30 * time.Second,
		},
		SSH: SSH{
			User: "root", ConnectTimeout: 10 * time.Second, CommandTimeout: 5 * time.Minute, KeepAlive: 15 * time.Second,
		},
		Inventory: Inventory{Source: "store"},
		Slack:     Slack{APIURL: "https://slack.com/api/", EditInterval: 2 * time.Second},
		HTTP:      HTTP{Addr: "127.0.0.1:9090"},
		Web:       Web{Auth: WebSigned, LinkTTL: 12 * time.Hour},
	}
}

// Load reads the file at path (none when path is empty) and the environment,
// then validates. getenv is os.Getenv outside tests.
func Load(path string, getenv func(string) string) (*Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		defaultState := c.StateDir
		if err := checkYAML(data); err != nil {
			return nil, fmt.Errorf("config %s:\n%w", path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		c.resolvePaths(filepath.Dir(path), c.StateDir != defaultState)
	}
	if err := c.applyEnv(getenv); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// resolvePaths makes file settings relative to the config file's directory;
// the default state_dir stays relative to the working directory.
func (c *Config) resolvePaths(dir string, stateSet bool) {
	paths := []*string{&c.SSH.KeyFile, &c.SSH.KnownHosts, &c.Inventory.File}
	if stateSet {
		paths = append(paths, &c.StateDir)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// secret reads NAME from the environment, or the file NAME_FILE names.
func secret(getenv func(string) string, name string) (string, error) {
	v, file := getenv(name), getenv(name+"_FILE")
	switch {
	case v != "" && file != "":
		return "", fmt.Errorf("%s and %s_FILE are both set: keep one", name, name)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return v, nil
}

func (c *Config) applyEnv(getenv func(string) string) error {
	for _, s := range []struct {
		name string
		dst  *string
	}{
		{"DATABASE_URL", &c.DatabaseURL},
		{"SLACK_BOT_TOKEN", &c.Slack.BotToken},
		{"SLACK_APP_TOKEN", &c.Slack.AppToken},
		{"SSH_KEY_PASSPHRASE", &c.SSH.KeyPassphrase},
		{"INVENTORY_DATABASE_URL", &c.Inventory.SQLDatabaseURL},
		{"ROLLOUTBOT_WEB_SECRET", &c.Web.Secret},
	} {
		v, err := secret(getenv, s.name)
		if err != nil {
			return err
		}
		if v != "" {
			*s.dst = v
		}
	}
	if v := getenv("SLACK_API_URL"); v != "" {
		c.Slack.APIURL = v
	}
	return nil
}

// Settings are the rollout defaults as the engine takes them.
func (c *Config) Settings() rollout.Settings {
	return c.Rollout.Gating.settings(rollout.Settings{Stages: c.Rollout.Stages, Concurrency: c.Rollout.Concurrency, Pause: c.Rollout.Pause,
		Threshold: c.Rollout.Threshold})
}

// Store is the store to open: DATABASE_URL, or the embedded file.
func (c *Config) Store() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return "sqlite:" + filepath.Join(c.StateDir, "rolloutbot.db")
}

// Runner is the SSH runner's configuration.
func (c *Config) Runner() sshrunner.Config {
	return sshrunner.Config{
		User: c.SSH.User, KeyFile: c.SSH.KeyFile, KeyPassphrase: c.SSH.KeyPassphrase, UseAgent: c.SSH.Agent,
		KnownHostsFile: c.SSH.KnownHosts, TrustOnFirstUse: c.SSH.TrustOnFirstUse,
		ConnectTimeout: c.SSH.ConnectTimeout, CommandTimeout: c.SSH.CommandTimeout, KeepAlive: c.SSH.KeepAlive, HostDir: c.SSH.HostDir,
		Recipe: sshrunner.Recipe(c.Recipe),
	}
}

// Validate checks what can be checked without connecting anywhere, and
// names the setting that is wrong.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, err := range c.Settings().Problems() {
		add("rollout.%w", err)
	}
	errs = append(errs, c.Rollout.Gating.validate()...)
	if c.Rollout.HealthTimeout <= 0 || c.Rollout.HealthInterval <= 0 {
		add("rollout.health_timeout and rollout.health_interval must be positive")
	}
	if c.Rollout.LeaseTTL < time.Second {
		add("rollout.lease_ttl: %s is under a second", c.Rollout.LeaseTTL)
	}
	if c.Rollout.Grace <= 0 {
		add("rollout.shutdown_grace: %s must be positive", c.Rollout.Grace)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		add("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format: %q is not json or text", c.Log.Format)
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") &&
		!strings.HasPrefix(c.DatabaseURL, "sqlite:") {
		add("DATABASE_URL: must start with postgres:// (or sqlite: for a file)")
	}
	if c.SSH.User == "" {
		add("ssh.user: empty")
	}
	if c.SSH.KeyFile == "" && !c.SSH.Agent {
		add("ssh.key_file: give a private key file, or set ssh.agent: true")
	}
	if c.SSH.KnownHosts == "" && !c.SSH.TrustOnFirstUse {
		add("ssh.known_hosts: host keys are always verified: give a known_hosts file or set ssh.trust_on_first_use: true")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ssh.connect_timeout", c.SSH.ConnectTimeout}, {"ssh.command_timeout", c.SSH.CommandTimeout}, {"ssh.keepalive", c.SSH.KeepAlive}} {
		if d.v <= 0 {
			add("%s: must be positive", d.name)
		}
	}
	if err := sshrunner.Recipe(c.Recipe).Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Inventory.Source {
	case "store":
	case "file":
		if c.Inventory.File == "" {
			add("inventory.file: inventory.source is file but no file is named")
		}
	case "sql":
		if c.Inventory.SQL == "" {
			add("inventory.sql: inventory.source is sql but no query is given")
		}
		if c.Inventory.SQLDatabaseURL == "" {
			add("INVENTORY_DATABASE_URL: inventory.source is sql but the application database is not set")
		}
	default:
		add("inventory.source: %q is not store, file or sql", c.Inventory.Source)
	}
	if c.HTTP.Addr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			add("http.addr: %q is not host:port", c.HTTP.Addr)
		}
	}
	errs = append(errs, c.validateWeb()...)
	if !strings.HasSuffix(c.Slack.APIURL, "/") {
		add("slack.api_url: %q must end with a slash", c.Slack.APIURL)
	}
	if c.Slack.EditInterval < time.Second {
		add("slack.edit_interval: %s is faster than Slack lets a message be edited; use at least 1s", c.Slack.EditInterval)
	}
	if _, err := c.Calendar(); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{}
	for i, s := range c.Schedules {
		name := fmt.Sprintf("schedules[%d]", i)
		switch {
		case s.Name == "":
			add("%s.name: empty", name)
		case seen[s.Name]:
			add("%s.name: %q is used twice", name, s.Name)
		}
		seen[s.Name] = true
		if _, err := time.LoadLocation(s.Timezone); err != nil || s.Timezone == "Local" {
			add("%s.timezone: %q is not an IANA time zone such as Europe/Berlin or UTC", name, s.Timezone)
		}
		// The time zone has its own line above; the cron spec is checked on its own.
		if s.Cron == "" {
			add("%s.cron: empty", name)
		} else if _, _, err := schedule.Parse(s.Cron, "UTC"); err != nil {
			add("%s.cron: %w", name, err)
		}
		switch {
		case s.Version != "":
			if err := rollout.ValidateVersion(s.Version); err != nil {
				add("%s.version: %w", name, err)
			}
		case c.Rollout.LatestVersionCommand == "":
			add("%s.version: none given, and rollout.latest_version_command is not set to find the latest", name)
		}
	}
	return errors.Join(errs...)
}

// channelID is a Slack channel ID: status messages are edited and pinned by ID.
var channelID = regexp.MustCompile(`^[CG][A-Z0-9]{2,}$`)

// ValidateSlack checks the settings `serve` needs beyond the others.
func (c *Config) ValidateSlack() error {
	var errs []error
	if !strings.HasPrefix(c.Slack.BotToken, "xoxb-") {
		errs = append(errs, errors.New("SLACK_BOT_TOKEN: missing or not a bot token (xoxb-…)"))
	}
	if !strings.HasPrefix(c.Slack.AppToken, "xapp-") {
		errs = append(errs, errors.New("SLACK_APP_TOKEN: missing or not an app-level token (xapp-…)"))
	}
	if !channelID.MatchString(c.Slack.Channel) {
		errs = append(errs, fmt.Errorf("slack.channel: %q is not a channel ID (C… or G…; in Slack: channel details, at the bottom)", c.Slack.Channel))
	}
	if len(c.Slack.Admins) == 0 && len(c.Slack.AdminGroups) == 0 && !c.Slack.WorkspaceAdmins {
		errs = append(errs, errors.New("slack.admins: nobody could start a rollout: name admins, admin_groups or set workspace_admins"))
	}
	return errors.Join(errs...)
}
