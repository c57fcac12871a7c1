package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/config"
)

// minimal is the least a configuration file needs: the rest has defaults.
const minimal = `ssh:
  key_file: /keys/id_ed25519
  known_hosts: /keys/known_hosts
recipe:
  version: app version
  update: app update {version}
  health: app health
  rollback: app rollback {version}
`

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func load(t *testing.T, data string, getenv func(string) string) (*config.Config, error) {
	t.Helper()
	if getenv == nil {
		getenv = env()
	}
	return config.Load(writeFile(t, filepath.Join(t.TempDir(), "rolloutbot.yaml"), data), getenv)
}

func mustLoad(t *testing.T, data string, getenv func(string) string) *config.Config {
	t.Helper()
	c, err := load(t, data, getenv)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return c
}

// valid is a configuration that passes Validate.
func valid() config.Config {
	c := config.Default()
	c.SSH.KeyFile, c.SSH.KnownHosts = "/keys/id_ed25519", "/keys/known_hosts"
	c.Recipe = config.Recipe{Version: "app version", Update: "app update {version}", Health: "app health", Rollback: "app rollback {version}"}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, minimal, nil)
	s := c.Settings()
	if !reflect.DeepEqual(s.Stages, []int{10, 50, 100}) || s.Concurrency != 5 || s.Pause != 10*time.Second || s.Threshold != 30 {
		t.Errorf("rollout defaults: %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("the default settings do not validate: %v", err)
	}
	if c.Rollout.HealthTimeout != time.Minute || c.Rollout.HealthInterval != 2*time.Second || c.Rollout.LeaseTTL != 15*time.Second ||
		c.Rollout.Grace != 30*time.Second {
		t.Errorf("rollout timings: %+v", c.Rollout)
	}
	if c.SSH.User != "root" || c.SSH.ConnectTimeout != 10*time.Second || c.SSH.CommandTimeout != 5*time.Minute ||
		c.SSH.KeepAlive != 15*time.Second || c.SSH.Agent || c.SSH.TrustOnFirstUse {
		t.Errorf("ssh: %+v", c.SSH)
	}
	if c.Inventory.Source != "store" || c.HTTP.Addr != "127.0.0.1:9090" || c.Slack.APIURL != "https://slack.com/api/" ||
		c.Slack.EditInterval != 2*time.Second || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("defaults: %+v", c)
	}
	// No DATABASE_URL: the embedded store, in the state directory.
	if c.DatabaseURL != "" || !strings.HasPrefix(c.Store(), "sqlite:") || !strings.HasSuffix(c.Store(), filepath.Join("rolloutbot-state", "rolloutbot.db")) {
		t.Errorf("store: %q", c.Store())
	}
	r := c.Runner()
	if r.User != "root" || r.KeyFile != "/keys/id_ed25519" || r.Recipe.Update != "app update {version}" || r.ConnectTimeout != 10*time.Second {
		t.Errorf("runner: %+v", r)
	}

	// Defaults alone cannot run: the recipe and the SSH key are the operator's.
	_, err := config.Load("", env())
	for _, w := range []string{"recipe.", "ssh.key_file", "ssh.known_hosts"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("no file: error %v does not name %s", err, w)
		}
	}
}

func TestLoadFile(t *testing.T) {
	c := mustLoad(t, `recipe:
  version: app version
  update: app update {version}
  health: app health
  rollback: app rollback {version}
rollout:
  stages: [5, 25, 100]
  concurrency: 20
  pause: 1m30s
  threshold: 0
  latest_version_command: git describe
ssh:
  user: deploy
  key_file: /keys/id_ed25519
  known_hosts: /keys/known_hosts
  command_timeout: 90s
inventory:
  source: file
  file: /etc/rolloutbot/hosts.csv
slack:
  channel: C0OPS
  admins: [U1, U2]
schedules:
  - name: nightly
    cron: "0 3 * * *"
    timezone: Europe/Berlin
    version: v2.4.1
`, nil)
	s := c.Settings()
	if !reflect.DeepEqual(s.Stages, []int{5, 25, 100}) || s.Concurrency != 20 || s.Pause != 90*time.Second {
		t.Errorf("settings: %+v", s)
	}
	// threshold: 0 is "halt at the first failure", not "unset".
	if s.Threshold != 0 {
		t.Errorf("threshold 0 read as %d", s.Threshold)
	}
	if c.SSH.User != "deploy" || c.SSH.CommandTimeout != 90*time.Second || c.SSH.ConnectTimeout != 10*time.Second {
		t.Errorf("ssh: %+v", c.SSH)
	}
	if c.Inventory.Source != "file" || c.Inventory.File != "/etc/rolloutbot/hosts.csv" || c.Rollout.LatestVersionCommand != "git describe" {
		t.Errorf("inventory: %+v", c.Inventory)
	}
	if c.Slack.Channel != "C0OPS" || !reflect.DeepEqual(c.Slack.Admins, []string{"U1", "U2"}) {
		t.Errorf("slack: %+v", c.Slack)
	}
	if len(c.Schedules) != 1 || c.Schedules[0] != (config.Schedule{Name: "nightly", Cron: "0 3 * * *", Timezone: "Europe/Berlin", Version: "v2.4.1"}) {
		t.Errorf("schedules: %+v", c.Schedules)
	}

	// An empty file, or one with only comments, is the defaults.
	if _, err := load(t, "# nothing here\n", nil); err == nil || strings.Contains(err.Error(), "yaml") {
		t.Errorf("comment-only file: %v (want only the validation errors of the defaults)", err)
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), env()); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// A typo in the file fails the load, naming the key and its line.
func TestLoadRejectsUnknownKeysAndBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"unknown key in a section", minimal + "rollout:\n  concurency: 3\n", []string{"line 10", "concurency"}},
		{"unknown top-level key", "databse_url: postgres://x\n" + minimal, []string{"line 1", "databse_url"}},
		{"secret in the file", minimal + "slack:\n  bot_token: xoxb-1\n", []string{"line 10", "bot_token"}},
		{"bad duration", minimal + "rollout:\n  pause: soon\n", []string{"line 10", "soon"}},
		{"bad number", minimal + "rollout:\n  concurrency: many\n", []string{"line 10", "many"}},
		{"bad syntax", minimal + "rollout: [\n", []string{"line"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.data, nil)
			if err == nil {
				t.Fatalf("loaded: %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Every Validate error names the setting to fix.
func TestValidateNamesTheSetting(t *testing.T) {
	if c := valid(); c.Validate() != nil {
		t.Fatalf("the base configuration does not validate: %v", c.Validate())
	}
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"stages not ending at 100", func(c *config.Config) { c.Rollout.Stages = []int{10, 50} }, []string{"rollout.stages", "100"}},
		{"stages not increasing", func(c *config.Config) { c.Rollout.Stages = []int{50, 10, 100} }, []string{"rollout.stages"}},
		{"no stages", func(c *config.Config) { c.Rollout.Stages = nil }, []string{"rollout.stages"}},
		{"concurrency 0", func(c *config.Config) { c.Rollout.Concurrency = 0 }, []string{"rollout.concurrency"}},
		{"threshold 101", func(c *config.Config) { c.Rollout.Threshold = 101 }, []string{"rollout.threshold", "101"}},
		{"negative threshold", func(c *config.Config) { c.Rollout.Threshold = -1 }, []string{"rollout.threshold"}},
		{"negative pause", func(c *config.Config) { c.Rollout.Pause = -time.Second }, []string{"rollout.pause"}},
		{"zero health timeout", func(c *config.Config) { c.Rollout.HealthTimeout = 0 }, []string{"rollout.health_timeout"}},
		{"short lease", func(c *config.Config) { c.Rollout.LeaseTTL = 100 * time.Millisecond }, []string{"rollout.lease_ttl"}},
		{"empty recipe command", func(c *config.Config) { c.Recipe.Health = " " }, []string{"recipe.health", "empty"}},
		{"recipe update without {version}", func(c *config.Config) { c.Recipe.Update = "app update latest" }, []string{"recipe.update", "{version}"}},
		{"recipe rollback without {version}", func(c *config.Config) { c.Recipe.Rollback = "app rollback" }, []string{"recipe.rollback", "{version}"}},
		{"recipe health with {version}", func(c *config.Config) { c.Recipe.Health = "app health {version}" }, []string{"recipe.health"}},
		{"no ssh user", func(c *config.Config) { c.SSH.User = "" }, []string{"ssh.user"}},
		{"no key and no agent", func(c *config.Config) { c.SSH.KeyFile = "" }, []string{"ssh.key_file", "ssh.agent"}},
		{"no known_hosts", func(c *config.Config) { c.SSH.KnownHosts = "" }, []string{"ssh.known_hosts"}},
		{"zero connect timeout", func(c *config.Config) { c.SSH.ConnectTimeout = 0 }, []string{"ssh.connect_timeout"}},
		{"sql inventory without query", func(c *config.Config) {
			c.Inventory.Source, c.Inventory.SQLDatabaseURL = "sql", "postgres://app@db/app"
		}, []string{"inventory.sql"}},
		{"sql inventory without database", func(c *config.Config) {
			c.Inventory.Source, c.Inventory.SQL = "sql", "SELECT id, ip, 22, NULL, NULL FROM vps"
		}, []string{"INVENTORY_DATABASE_URL"}},
		{"file inventory without file", func(c *config.Config) { c.Inventory.Source = "file" }, []string{"inventory.file"}},
		{"unknown inventory source", func(c *config.Config) { c.Inventory.Source = "ldap" }, []string{"inventory.source", "ldap"}},
		{"bad http.addr", func(c *config.Config) { c.HTTP.Addr = "9090" }, []string{"http.addr", "9090"}},
		{"slack.api_url without trailing slash", func(c *config.Config) { c.Slack.APIURL = "https://slack.com/api" }, []string{"slack.api_url"}},
		{"fast slack edits", func(c *config.Config) { c.Slack.EditInterval = 100 * time.Millisecond }, []string{"slack.edit_interval"}},
		{"not a database URL", func(c *config.Config) { c.DatabaseURL = "mysql://bob:s3cret@db/x" }, []string{"DATABASE_URL"}},
		{"duplicate schedule names", func(c *config.Config) {
			c.Schedules = []config.Schedule{{Name: "nightly", Cron: "0 3 * * *"}, {Name: "nightly", Cron: "0 4 * * *"}}
		}, []string{"schedules[1].name", "nightly"}},
		{"invalid schedule version", func(c *config.Config) {
			c.Schedules = []config.Schedule{{Name: "nightly", Cron: "0 3 * * *", Version: "v1; reboot"}}
		}, []string{"schedules[0].version"}},
		{"schedule without a name", func(c *config.Config) { c.Schedules = []config.Schedule{{Cron: "0 3 * * *"}} }, []string{"schedules[0].name"}},
		{"schedule without cron", func(c *config.Config) { c.Schedules = []config.Schedule{{Name: "nightly"}} }, []string{"schedules[0].cron"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}

	// Every error is reported at once, not only the first.
	c := valid()
	c.Rollout.Concurrency, c.HTTP.Addr, c.Recipe.Update = 0, "nowhere", ""
	err := c.Validate()
	for _, w := range []string{"rollout.concurrency", "http.addr", "recipe.update"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not name %s", err, w)
		}
	}

	// The same errors come out of Load, for values from the file.
	_, err = load(t, minimal+"rollout:\n  threshold: 101\n  stages: [10, 50]\nhttp:\n  addr: localhost\n", nil)
	for _, w := range []string{"rollout.stages", "http.addr"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("load: error %v does not name %s", err, w)
		}
	}
	_, err = load(t, minimal+"rollout:\n  threshold: 101\n", nil)
	if err == nil || !strings.Contains(err.Error(), "rollout.threshold") {
		t.Errorf("load: error %v does not name rollout.threshold", err)
	}

	// The alternatives to a key file and a known_hosts file are accepted.
	c = valid()
	c.SSH.KeyFile, c.SSH.Agent, c.SSH.KnownHosts, c.SSH.TrustOnFirstUse = "", true, "", true
	c.DatabaseURL = "postgresql://bob@db/x"
	c.Inventory = config.Inventory{Source: "sql", SQL: "SELECT 1", SQLDatabaseURL: "postgres://app@db/app"}
	c.HTTP.Addr = ""
	if err := c.Validate(); err != nil {
		t.Errorf("agent, trust on first use, sql inventory: %v", err)
	}
}

var secrets = []struct {
	name string
	get  func(*config.Config) string
}{
	{"DATABASE_URL", func(c *config.Config) string { return c.DatabaseURL }},
	{"SLACK_BOT_TOKEN", func(c *config.Config) string { return c.Slack.BotToken }},
	{"SLACK_APP_TOKEN", func(c *config.Config) string { return c.Slack.AppToken }},
	{"SSH_KEY_PASSPHRASE", func(c *config.Config) string { return c.SSH.KeyPassphrase }},
	{"INVENTORY_DATABASE_URL", func(c *config.Config) string { return c.Inventory.SQLDatabaseURL }},
}

func secretValue(name string) string {
	if strings.HasSuffix(name, "DATABASE_URL") {
		return "postgres://bob:s3cret@db.example.com/" + strings.ToLower(name)
	}
	return "value-of-" + name
}

func TestSecretsFromEnvironment(t *testing.T) {
	var kv []string
	for _, s := range secrets {
		kv = append(kv, s.name, secretValue(s.name))
	}
	c := mustLoad(t, minimal, env(append(kv, "SLACK_API_URL", "http://127.0.0.1:1234/api/")...))
	for _, s := range secrets {
		if got := s.get(c); got != secretValue(s.name) {
			t.Errorf("%s: got %q", s.name, got)
		}
	}
	if c.Slack.APIURL != "http://127.0.0.1:1234/api/" {
		t.Errorf("SLACK_API_URL: %q", c.Slack.APIURL)
	}
	if c.Store() != secretValue("DATABASE_URL") || c.Runner().KeyPassphrase != secretValue("SSH_KEY_PASSPHRASE") {
		t.Errorf("store %q, runner passphrase %q", c.Store(), c.Runner().KeyPassphrase)
	}
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	var kv []string
	for _, s := range secrets {
		// As Docker and systemd credentials write them: with a trailing newline.
		kv = append(kv, s.name+"_FILE", writeFile(t, filepath.Join(dir, strings.ToLower(s.name)), secretValue(s.name)+"\n"))
	}
	c := mustLoad(t, minimal, env(kv...))
	for _, s := range secrets {
		if got := s.get(c); got != secretValue(s.name) {
			t.Errorf("%s_FILE: got %q", s.name, got)
		}
	}

	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			// Both set: which one wins would be a guess, so neither does.
			_, err := load(t, minimal, env(s.name, secretValue(s.name), s.name+"_FILE", filepath.Join(dir, strings.ToLower(s.name))))
			if err == nil || !strings.Contains(err.Error(), s.name+" and "+s.name+"_FILE") {
				t.Errorf("both set: %v", err)
			}
			// A missing file is named.
			_, err = load(t, minimal, env(s.name+"_FILE", filepath.Join(dir, "nope")))
			if err == nil || !strings.Contains(err.Error(), s.name+"_FILE") {
				t.Errorf("missing file: %v", err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// Relative paths in the file are relative to the file, not to wherever the
// bot was started from.
func TestRelativePathsResolveAgainstTheConfigFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "rolloutbot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, filepath.Join(dir, "rolloutbot.yaml"), `state_dir: state
ssh:
  key_file: keys/id_ed25519
  known_hosts: /var/lib/rolloutbot/known_hosts
inventory:
  source: file
  file: ../hosts.csv
recipe:
  version: app version
  update: app update {version}
  health: app health
  rollback: app rollback {version}
`)
	c, err := config.Load(path, env())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); c.StateDir != want {
		t.Errorf("state_dir: %q, want %q", c.StateDir, want)
	}
	if want := filepath.Join(dir, "keys", "id_ed25519"); c.SSH.KeyFile != want {
		t.Errorf("ssh.key_file: %q, want %q", c.SSH.KeyFile, want)
	}
	if c.SSH.KnownHosts != "/var/lib/rolloutbot/known_hosts" {
		t.Errorf("absolute ssh.known_hosts changed: %q", c.SSH.KnownHosts)
	}
	if want := filepath.Join(filepath.Dir(dir), "hosts.csv"); c.Inventory.File != want {
		t.Errorf("inventory.file: %q, want %q", c.Inventory.File, want)
	}
	if want := "sqlite:" + filepath.Join(dir, "state", "rolloutbot.db"); c.Store() != want {
		t.Errorf("store: %q, want %q", c.Store(), want)
	}
	if c.Runner().KeyFile != filepath.Join(dir, "keys", "id_ed25519") {
		t.Errorf("runner key: %q", c.Runner().KeyFile)
	}
}

func TestValidateSlack(t *testing.T) {
	c := valid()
	err := c.ValidateSlack()
	for _, w := range []string{"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "slack.channel", "slack.admins"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not name %s", err, w)
		}
	}

	ok := func() config.Config {
		c := valid()
		c.Slack.BotToken, c.Slack.AppToken, c.Slack.Channel, c.Slack.Admins = "xoxb-1", "xapp-1", "C0OPS", []string{"U1"}
		return c
	}
	if c := ok(); c.ValidateSlack() != nil {
		t.Fatalf("complete: %v", c.ValidateSlack())
	}
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"no bot token", func(c *config.Config) { c.Slack.BotToken = "" }, "SLACK_BOT_TOKEN"},
		{"tokens swapped", func(c *config.Config) { c.Slack.BotToken, c.Slack.AppToken = c.Slack.AppToken, c.Slack.BotToken }, "SLACK_BOT_TOKEN"},
		{"no app token", func(c *config.Config) { c.Slack.AppToken = "" }, "SLACK_APP_TOKEN"},
		{"user token as app token", func(c *config.Config) { c.Slack.AppToken = "xoxp-1" }, "SLACK_APP_TOKEN"},
		{"no channel", func(c *config.Config) { c.Slack.Channel = "" }, "slack.channel"},
		{"no admins", func(c *config.Config) { c.Slack.Admins = nil }, "slack.admins"},
	} {
		c := ok()
		tc.change(&c)
		if err := c.ValidateSlack(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Admin groups or workspace admins are enough on their own.
	c = ok()
	c.Slack.Admins, c.Slack.AdminGroups = nil, []string{"S0OPS"}
	if err := c.ValidateSlack(); err != nil {
		t.Errorf("admin_groups: %v", err)
	}
	c.Slack.AdminGroups, c.Slack.WorkspaceAdmins = nil, true
	if err := c.ValidateSlack(); err != nil {
		t.Errorf("workspace_admins: %v", err)
	}
}

// YAML mistakes are all reported at once, each with its line and the
// setting's path, and a bad time zone under its own key.
func TestLoadReportsEverySettingAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	data := "rollout:\n  paus: 10s\n  concurrency: many\n  health_timeout: soon\nssh:\n  agent: maybe\nschedules:\n  - name: a\n    cron: \"0 3 * * *\"\n    timezone: Mars/Olympus\n    version: v1\n" +
		// Settings of an inlined group (the gates), and a map's keys and values.
		"rollout:\n  gate_timeout: later\n  gates: {ten: manual}\n  bake: 5m\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path, func(string) string { return "" })
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"line 2: rollout.paus: unknown setting (did you mean pause?)",
		`line 3: rollout.concurrency: "many" is not a whole number`,
		`line 4: rollout.health_timeout: "soon" is not a duration`,
		`line 6: ssh.agent: "maybe" is not true or false`,
		`line 13: rollout.gate_timeout: "later" is not a duration`,
		`line 14: rollout.gates: "ten" is not a whole number`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "config.Rollout") || strings.Contains(err.Error(), "time.Duration") {
		t.Errorf("the error names Go types:\n%v", err)
	}

	// Every invalid rollout setting, not only the first; the time zone under its own key.
	data = "rollout:\n  concurrency: 0\n  threshold: -5\n  pause: -1s\nschedules:\n  - name: a\n    cron: \"0 3 * * *\"\n    timezone: Mars/Olympus\n    version: v1\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path, func(string) string { return "" })
	for _, want := range []string{"rollout.concurrency: 0", "rollout.threshold: -5", "rollout.pause: -1s", "schedules[0].timezone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "schedules[0].cron") {
		t.Errorf("a bad time zone is reported under the cron spec:\n%v", err)
	}
}
