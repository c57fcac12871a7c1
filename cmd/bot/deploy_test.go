package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// The tests below keep deploy/ honest: they fail when a deploy file stops
// matching the program it deploys.

// deployConfigPath is where the Dockerfile, the systemd unit and compose all
// put the configuration.
const deployConfigPath = "/etc/rolloutbot/rolloutbot.yaml"

// deploySecrets are the environment variables config.Load reads secrets
// from, each also as NAME_FILE.
var deploySecrets = []string{"DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SSH_KEY_PASSPHRASE", "INVENTORY_DATABASE_URL",
	"ROLLOUTBOT_WEB_SECRET"}

// deployBotScopes are the Slack bot scopes SLACK.md asks for, no more.
var deployBotScopes = []string{"commands", "chat:write", "chat:write.public", "pins:write", "users:read",
	"usergroups:read", "channels:read", "groups:read"}

func deployFile(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(deployRoot(t), "deploy", name)
}

// deployRoot is the repository root (the tests run in cmd/bot).
func deployRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

func deployRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deployYAMLKeys returns the dotted YAML keys of a configuration type's
// settings (leaves only; a list of structs contributes list.field).
func deployYAMLKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if opts == "inline" {
			keys = append(keys, deployYAMLKeys(f.Type, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			keys = append(keys, deployYAMLKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// deploySecretFields returns the configuration's string fields that YAML
// never sets (yaml:"-"): the secrets.
func deploySecretFields(v reflect.Value) map[string]string {
	out := map[string]string{}
	for f, fv := range v.Fields() {
		switch {
		case f.Tag.Get("yaml") == "-":
			out[f.Name] = fv.String()
		case fv.Kind() == reflect.Struct:
			for k, s := range deploySecretFields(fv) {
				out[f.Name+"."+k] = s
			}
		}
	}
	return out
}

// deployWalkYAML calls visit for every mapping key of a parsed YAML document
// with its dotted path; the items of a sequence share the sequence's path.
// parent is the sequence item a key opens, if it is the item's first key.
func deployWalkYAML(n *yaml.Node, prefix string, visit func(path string, key, parent *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			deployWalkYAML(c, prefix, visit)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item.Kind == yaml.MappingNode && len(item.Content) > 0 {
				visit(prefix+item.Content[0].Value, item.Content[0], item)
				deployWalkYAML(item.Content[1], prefix+item.Content[0].Value+".", visit)
				rest := &yaml.Node{Kind: yaml.MappingNode, Content: item.Content[2:]}
				deployWalkYAML(rest, prefix, visit)
				continue
			}
			deployWalkYAML(item, prefix, visit)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			visit(prefix+k.Value, k, nil)
			deployWalkYAML(v, prefix+k.Value+".", visit)
		}
	}
}

func deployEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// The example configuration loads and validates as it is, sets and explains
// every setting, names every secret, and passes `config check --serve` once
// the files it names exist.
func TestDeployExampleConfig(t *testing.T) {
	path := deployFile(t, "rolloutbot.example.yaml")
	text := deployRead(t, path)

	cfg, err := config.Load(path, deployEnv(nil))
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	for _, p := range []string{cfg.StateDir, cfg.SSH.KeyFile, cfg.SSH.KnownHosts} {
		if !filepath.IsAbs(p) || strings.HasPrefix(p, filepath.Dir(path)) {
			t.Errorf("the example's path %q should be absolute (relative paths resolve next to the config file)", p)
		}
	}
	// config.Validate does not parse cron specs or time zones; serve does.
	if len(cfg.Schedules) == 0 {
		t.Error("the example has no schedule")
	}
	for _, s := range cfg.Schedules {
		if _, _, err := schedule.Parse(s.Cron, s.Timezone); err != nil {
			t.Errorf("schedule %s: %v", s.Name, err)
		}
		if s.Version == "" && cfg.Rollout.LatestVersionCommand == "" {
			t.Errorf("schedule %s names no version and there is no latest_version_command", s.Name)
		}
	}

	t.Run("every setting is in the example, with a comment", func(t *testing.T) {
		var doc yaml.Node
		if err := yaml.Unmarshal(text, &doc); err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		deployWalkYAML(&doc, "", func(path string, key, parent *yaml.Node) {
			present[path] = true
			documented := key.HeadComment != "" || key.LineComment != ""
			if parent != nil {
				documented = documented || parent.HeadComment != ""
			}
			if !documented {
				t.Errorf("line %d: %s has no comment saying what it does", key.Line, path)
			}
		})
		for _, k := range deployYAMLKeys(reflect.TypeFor[config.Config](), "") {
			if !present[k] {
				t.Errorf("setting %s is not in deploy/rolloutbot.example.yaml: add it, with a comment", k)
			}
		}
	})

	t.Run("every secret is documented and read", func(t *testing.T) {
		envExample := string(deployRead(t, deployFile(t, "env.example")))
		for _, name := range append(slices.Clone(deploySecrets), "SLACK_API_URL") {
			if !bytes.Contains(text, []byte(name)) {
				t.Errorf("the example's secrets comment does not name %s", name)
			}
			if !regexp.MustCompile(`(?m)^#?` + name + `=`).MatchString(envExample) {
				t.Errorf("env.example has no %s= line", name)
			}
		}
		if !bytes.Contains(text, []byte("_FILE")) {
			t.Error("the example does not say secrets may come from NAME_FILE")
		}
		if !bytes.Contains(text, []byte("https://slack-gov.com/api/")) {
			t.Error("the example does not give GovSlack's API URL")
		}
		// Each documented secret lands in one of the fields YAML cannot set,
		// from NAME and from NAME_FILE, and there are no others.
		dir := t.TempDir()
		values := map[string]string{
			"DATABASE_URL": "postgres://bot@db/rolloutbot", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1",
			"SSH_KEY_PASSPHRASE": "passphrase", "INVENTORY_DATABASE_URL": "postgres://ro@app/app",
			"ROLLOUTBOT_WEB_SECRET": "web-secret-of-at-least-32-characters",
		}
		direct, viaFile := map[string]string{}, map[string]string{}
		for _, name := range deploySecrets {
			direct[name] = values[name]
			file := filepath.Join(dir, name)
			if err := os.WriteFile(file, []byte(values[name]+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			viaFile[name+"_FILE"] = file
		}
		for how, env := range map[string]map[string]string{"NAME": direct, "NAME_FILE": viaFile} {
			c, err := config.Load(path, deployEnv(env))
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			fields := deploySecretFields(reflect.ValueOf(*c))
			if len(fields) != len(deploySecrets) {
				t.Errorf("config.Config has %d secret fields %v, the deploy files document %d: document the new one",
					len(fields), fields, len(deploySecrets))
			}
			got := slices.Sorted(func(yield func(string) bool) {
				for _, v := range fields {
					if !yield(v) {
						return
					}
				}
			})
			want := slices.Sorted(func(yield func(string) bool) {
				for _, v := range values {
					if !yield(v) {
						return
					}
				}
			})
			if !slices.Equal(got, want) {
				t.Errorf("%s: the secrets read are %v, want %v", how, got, want)
			}
		}
	})

	t.Run("config check --serve", func(t *testing.T) {
		// The example names files under /etc/rolloutbot and state in
		// /var/lib/rolloutbot; a copy points them into a temporary directory
		// with a real key and known_hosts.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fleet, err := fleetsim.Start(ctx, fleetsim.Options{Hosts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer fleet.Close()
		dir := t.TempDir()
		if err := fleet.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "client_ed25519"), filepath.Join(dir, "id_ed25519")); err != nil {
			t.Fatal(err)
		}
		s := string(text)
		for from, to := range map[string]string{"/etc/rolloutbot/": dir + "/", "/var/lib/rolloutbot": filepath.Join(dir, "state")} {
			if !strings.Contains(s, from) {
				t.Fatalf("the example no longer mentions %s; update this test", from)
			}
			s = strings.ReplaceAll(s, from, to)
		}
		copyPath := filepath.Join(dir, "rolloutbot.yaml")
		if err := os.WriteFile(copyPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: deployEnv(map[string]string{
			"SLACK_BOT_TOKEN": "xoxb-0000-0000-test", "SLACK_APP_TOKEN": "xapp-1-A000-0000-test",
		})}
		if err := m.Run(ctx, []string{"config", "check", "--serve", "--config", copyPath}); err != nil {
			t.Fatalf("config check: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		out := stdout.String()
		if !strings.Contains(out, "configuration is valid") {
			t.Errorf("config check output:\n%s", out)
		}
		for _, sc := range cfg.Schedules {
			if !strings.Contains(out, sc.Name) {
				t.Errorf("config check does not list schedule %s:\n%s", sc.Name, out)
			}
		}
	})
}

// The Slack app manifest is YAML Slack accepts, for Socket Mode, with
// /rollout, interactivity and exactly the scopes the bot uses.
func TestDeploySlackManifest(t *testing.T) {
	raw := deployRead(t, deployFile(t, "slack-app-manifest.yaml"))
	var m struct {
		DisplayInformation struct {
			Name        string `yaml:"name"`
			Description string `yaml:"description"`
		} `yaml:"display_information"`
		Features struct {
			BotUser struct {
				DisplayName string `yaml:"display_name"`
			} `yaml:"bot_user"`
			SlashCommands []struct {
				Command      string `yaml:"command"`
				Description  string `yaml:"description"`
				UsageHint    string `yaml:"usage_hint"`
				ShouldEscape *bool  `yaml:"should_escape"`
				URL          string `yaml:"url"`
			} `yaml:"slash_commands"`
		} `yaml:"features"`
		OAuthConfig struct {
			Scopes struct {
				Bot  []string `yaml:"bot"`
				User []string `yaml:"user"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			Interactivity struct {
				IsEnabled  bool   `yaml:"is_enabled"`
				RequestURL string `yaml:"request_url"`
			} `yaml:"interactivity"`
			OrgDeployEnabled     *bool `yaml:"org_deploy_enabled"`
			SocketModeEnabled    bool  `yaml:"socket_mode_enabled"`
			TokenRotationEnabled *bool `yaml:"token_rotation_enabled"`
		} `yaml:"settings"`
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("the manifest is not YAML: %v", err)
	}
	if m.DisplayInformation.Name == "" || m.Features.BotUser.DisplayName == "" {
		t.Error("the manifest needs display_information.name and features.bot_user.display_name")
	}
	if n := len(m.DisplayInformation.Description); n > 140 {
		t.Errorf("display_information.description is %d characters; Slack allows 140", n)
	}
	if !m.Settings.SocketModeEnabled {
		t.Error("settings.socket_mode_enabled is not true")
	}
	if !m.Settings.Interactivity.IsEnabled {
		t.Error("settings.interactivity.is_enabled is not true (the Halt and Resume buttons)")
	}
	if p := m.Settings.OrgDeployEnabled; p == nil || *p {
		t.Error("settings.org_deploy_enabled should be false")
	}
	if p := m.Settings.TokenRotationEnabled; p == nil || *p {
		t.Error("settings.token_rotation_enabled should be false (the bot keeps one xoxb- token)")
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/rollout" {
		t.Fatalf("slash commands: %+v, want /rollout only", m.Features.SlashCommands)
	}
	cmd := m.Features.SlashCommands[0]
	if cmd.Description == "" || cmd.ShouldEscape == nil || *cmd.ShouldEscape {
		t.Errorf("/rollout needs a description and should_escape: false: %+v", cmd)
	}
	for _, sub := range []string{"start", "plan", "status", "halt", "resume", "rollback", "history", "hosts", "schedule", "help"} {
		if !strings.Contains(cmd.UsageHint, sub) {
			t.Errorf("/rollout usage_hint %q does not mention %s", cmd.UsageHint, sub)
		}
	}
	got, want := slices.Sorted(slices.Values(m.OAuthConfig.Scopes.Bot)), slices.Sorted(slices.Values(deployBotScopes))
	if !slices.Equal(got, want) {
		t.Errorf("bot scopes %v, want exactly %v", m.OAuthConfig.Scopes.Bot, deployBotScopes)
	}
	if len(m.OAuthConfig.Scopes.User) > 0 {
		t.Errorf("user scopes %v: the bot needs none", m.OAuthConfig.Scopes.User)
	}
	// Socket Mode needs no public endpoint: no request URL anywhere.
	if bytes.Contains(raw, []byte("request_url")) || cmd.URL != "" {
		t.Error("the manifest has a request URL; Socket Mode needs none")
	}
}

// deployGoBuild is a `go build` command line: environment, flags (but -o),
// output and packages.
type deployGoBuild struct {
	env      []string
	flags    []string
	output   string
	packages []string
}

// deployValueFlags are go build's flags that take a value.
var deployValueFlags = map[string]bool{"-o": true, "-ldflags": true, "-gcflags": true, "-asmflags": true, "-tags": true,
	"-mod": true, "-modfile": true, "-p": true, "-pkgdir": true, "-installsuffix": true, "-buildmode": true,
	"-compiler": true, "-gccgoflags": true, "-overlay": true, "-pgo": true, "-C": true, "-toolexec": true, "-buildvcs": false}

func deployParseGoBuild(words []string) (deployGoBuild, error) {
	var b deployGoBuild
	envRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	for len(words) > 0 && envRE.MatchString(words[0]) {
		b.env, words = append(b.env, words[0]), words[1:]
	}
	if len(words) < 2 || (words[0] != "go" && !strings.HasSuffix(words[0], "/go")) || words[1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", words)
	}
	for words = words[2:]; len(words) > 0; words = words[1:] {
		w := words[0]
		if !strings.HasPrefix(w, "-") {
			b.packages = append(b.packages, w)
			continue
		}
		name, value, hasValue := strings.Cut(strings.Replace(w, "--", "-", 1), "=")
		if !hasValue && deployValueFlags[name] {
			if len(words) < 2 {
				return b, fmt.Errorf("%s has no value", name)
			}
			value, hasValue, words = words[1], true, words[1:]
		}
		switch {
		case name == "-o":
			b.output = value
		case hasValue:
			b.flags = append(b.flags, name+"="+value)
		default:
			b.flags = append(b.flags, name)
		}
	}
	return b, nil
}

// deployShellWords splits a command line as sh would, for the quoting
// Makefiles and Dockerfiles use (no expansions).
func deployShellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", c, s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// deployMakeTarget returns the recipe lines of a Makefile target, with
// $(VAR) expanded from the Makefile's own assignments.
func deployMakeTarget(t *testing.T, makefile []byte, target string) []string {
	t.Helper()
	vars := map[string]string{}
	assignRE := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)
	var recipe []string
	inTarget := false
	sc := bufio.NewScanner(bytes.NewReader(makefile))
	for sc.Scan() {
		line := sc.Text()
		if m := assignRE.FindStringSubmatch(line); m != nil {
			v, _, _ := strings.Cut(m[2], "#")
			vars[m[1]] = strings.TrimSpace(v)
			continue
		}
		switch {
		case strings.HasPrefix(line, target+":"):
			inTarget = true
		case inTarget && strings.HasPrefix(line, "\t"):
			recipe = append(recipe, strings.TrimSpace(line))
		case inTarget:
			inTarget = false
		}
	}
	if len(recipe) == 0 {
		t.Fatalf("the Makefile has no %s target", target)
	}
	varRE := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for i := range recipe {
		for range 5 { // variables may name variables
			recipe[i] = varRE.ReplaceAllStringFunc(recipe[i], func(ref string) string {
				return vars[varRE.FindStringSubmatch(ref)[1]]
			})
		}
	}
	return recipe
}

// deployInstruction is one Dockerfile instruction, continuation lines joined.
type deployInstruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
}

func deployDockerfile(t *testing.T, raw []byte) []deployInstruction {
	t.Helper()
	var out []deployInstruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, deployInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// The Dockerfile builds with the Makefile's image-build flags, and what
// those flags build is a static, stripped binary that runs.
func TestDeployImageBuild(t *testing.T) {
	root := deployRoot(t)
	mk := deployMakeTarget(t, deployRead(t, filepath.Join(root, "Makefile")), "image-build")
	var makeBuild deployGoBuild
	for _, line := range mk {
		words, err := deployShellWords(line)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := deployParseGoBuild(words); err == nil {
			makeBuild = b
		}
	}
	if makeBuild.packages == nil {
		t.Fatalf("the Makefile's image-build target has no go build: %q", mk)
	}

	instrs := deployDockerfile(t, deployRead(t, deployFile(t, "Dockerfile")))
	var dockerBuild *deployGoBuild
	var stages [][]deployInstruction
	for _, in := range instrs {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words, err := deployShellWords(in.args)
		if err != nil {
			t.Fatal(err)
		}
		for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN --mount=…
			words = words[1:]
		}
		b, err := deployParseGoBuild(words)
		if err != nil {
			t.Fatalf("Dockerfile: %v", err)
		}
		if dockerBuild != nil {
			t.Fatal("the Dockerfile has two go build steps")
		}
		dockerBuild = &b
	}
	if dockerBuild == nil {
		t.Fatal("the Dockerfile has no go build step")
	}
	if !slices.Equal(dockerBuild.env, makeBuild.env) || !slices.Equal(dockerBuild.flags, makeBuild.flags) ||
		!slices.Equal(dockerBuild.packages, makeBuild.packages) {
		t.Errorf("the Dockerfile builds with %+v, the Makefile's image-build with %+v: keep them the same", *dockerBuild, makeBuild)
	}
	if !slices.Contains(makeBuild.env, "CGO_ENABLED=0") {
		t.Errorf("image-build does not set CGO_ENABLED=0: %v", makeBuild.env)
	}

	t.Run("runtime stage", func(t *testing.T) {
		if len(stages) < 2 {
			t.Fatalf("the Dockerfile has %d stages, want a build and a runtime stage", len(stages))
		}
		final := map[string][]string{}
		for _, in := range stages[len(stages)-1] {
			final[in.cmd] = append(final[in.cmd], in.args)
		}
		if !slices.ContainsFunc(final["COPY"], func(a string) bool {
			return strings.Contains(a, "--from=") && strings.Contains(a, dockerBuild.output+" /rolloutbot")
		}) {
			t.Errorf("the runtime stage does not copy %s to /rolloutbot: %q", dockerBuild.output, final["COPY"])
		}
		user := ""
		if u := final["USER"]; len(u) > 0 {
			user = u[len(u)-1]
		} else if from := final["FROM"]; len(from) > 0 && strings.HasSuffix(strings.Fields(from[0])[0], ":nonroot") {
			user = "nonroot"
		}
		if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
			t.Errorf("the image runs as %q, want a non-root user", user)
		}
		if !slices.Contains(final["EXPOSE"], "9090") {
			t.Errorf("EXPOSE %v, want 9090", final["EXPOSE"])
		}
		if got := final["ENTRYPOINT"]; len(got) != 1 || got[0] != `["/rolloutbot"]` {
			t.Errorf("ENTRYPOINT %q, want [\"/rolloutbot\"]", got)
		}
		want := fmt.Sprintf(`["serve", "--config", "%s"]`, deployConfigPath)
		if got := final["CMD"]; len(got) != 1 || strings.ReplaceAll(got[0], " ", "") != strings.ReplaceAll(want, " ", "") {
			t.Errorf("CMD %q, want %s", got, want)
		}
	})

	t.Run("static binary", func(t *testing.T) {
		if testing.Short() {
			t.Skip("builds the binary")
		}
		gocmd, err := exec.LookPath("go")
		if err != nil {
			t.Skip("no go command:", err)
		}
		bin := filepath.Join(t.TempDir(), "rolloutbot")
		args := []string{"build"}
		for _, f := range makeBuild.flags {
			name, value, ok := strings.Cut(f, "=")
			if ok && deployValueFlags[name] {
				args = append(args, name, value)
			} else {
				args = append(args, f)
			}
		}
		args = append(append(args, "-o", bin), makeBuild.packages...)
		build := exec.Command(gocmd, args...)
		build.Dir = root
		build.Env = append(os.Environ(), makeBuild.env...)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v\n%s", makeBuild.env, args, err, out)
		}

		out, err := exec.Command(bin, "help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "usage: rolloutbot COMMAND") || !strings.Contains(string(out), "serve") {
			t.Fatalf("rolloutbot help: %v\n%s", err, out)
		}

		data := deployRead(t, bin)
		if bytes.Contains(data, []byte(root+string(filepath.Separator))) {
			t.Errorf("the binary holds the build directory %s: -trimpath did not apply", root)
		}
		if runtime.GOOS != "linux" {
			t.Skipf("ELF checks on linux only, not %s", runtime.GOOS)
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("the binary has a %s program header: it is dynamically linked", p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("the binary needs %v", libs)
		}
		for _, s := range f.Sections {
			if s.Name == ".symtab" || strings.Contains(s.Name, "debug_") {
				t.Errorf("the binary has section %s: -ldflags \"-s -w\" did not apply", s.Name)
			}
		}
	})
}

// deployUnit reads a systemd unit's [Service] settings (the last value of a
// repeated key wins, as for most keys).
func deployUnit(raw []byte) map[string][]string {
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			out[section+"."+strings.TrimSpace(k)] = append(out[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

// deploySystemdDuration parses a systemd time span: "45", "45s", "1min 30s".
func deploySystemdDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	r := strings.NewReplacer(" ", "", "min", "m", "sec", "s", "hour", "h", "msec", "ms")
	return time.ParseDuration(r.Replace(s))
}

func deployLast(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// The systemd unit runs serve with the configuration the other deploy files
// use, as its own user, hardened, and gives a SIGTERM time to finish.
func TestDeploySystemdUnit(t *testing.T) {
	u := deployUnit(deployRead(t, deployFile(t, "rolloutbot.service")))
	start := strings.Fields(deployLast(u["Service.ExecStart"]))
	if want := []string{"/usr/local/bin/rolloutbot", "serve", "--config", deployConfigPath}; !slices.Equal(start, want) {
		t.Errorf("ExecStart %q, want %q", start, want)
	}
	stop, err := deploySystemdDuration(deployLast(u["Service.TimeoutStopSec"]))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	grace := config.Default().Rollout.Grace
	example, err := config.Load(deployFile(t, "rolloutbot.example.yaml"), deployEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]time.Duration{"the default shutdown_grace": grace, "the example's shutdown_grace": example.Rollout.Grace} {
		if stop <= g {
			t.Errorf("TimeoutStopSec=%s is not longer than %s (%s): systemd would kill hosts in flight", stop, name, g)
		}
	}
	if got := deployLast(u["Service.StateDirectory"]); "/var/lib/"+got != example.StateDir {
		t.Errorf("StateDirectory=%s, but the example's state_dir is %s", got, example.StateDir)
	}
	for key, want := range map[string]string{
		"Unit.After": "network-online.target", "Service.User": "rolloutbot", "Service.EnvironmentFile": "/etc/rolloutbot/env",
		"Service.Restart": "on-failure", "Service.KillSignal": "SIGTERM", "Service.NoNewPrivileges": "yes",
		"Service.ProtectSystem": "strict", "Service.ProtectHome": "read-only", "Service.PrivateTmp": "yes",
		"Install.WantedBy": "multi-user.target",
	} {
		if got := deployLast(u[key]); !strings.Contains(got, want) {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
}

// Compose runs the image from deploy/Dockerfile against a healthy
// PostgreSQL, with the configuration where the image looks for it, and
// gives a stop time to finish.
func TestDeployCompose(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			DependsOn map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Environment     map[string]string `yaml:"environment"`
			EnvFile         any               `yaml:"env_file"`
			Volumes         []string          `yaml:"volumes"`
			Ports           []string          `yaml:"ports"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
			Healthcheck     struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	path := deployFile(t, "compose.yaml")
	if err := yaml.Unmarshal(deployRead(t, path), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	db, bot := c.Services["postgres"], c.Services["rolloutbot"]
	if !strings.HasPrefix(db.Image, "postgres:") || len(db.Healthcheck.Test) == 0 {
		t.Errorf("postgres: image %q, healthcheck %q", db.Image, db.Healthcheck.Test)
	}
	if !slices.ContainsFunc(db.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/var/lib/postgresql/data") }) {
		t.Errorf("postgres keeps no data volume: %q", db.Volumes)
	}
	df := filepath.Join(filepath.Dir(path), bot.Build.Context, bot.Build.Dockerfile)
	if _, err := os.Stat(df); err != nil || filepath.Clean(df) != deployFile(t, "Dockerfile") {
		t.Errorf("rolloutbot builds %s (context %s), want deploy/Dockerfile from the repository root", df, bot.Build.Context)
	}
	if bot.DependsOn["postgres"].Condition != "service_healthy" {
		t.Errorf("rolloutbot depends_on %+v, want postgres healthy", bot.DependsOn)
	}
	if u := bot.Environment["DATABASE_URL"]; !strings.HasPrefix(u, "postgres://") || !strings.Contains(u, "@postgres:5432/") {
		t.Errorf("DATABASE_URL %q does not point at the postgres service", u)
	}
	if bot.EnvFile == nil {
		t.Error("rolloutbot takes no env_file with the secrets")
	}
	for _, target := range []string{deployConfigPath, "/etc/rolloutbot/id_ed25519", "/etc/rolloutbot/known_hosts"} {
		if !slices.ContainsFunc(bot.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+target+":ro") }) {
			t.Errorf("rolloutbot does not mount %s read-only: %q", target, bot.Volumes)
		}
	}
	if !slices.ContainsFunc(bot.Ports, func(p string) bool { return strings.HasSuffix(p, ":9090") }) {
		t.Errorf("rolloutbot ports %q, want 9090", bot.Ports)
	}
	stop, err := time.ParseDuration(bot.StopGracePeriod)
	if err != nil || stop <= config.Default().Rollout.Grace {
		t.Errorf("stop_grace_period %q is not longer than the default shutdown_grace %s", bot.StopGracePeriod, config.Default().Rollout.Grace)
	}
}
