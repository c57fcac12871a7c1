package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"
)

// command is one terminal command: what dispatch, --help and the shell
// completions know of it. Adding a command is one entry in a table below.
type command struct {
	name    string
	args    string // the positional arguments, for the usage line: "VERSION", "[REASON]"
	summary string // one line, for the command list
	run     func(m *Main, ctx context.Context, args []string) error
	sub     []command // a group's commands (rollout, hosts, config)
}

// commands is the program's command tree.
func commands() []command {
	return []command{
		{name: "serve", summary: "run the Slack bot, the scheduler and the ops HTTP endpoints", run: (*Main).serve},
		{name: "demo", summary: "a rollout against a simulated fleet on this machine (no Slack, no setup)", run: (*Main).demo},
		{name: "rollout", summary: "start, follow, halt, resume and roll back rollouts from the terminal", sub: rolloutCommands()},
		{name: "hosts", summary: "the store's inventory", sub: hostsCommands()},
		{name: "freeze", args: "[REASON | list]", summary: "freeze rollouts (--for D | --until T): none starts, a running one waits at its next stage; alone or with list: the freezes in effect and to come", run: (*Main).freezeCmd},
		{name: "unfreeze", args: "[ID]", summary: "end the freezes in effect (or freeze ID)", run: (*Main).unfreezeCmd},
		{name: "schedules", summary: "the schedules: configured and added in Slack, with their next run", run: (*Main).schedules},
		{name: "migrate", summary: "apply the store's migrations", run: (*Main).migrate},
		{name: "config", summary: "the configuration", sub: []command{
			{name: "check", summary: "validate the configuration without side effects (--connect: also try the store, Slack and SSH)", run: (*Main).configCheck},
		}},
		{name: "simulate", summary: "serve a simulated SSH fleet on loopback, for manual tries and benchmarks", run: (*Main).simulate},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script", run: (*Main).completion},
		{name: "version", summary: "print the version, the commit and the Go version", run: (*Main).version},
	}
}

func rolloutCommands() []command {
	return []command{
		{name: "start", args: "[VERSION]", summary: "start a rollout and follow it here (break-glass when Slack is down)", run: (*Main).rolloutStart},
		{name: "plan", args: "[VERSION]", summary: "show the stages and the failures that would halt each (--rollback: what a rollback would do)", run: (*Main).rolloutPlan},
		{name: "status", args: "[HOST]", summary: "the current or last rollout (--failed, --host HOST, --id N, --watch)", run: (*Main).rolloutStatus},
		{name: "watch", args: "", summary: "follow the active (or --id N) rollout live, whoever drives it; same as status --watch", run: (*Main).rolloutWatch},
		{name: "halt", args: "[REASON]", summary: "halt the running rollout, or rollback", run: (*Main).rolloutHalt},
		{name: "resume", summary: "continue a halted rollout or rollback, or one whose driver died", run: (*Main).rolloutResume},
		{name: "rollback", args: "[REASON]", summary: "put back every host the latest rollout (or --id N) changed, and follow it", run: (*Main).rolloutRollback},
		{name: "promote", summary: "promote the rollout waiting at a manual gate to its next stage; one held by a freeze or outside the windows goes on (audited)", run: (*Main).rolloutPromote},
		{name: "history", args: "[N]", summary: "the last rollouts", run: (*Main).rolloutHistory},
	}
}

func hostsCommands() []command {
	return []command{
		{name: "import", args: "FILE", summary: "add or replace hosts from a .csv, .yaml or .yml file (all or nothing)", run: (*Main).hostsImport},
		{name: "list", summary: "list the hosts", run: (*Main).hostsList},
		{name: "add", args: "ID ADDRESS[:PORT]", summary: "add or replace one host", run: (*Main).hostsAdd},
		{name: "remove", args: "ID...", summary: "remove hosts (all or none)", run: (*Main).hostsRemove},
		{name: "disable", args: "ID", summary: "leave a host out of new rollouts", run: (*Main).hostsDisable},
		{name: "enable", args: "ID", summary: "take a disabled host back in", run: (*Main).hostsEnable},
		{name: "unpin", args: "HOST:PORT", summary: "forget a host key pinned on first use (after you checked the new one)", run: (*Main).hostsUnpin},
	}
}

// findCommand returns the command at path ("rollout start"), if any.
func findCommand(path string) (command, bool) {
	cmds := commands()
	var c command
	for _, name := range strings.Fields(path) {
		found := false
		for _, cc := range cmds {
			if cc.name == name {
				c, cmds, found = cc, cc.sub, true
				break
			}
		}
		if !found {
			return command{}, false
		}
	}
	return c, c.name != ""
}

const usageFooter = `Every command takes --config FILE (default: $ROLLOUTBOT_CONFIG, else ./rolloutbot.yaml if present)
and --help. Secrets come from the environment, each also as NAME_FILE: DATABASE_URL,
SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SSH_KEY_PASSPHRASE, INVENTORY_DATABASE_URL.

Exit codes:
  0  done: the rollout completed with no failed host (a rollback: every host put back)
  1  error: refused, or something failed before or around the rollout (the message says what)
  2  usage: an unknown command, flag or argument, or a value the configuration would refuse
  3  halted: the rollout was halted (by someone, or by its failure threshold) or rolled back
  4  completed with failures: some hosts failed or were rolled back (a rollback: not all put back)
  5  failed: the rollout ended on an internal error
  6  nothing to do: nothing to halt, resume or show
  7  still active: the rollout runs on (status of a running rollout; a follow stopped by Ctrl-C)
`

// groupUsage writes the usage of a command group: its commands, one a line.
func groupUsage(w io.Writer, path string, cmds []command) {
	if path == "" {
		fmt.Fprint(w, "rolloutbot — staged rollouts to a fleet of VPSs over SSH, driven from Slack\n\n")
		fmt.Fprint(w, "usage: rolloutbot COMMAND [flags]\n       rolloutbot --version\n\n")
	} else {
		fmt.Fprintf(w, "usage: rolloutbot %s COMMAND [flags]\n\n", path)
	}
	var lines [][2]string
	for _, c := range cmds {
		if c.sub != nil && path == "" {
			for _, s := range c.sub {
				lines = append(lines, [2]string{strings.TrimSpace(c.name + " " + s.name + " " + s.args), s.summary})
			}
			continue
		}
		lines = append(lines, [2]string{strings.TrimSpace(c.name + " " + c.args), c.summary})
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l[0], l[1])
	}
	fmt.Fprintln(w)
	if path == "" {
		fmt.Fprint(w, usageFooter)
	} else {
		fmt.Fprintf(w, "`rolloutbot %s COMMAND --help` shows a command's flags; `rolloutbot --help` the exit codes.\n", path)
	}
}

// dispatch runs the command args name within cmds (the group at path).
func (m *Main) dispatch(ctx context.Context, path string, cmds []command, args []string) error {
	if len(args) == 0 {
		groupUsage(m.Stderr, path, cmds)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		groupUsage(m.Stdout, path, cmds)
		return nil
	case "-version", "--version":
		if path == "" {
			return m.version(ctx, args[1:])
		}
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		if c.sub != nil {
			return m.dispatch(ctx, strings.TrimSpace(path+" "+c.name), c.sub, args[1:])
		}
		return c.run(m, ctx, args[1:])
	}
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	fmt.Fprintf(m.Stderr, "rolloutbot%s: unknown command %q (%s)\n\n", prefixed(" ", path), args[0], strings.Join(names, ", "))
	groupUsage(m.Stderr, path, cmds)
	return errUsage
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// commandHelp writes a command's --help: its usage line, what it does, and
// its flags with their defaults (none shown where the configuration decides).
func commandHelp(w io.Writer, path string, fs *flag.FlagSet) {
	c, _ := findCommand(path)
	fmt.Fprintf(w, "usage: rolloutbot %s [flags]\n", strings.TrimSpace(path+" "+c.args))
	if c.summary != "" {
		fmt.Fprintf(w, "\n%s\n", c.summary)
	}
	fmt.Fprint(w, "\nflags:\n")
	var lines [][2]string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" {
			return
		}
		kind, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if f.Name == "output" {
			name = "-o, --output"
		}
		if f.Name == "o" {
			return
		}
		if kind != "" {
			name += " " + kind
		}
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		lines = append(lines, [2]string{name, usage})
	})
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l[0], l[1])
	}
}

// version prints what this binary is: its module version, commit and Go.
func (m *Main) version(_ context.Context, args []string) error {
	fs, _ := m.flags("version")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	v, commit, goVersion := "(unknown)", "(unknown)", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v, goVersion = bi.Main.Version, bi.GoVersion
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified {
			commit += " (modified)"
		}
	}
	fmt.Fprintf(m.Stdout, "rolloutbot %s\ncommit %s\n%s\n", v, commit, goVersion)
	return nil
}

// completion prints a bash or zsh completion script made from the command
// tree, so it stays true as commands come and go.
func (m *Main) completion(_ context.Context, args []string) error {
	fs, _ := m.flags("completion")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		return fmt.Errorf("%w: completion takes bash or zsh", errUsage)
	}
	// words maps "", "rollout", "hosts", … to the words that may follow.
	words := map[string][]string{}
	var walk func(path string, cmds []command)
	walk = func(path string, cmds []command) {
		for _, c := range cmds {
			words[path] = append(words[path], c.name)
			if c.sub != nil {
				walk(strings.TrimSpace(path+" "+c.name), c.sub)
			}
		}
	}
	walk("", commands())
	words[""] = append(words[""], "--help", "--version")
	keys := make([]string, 0, len(words))
	for k := range words {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cases strings.Builder
	for _, k := range keys {
		pattern := "''"
		if k != "" {
			pattern = strings.ReplaceAll(k, " ", "_")
		}
		fmt.Fprintf(&cases, "    %s) words=%q ;;\n", pattern, strings.Join(words[k], " "))
	}
	const flagsWord = `--config --help -o --output`
	script := completionBash
	if pos[0] == "zsh" {
		script = "#compdef rolloutbot\nautoload -U +X bashcompinit && bashcompinit\n" + completionBash
	}
	fmt.Fprint(m.Stdout, strings.NewReplacer("@CASES@", cases.String(), "@FLAGS@", flagsWord).Replace(script))
	return nil
}

// completionBash completes commands and sub-commands, then the common flags
// and file names. zsh runs it through bashcompinit.
const completionBash = `# rolloutbot completion; load with: source <(rolloutbot completion bash)
_rolloutbot() {
  local cur cmdpath words i
  cur="${COMP_WORDS[COMP_CWORD]}"
  cmdpath=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      --config|-config|-o|--output|-output) ((i++)) ;;
      -*) ;;
      *) cmdpath="${cmdpath:+${cmdpath}_}${COMP_WORDS[i]}" ;;
    esac
  done
  case "$cmdpath" in
@CASES@    *) words="" ;;
  esac
  if [[ -z "$words" || "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "@FLAGS@" -- "$cur") $(compgen -f -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  fi
}
complete -F _rolloutbot rolloutbot
`
