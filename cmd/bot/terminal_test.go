package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// The terminal as operators and scripts use it: exit codes, help, JSON,
// watching, and the inventory's input.

// Each exit code from the real program, and `rollout status` giving the
// state's code: 0 completed clean, 2 usage, 3 halted, 4 completed with
// failures, 6 nothing to do, 7 still active.
func TestCLIExitCodes(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 4})
	// Nothing yet: nothing to show, halt or resume.
	for _, args := range [][]string{{"rollout", "status"}, {"rollout", "halt"}, {"rollout", "resume"}, {"rollout", "watch"}} {
		out := f.mustRun(exitNothingToDo, args...)
		if !strings.Contains(out, "rolloutbot: ") {
			t.Errorf("%v says nothing on exit 6:\n%s", args, out)
		}
	}
	// Usage: no version, a setting the configuration would refuse, a bad -o.
	assertContains(t, "no version", f.mustRun(exitUsage, "rollout", "start"), "no version given")
	assertContains(t, "bad flags", f.mustRun(exitUsage, "rollout", "start", "v2", "--concurrency", "0", "--threshold", "-5", "--pause", "-1s"),
		"--concurrency: 0 must be between 1 and 10000", "--threshold: -5 must be a percent", "--pause: -1s must not be negative")
	assertContains(t, "plan bad flags", f.mustRun(exitUsage, "rollout", "plan", "v2", "--concurrency", "0"), "--concurrency: 0")
	assertContains(t, "bad -o", f.mustRun(exitUsage, "rollout", "history", "-o", "yaml"), `-o "yaml"`)
	f.assertNoRollouts("usage errors")
	f.assertFleetUntouched("usage errors")

	f.mustRun(exitOK, "rollout", "start", "v2")
	f.mustRun(exitOK, "rollout", "status")

	// One host fails its health check: completed with failures, 4.
	f.fleet.SetBehavior(0, fleetsim.HealthFails)
	assertContains(t, "start with a failure", f.mustRun(exitWithFailures, "rollout", "start", "v3", "--threshold", "100"), "completed, 1 failed")
	f.mustRun(exitWithFailures, "rollout", "status")

	// With a threshold of 0 the failure halts it: 3, and status says 3 too.
	assertContains(t, "start halted", f.mustRun(exitHalted, "rollout", "start", "v4", "--threshold", "0", "--stages", "100"), "halted")
	f.mustRun(exitHalted, "rollout", "status")
	f.mustRun(exitHalted, "rollout", "status", "-o", "json")

	// A running rollout's status is 7; the halt that stops it answers 0.
	g := newFixture(t, fixtureOptions{hosts: 3})
	g.fleet.Hold()
	driver := g.child("rollout", "start", "v2", "--concurrency", "1")
	g.waitUpdates(1)
	g.mustRun(exitActive, "rollout", "status")
	g.mustRun(exitOK, "rollout", "halt", "enough")
	g.fleet.Release()
	if code := driver.wait(t); code != exitHalted {
		t.Errorf("the halted driver exited %d, want 3:\n%s", code, driver.out.String())
	}
	g.mustRun(exitHalted, "rollout", "status")
}

// Every state's exit code, the failed one included (an internal error a
// test cannot cause from outside).
func TestOutcomeCodes(t *testing.T) {
	for _, tc := range []struct {
		phase  rollout.Phase
		undo   bool
		counts rollout.Counts
		goal   goal
		want   int
	}{
		{rollout.PhaseCompleted, false, rollout.Counts{Success: 3}, toComplete, exitOK},
		{rollout.PhaseCompleted, false, rollout.Counts{Success: 2, Skipped: 1}, toComplete, exitOK},
		{rollout.PhaseCompleted, false, rollout.Counts{Success: 2, RolledBack: 1}, toComplete, exitWithFailures},
		{rollout.PhaseCompleted, false, rollout.Counts{Success: 2, Failed: 1}, toComplete, exitWithFailures},
		{rollout.PhaseHalted, false, rollout.Counts{}, toComplete, exitHalted},
		{rollout.PhaseFailed, false, rollout.Counts{}, toComplete, exitFailed},
		{rollout.PhaseRunning, false, rollout.Counts{}, toComplete, exitActive},
		{rollout.PhasePaused, false, rollout.Counts{}, toComplete, exitActive},
		{rollout.PhaseRollingBack, true, rollout.Counts{}, toRollBack, exitActive},
		{rollout.PhaseRolledBack, true, rollout.Counts{}, toComplete, exitHalted},
		{rollout.PhaseRolledBack, true, rollout.Counts{Undo: rollout.UndoCounts{Restored: 3}}, toRollBack, exitOK},
		{rollout.PhaseRolledBack, true, rollout.Counts{Undo: rollout.UndoCounts{Restored: 2, Failed: 1}}, toRollBack, exitWithFailures},
		{rollout.PhaseHalted, true, rollout.Counts{}, toRollBack, exitHalted},
	} {
		r := &rollout.Rollout{Phase: tc.phase}
		if tc.undo {
			r.Undo = &rollout.Undo{By: "a"}
		}
		if got := exitCode(outcome(r, tc.counts, tc.goal)); got != tc.want {
			t.Errorf("%s (undo %v, %+v, goal %d): exit %d, want %d", tc.phase, tc.undo, tc.counts, tc.goal, got, tc.want)
		}
	}
	for err, want := range map[error]int{
		nil: exitOK, flag.ErrHelp: exitOK, errUsage: exitUsage, rollout.ErrNoVersion: exitUsage,
		rollout.ErrNotRunning: exitNothingToDo, rollout.ErrNotHalted: exitNothingToDo, errNothingToDo: exitNothingToDo,
		errors.New("boom"): exitError,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// walkCommands calls f with every command's path, groups included.
func walkCommands(path []string, cmds []command, f func(path []string, c command)) {
	for _, c := range cmds {
		p := append(append([]string{}, path...), c.name)
		f(p, c)
		walkCommands(p, c.sub, f)
	}
}

// --help on every command and group: exit 0, a usage line with the
// arguments, the command's own flags only, no internal defaults.
func TestCLIHelpOnEveryCommand(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 1})
	n := 0
	walkCommands(nil, commands(), func(path []string, c command) {
		for _, help := range []string{"--help", "-h"} {
			out, err := f.inProc(append(append([]string{}, path...), help)...)
			if exitCode(err) != exitOK {
				t.Errorf("%v %s: %v\n%s", path, help, err, out)
				continue
			}
			n++
			usage := "usage: rolloutbot " + strings.Join(path, " ")
			if c.sub != nil {
				usage += " COMMAND"
			} else if c.args != "" {
				usage += " " + c.args
			}
			if !strings.Contains(out, usage) {
				t.Errorf("%v %s does not show %q:\n%s", path, help, usage, out)
			}
			if strings.Contains(out, "default -1") || strings.Contains(out, "-1ns") {
				t.Errorf("%v %s shows an internal default:\n%s", path, help, out)
			}
		}
	})
	if n < 40 {
		t.Errorf("only %d helps shown", n)
	}
	// Each hosts command lists its own flags: only add has --port.
	for _, sub := range []string{"import", "list", "remove", "disable", "enable", "unpin"} {
		if out, _ := f.inProc("hosts", sub, "--help"); strings.Contains(out, "--port") || strings.Contains(out, "--label") {
			t.Errorf("hosts %s --help lists add's flags:\n%s", sub, out)
		}
	}
	assertContains(t, "hosts add --help", f.mustInProcCode(exitOK, "hosts", "add", "--help"), "--port PORT", "--label", "ADDRESS[:PORT]")
	assertContains(t, "rollout start --help", f.mustInProcCode(exitOK, "rollout", "start", "--help"),
		"--concurrency N", "(default: rollout.concurrency)", "--seed SEED", "--log-file FILE")
	assertContains(t, "rollout status --help", f.mustInProcCode(exitOK, "rollout", "status", "--help"), "-o, --output FORMAT", "--watch")

	// The real program: help on stdout, exit 0; the exit codes in the top help.
	for _, args := range [][]string{{"rollout", "--help"}, {"hosts", "--help"}, {"rollout", "start", "--help"}, {"hosts", "list", "-h"}} {
		f.mustRun(exitOK, args...)
	}
	assertContains(t, "--help", f.mustRun(exitOK, "--help"), "Exit codes:", "3  halted", "4  completed with failures",
		"5  failed", "6  nothing to do", "7  still active")
	out := f.mustRun(exitOK, "--version")
	if !regexp.MustCompile(`(?m)^rolloutbot \S+\ncommit \S+.*\ngo1\.\d+`).MatchString(out) {
		t.Errorf("--version:\n%s", out)
	}
	// A usage error names what is wrong and the usage line.
	assertContains(t, "bad flag", f.mustRun(exitUsage, "rollout", "start", "--bogus"), "flag provided but not defined: -bogus",
		"usage: rolloutbot rollout start [VERSION] [flags]")
}

// The shell completion scripts complete commands from the command tree.
func TestCLICompletion(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 1})
	script := f.mustInProc("completion", "bash")
	path := f.writeFile("completion.bash", script)
	complete := func(words ...string) string {
		t.Helper()
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _rolloutbot; echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", append([]string{"-c", script, "bash", path}, words...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"rolloutbot", "ro"}, "rollout"},
		{[]string{"rolloutbot", "rollout", "st"}, "start status"},
		{[]string{"rolloutbot", "hosts", "un"}, "unpin"},
		{[]string{"rolloutbot", "--config", "x.yaml", "rollout", "ha"}, "halt"},
		{[]string{"rolloutbot", "config", ""}, "check"},
	} {
		if got := complete(tc.words...); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
	zsh := f.mustInProc("completion", "zsh")
	if !strings.HasPrefix(zsh, "#compdef rolloutbot") || !strings.Contains(zsh, "bashcompinit") {
		t.Errorf("zsh completion:\n%s", zsh)
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command("zsh", "-n", f.writeFile("completion.zsh", zsh)).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	if out, err := f.inProc("completion", "fish"); !errors.Is(err, errUsage) {
		t.Errorf("completion fish: %v\n%s", err, out)
	}
}

// keys returns a JSON object's keys, sorted.
func keys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, raw)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func assertKeys(t *testing.T, what string, raw json.RawMessage, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := keys(t, raw); !reflect.DeepEqual(got, want) {
		t.Errorf("%s keys:\n got %v\nwant %v", what, got, want)
	}
}

var rolloutKeys = []string{"id", "version", "phase", "label", "outcome", "stage", "hosts", "counts", "seed", "settings", "started_by",
	"source", "owner", "lease_until", "created_at", "finished_at", "wait_until", "waiting_for", "halt", "rollback", "exit_code"}

var hostResultKeys = []string{"id", "address", "label", "index", "status", "step", "prev_version", "new_version", "error", "output",
	"started_at", "finished_at", "rollback"}

// -o json on every read command, in the documented shapes.
func TestCLIJSONOutput(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 4, extra: "schedules:\n  - {name: nightly, cron: \"0 3 * * *\", timezone: Europe/Berlin, version: v9}\n"})
	f.fleet.SetBehavior(1, fleetsim.HealthFails)
	f.mustRun(exitWithFailures, "rollout", "start", "v2", "--threshold", "100", "--seed", "42")
	failed := f.fleet.Hosts()[1].Name

	var st struct {
		Rollout  json.RawMessage   `json:"rollout"`
		Failures []json.RawMessage `json:"failures"`
	}
	out := f.mustInProcCode(exitWithFailures, "rollout", "status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	assertKeys(t, "status", json.RawMessage(out), "rollout", "failures")
	assertKeys(t, "status.rollout", st.Rollout, rolloutKeys...)
	var r struct {
		ID       int64  `json:"id"`
		Version  string `json:"version"`
		Phase    string `json:"phase"`
		Outcome  string `json:"outcome"`
		Seed     int64  `json:"seed"`
		ExitCode int    `json:"exit_code"`
		Counts   struct {
			Success, RolledBack int
		} `json:"counts"`
		Settings struct {
			Stages       []int   `json:"stages"`
			Threshold    int     `json:"threshold"`
			PauseSeconds float64 `json:"pause_seconds"`
		} `json:"settings"`
		Halt *struct{} `json:"halt"`
	}
	if err := json.Unmarshal(st.Rollout, &r); err != nil {
		t.Fatal(err)
	}
	var counts map[string]int
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(st.Rollout, &raw)
	_ = json.Unmarshal(raw["counts"], &counts)
	if r.ID != 1 || r.Version != "v2" || r.Phase != "completed" || !strings.HasPrefix(r.Outcome, "completed, 1 ") || r.Seed != 42 ||
		r.ExitCode != exitWithFailures || r.Settings.Threshold != 100 || !reflect.DeepEqual(r.Settings.Stages, []int{10, 50, 100}) ||
		r.Halt != nil || counts["success"] != 3 || counts["failed"]+counts["rolled_back"] != 1 {
		t.Errorf("status -o json: %+v %v\n%s", r, counts, out)
	}
	assertKeys(t, "counts", raw["counts"], "pending", "updating", "success", "skipped", "rolled_back", "failed")
	assertKeys(t, "settings", raw["settings"], "stages", "concurrency", "pause_seconds", "threshold")
	if len(st.Failures) != 1 {
		t.Fatalf("failures: %s", out)
	}
	assertKeys(t, "failures[0]", st.Failures[0], hostResultKeys...)
	var hr struct {
		ID, Status, Step, Error string
	}
	_ = json.Unmarshal(st.Failures[0], &hr)
	if hr.ID != failed || (hr.Status != "failed" && hr.Status != "rolled_back") || hr.Step == "" || hr.Error == "" {
		t.Errorf("failures[0]: %s", st.Failures[0])
	}
	// --failed gives the same shape; --host one host result.
	if out2 := f.mustInProcCode(exitWithFailures, "rollout", "status", "--failed", "-o", "json"); out2 != out {
		t.Errorf("status --failed -o json differs:\n%s", out2)
	}
	host := f.mustInProc("rollout", "status", "--host", failed, "-o", "json")
	assertKeys(t, "status --host", json.RawMessage(host), hostResultKeys...)

	// history: a list of rollouts.
	var hist []json.RawMessage
	if err := json.Unmarshal([]byte(f.mustInProc("rollout", "history", "-o", "json")), &hist); err != nil || len(hist) != 1 {
		t.Fatalf("history -o json: %v %d", err, len(hist))
	}
	assertKeys(t, "history[0]", hist[0], rolloutKeys...)

	// plan, and plan --rollback.
	plan := f.mustInProc("rollout", "plan", "v3", "--output", "json")
	assertKeys(t, "plan", json.RawMessage(plan), "version", "hosts", "settings", "stages")
	var p struct {
		Hosts  int               `json:"hosts"`
		Stages []json.RawMessage `json:"stages"`
	}
	_ = json.Unmarshal([]byte(plan), &p)
	if p.Hosts != 4 || len(p.Stages) != 3 {
		t.Fatalf("plan: %s", plan)
	}
	assertKeys(t, "plan.stages[0]", p.Stages[0], "percent", "hosts", "first", "last", "halts_at")
	assertKeys(t, "plan --rollback", json.RawMessage(f.mustInProc("rollout", "plan", "--rollback", "-o", "json")),
		"rollout", "version", "hosts", "back", "recheck")

	// hosts list.
	var hosts []json.RawMessage
	if err := json.Unmarshal([]byte(f.mustInProc("hosts", "list", "-o", "json")), &hosts); err != nil || len(hosts) != 4 {
		t.Fatalf("hosts list -o json: %v %d", err, len(hosts))
	}
	assertKeys(t, "hosts[0]", hosts[0], "id", "address", "port", "user", "label", "disabled")

	// schedules: the configured one, with its next run.
	var scheds []map[string]any
	if err := json.Unmarshal([]byte(f.mustInProc("schedules", "-o", "json")), &scheds); err != nil || len(scheds) != 1 {
		t.Fatalf("schedules -o json: %v %v", err, scheds)
	}
	if s := scheds[0]; s["name"] != "nightly" || s["cron"] != "0 3 * * *" || s["timezone"] != "Europe/Berlin" || s["next"] == nil {
		t.Errorf("schedules: %v", s)
	}
	want := []string{"id", "name", "cron", "timezone", "version", "created_by", "source", "next"}
	b, _ := json.Marshal(scheds[0])
	assertKeys(t, "schedules[0]", b, want...)
}

// mustInProcCode runs a command in this process that must exit with code.
func (f *fixture) mustInProcCode(code int, args ...string) string {
	f.t.Helper()
	out, err := f.inProc(args...)
	if got := exitCode(err); got != code {
		f.t.Fatalf("rolloutbot %s: exit %d (%v), want %d\n%s", strings.Join(args, " "), got, err, code, out)
	}
	return out
}

// rollout watch follows a rollout another process drives, to its end, and
// exits with its state's code; status --watch is the same.
func TestCLIWatch(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 6})
	f.fleet.Hold()
	driver := f.child("rollout", "start", "v2", "--concurrency", "1")
	f.waitUpdates(1)
	watcher := f.child("rollout", "watch")
	other := f.child("rollout", "status", "--watch")
	f.waitOutput("rollout #1: v2 to 6 hosts", watcher, other)
	f.fleet.Release()
	for _, c := range []*child{driver, watcher, other} {
		if code := c.wait(t); code != exitOK {
			t.Fatalf("exited %d:\n%s", code, c.out.String())
		}
	}
	for _, c := range []*child{watcher, other} {
		// The stages that passed between two reads of the store are shown
		// too, in order.
		assertContains(t, "watch", c.out.String(), "rollout #1: v2 to 6 hosts", "▶ stage 10%", "✓ stage 10% done: 1 host, 0 failed",
			"▶ stage 50%", "✓ stage 50% done: 2 hosts", "▶ stage 100%", "✓ stage 100% done: 3 hosts", "■ rollout #1 completed", "rollout #1: v2, completed")
	}
	if f.fleet.Totals().Updates != 6 {
		t.Errorf("%d updates: a watcher drove the rollout", f.fleet.Totals().Updates)
	}

	// A halt while watching: the watcher ends with the halt, exit 3.
	driver = f.child("rollout", "start", "v3", "--concurrency", "1", "--pause", "30s")
	f.waitUpdates(7)
	watcher = f.child("rollout", "watch")
	f.mustRun(exitOK, "rollout", "halt", "watch this")
	if code := watcher.wait(t); code != exitHalted {
		t.Errorf("watch of a halted rollout exited %d:\n%s", code, watcher.out.String())
	}
	// The watcher may come in before the halt, or once it is asked for, or settled.
	assertContains(t, "watch of a halt", watcher.out.String(), "watch this", "halted by")
	driver.wait(t)
	// An ended rollout (--id): its final state at once.
	assertContains(t, "watch --id 1", f.mustRun(exitOK, "rollout", "watch", "--id", "1"), "rollout #1: v2, completed")
	f.mustRun(exitUsage, "rollout", "status", "--watch", "-o", "json")
}

// A watch says when the driver it follows lets its lease run out (stopped
// here with SIGSTOP), and when it renews it; then it follows the rollout to
// its end.
func TestCLIWatchStalledDriver(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2, lease: time.Second})
	f.fleet.Hold()
	driver := f.child("rollout", "start", "v2", "--concurrency", "1")
	f.waitUpdates(1)
	watcher := f.child("rollout", "watch")
	f.waitOutput("rollout #1: v2 to 2 hosts", watcher)
	driver.signal(t, syscall.SIGSTOP)
	f.waitOutput("let its lease run out", watcher)
	driver.signal(t, syscall.SIGCONT)
	f.waitOutput("renewed its lease and goes on", watcher)
	f.fleet.Release()
	for _, c := range []*child{driver, watcher} {
		if code := c.wait(t); code != exitOK {
			t.Fatalf("exited %d:\n%s", code, c.out.String())
		}
	}
	out := watcher.out.String()
	assertContains(t, "watch", out, "its driver ", "it goes on if that process comes back", "■ rollout #1 completed")
	if n := strings.Count(out, "let its lease run out"); n != 1 {
		t.Errorf("the stall shown %d times:\n%s", n, out)
	}
}

// config check opens no store and connects nowhere; --connect does.
func TestCLIConfigCheckWithoutSideEffects(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2})
	state := filepath.Join(f.dir, "state")
	assertContains(t, "config check", f.mustRun(exitOK, "config", "check"), "configuration is valid", "SQLite")
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("config check created state_dir %s: %v", state, err)
	}
	f.assertFleetUntouched("config check")
	// Not even a production database is touched without --connect.
	f.env = []string{"DATABASE_URL=postgres://bob:s3cret@127.0.0.1:1/x"}
	assertContains(t, "config check with DATABASE_URL", f.mustRun(exitOK, "config", "check"), "PostgreSQL (DATABASE_URL)")
	out := f.mustRun(exitError, "config", "check", "--connect")
	assertContains(t, "--connect to nowhere", out, "DATABASE_URL", "127.0.0.1")
	if strings.Contains(out, "s3cret") {
		t.Errorf("the password is shown:\n%s", out)
	}
	f.env = nil
	assertContains(t, "--connect", f.mustRun(exitOK, "config", "check", "--connect"), "✓ store: sqlite", "✓ ssh: logged in to", "host key verified")
	if st := f.fleet.Totals(); st.Connections == 0 || st.Updates != 0 {
		t.Errorf("--connect: %+v", st)
	}

	// A state_dir that cannot be made is named.
	file := f.writeFile("not-a-dir", "x")
	data, _ := os.ReadFile(f.cfg)
	f.writeFile("other.yaml", strings.Replace(string(data), "state_dir: state", "state_dir: "+filepath.Join(file, "state"), 1))
	if out, err := f.inProc("config", "check", "--config", filepath.Join(f.dir, "other.yaml")); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("config check with state_dir under a file: %v\n%s", err, out)
	}
	if os.Geteuid() != 0 { // root may write anywhere
		ro := filepath.Join(f.dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		f.writeFile("ro.yaml", strings.Replace(string(data), "state_dir: state", "state_dir: "+filepath.Join(ro, "state"), 1))
		if out, err := f.inProc("config", "check", "--config", filepath.Join(f.dir, "ro.yaml")); err == nil ||
			!strings.Contains(err.Error(), "state_dir") || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("config check with a read-only state_dir parent: %v\n%s", err, out)
		}
	}
}

// The inventory's input: address:port, [v6]:port, a BOM, an empty file, an
// unknown extension; several ids removed at once; unpin of an unknown name.
func TestCLIInventoryInput(t *testing.T) {
	f := cliStoreFixture(t)
	bom := f.writeFile("bom.csv", "\ufeffid,address,port\nweb-1,10.0.0.9:2222,\nweb-2,[2001:db8::1]:2200,\nweb-3,10.0.0.3,\n")
	assertContains(t, "import", f.mustInProc("hosts", "import", bom), "imported 3 hosts")
	list := f.mustInProc("hosts", "list")
	assertContains(t, "hosts list", list, "10.0.0.9:2222", "[2001:db8::1]:2200", "10.0.0.3:22", "3 hosts")
	if strings.Contains(list, "[10.0.0.9:2222]") {
		t.Errorf("address:port stored as an address:\n%s", list)
	}
	assertContains(t, "add with a port", f.mustInProc("hosts", "add", "web-4", "10.0.0.4:2022"), "added web-4 (10.0.0.4:2022)")
	if out, err := f.inProc("hosts", "add", "web-5", "10.0.0.5:2022", "--port", "22"); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Errorf("add with two ports: %v\n%s", err, out)
	}
	before := f.mustInProc("hosts", "list")
	for name, data := range map[string]string{"empty.csv": "", "header.csv": "id,address\n", "empty.yaml": "hosts: []\n", "hosts.json": `[{"id":"x","address":"10.1.1.1"}]`} {
		out, err := f.inProc("hosts", "import", f.writeFile(name, data))
		if err == nil || strings.Contains(out, "imported") {
			t.Errorf("%s imported: %v\n%s", name, err, out)
		}
	}
	if _, err := f.inProc("hosts", "import", filepath.Join(f.dir, "hosts.json")); err == nil || !strings.Contains(err.Error(), "not .csv, .yaml or .yml") {
		t.Errorf(".json: %v", err)
	}
	if _, err := f.inProc("hosts", "import", filepath.Join(f.dir, "empty.csv")); err == nil || !strings.Contains(err.Error(), "has no hosts: nothing imported") {
		t.Errorf("empty: %v", err)
	}
	// The real program: exit 1.
	f.mustRun(exitError, "hosts", "import", filepath.Join(f.dir, "header.csv"))

	// remove: several at once, or none when one is unknown.
	if out, err := f.inProc("hosts", "remove", "web-1", "nope", "web-2"); err == nil || !strings.Contains(err.Error(), "no host nope") ||
		!strings.Contains(err.Error(), "none removed") {
		t.Errorf("remove with an unknown id: %v\n%s", err, out)
	}
	if after := f.mustInProc("hosts", "list"); after != before {
		t.Errorf("a refused remove changed hosts:\n%s", after)
	}
	assertContains(t, "remove", f.mustInProc("hosts", "remove", "web-1", "web-2"), "removed 2 hosts: web-1, web-2")
	assertContains(t, "list", f.mustInProc("hosts", "list"), "2 hosts")
	assertContains(t, "remove one", f.mustInProc("hosts", "remove", "web-4"), "removed 1 host: web-4")
	assertContains(t, "list", f.mustInProc("hosts", "list"), "1 host\n")
	f.mustRun(exitUsage, "hosts", "remove")

	// unpin: an unknown name fails.
	if out, err := f.inProc("hosts", "unpin", "10.9.9.9:22"); err == nil || !strings.Contains(err.Error(), "no host key is pinned") {
		t.Errorf("unpin of an unknown name: %v\n%s", err, out)
	}
	f.mustRun(exitError, "hosts", "unpin", "web-3")
	assertContains(t, "import one", f.mustInProc("hosts", "import", f.writeFile("one.yaml", "- {id: one, address: 10.0.0.77}\n")), "imported 1 host from")
}

// unpin forgets a key pinned on first use, by address:port or host id.
func TestCLIUnpinPinnedKey(t *testing.T) {
	f := cliStoreFixture(t)
	db := f.store()
	if _, err := db.PinHostKey(context.Background(), "10.0.0.1:22", "ssh-ed25519 AAAA"); err != nil {
		t.Fatal(err)
	}
	f.mustInProc("hosts", "add", "web-1", "10.0.0.1")
	assertContains(t, "unpin by id", f.mustInProc("hosts", "unpin", "web-1"), "forgot the pinned host key of 10.0.0.1:22")
	if _, err := f.inProc("hosts", "unpin", "web-1"); err == nil {
		t.Error("a second unpin succeeded")
	}
}

// An address several hosts of a rollout share is refused by --host, naming
// them; an id or address:port picks one.
func TestCLIStatusHostAmbiguous(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 3})
	f.mustRun(exitOK, "rollout", "start", "v2")
	h := f.fleet.Hosts()
	out, err := f.inProc("rollout", "status", "--host", "127.0.0.1")
	if !errors.Is(err, errUsage) {
		t.Fatalf("status --host 127.0.0.1: %v\n%s", err, out)
	}
	for _, x := range h {
		if !strings.Contains(out, x.Name) {
			t.Errorf("the matches do not name %s:\n%s", x.Name, out)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(h[1].Port)
	assertContains(t, "--host address:port", f.mustInProc("rollout", "status", "--host", addr), h[1].Name+" ("+addr)
	assertContains(t, "--host id", f.mustInProc("rollout", "status", h[2].Name), h[2].Name+" (")
}

// status shows the seed; start --seed N gives the same order again.
func TestCLISeedReproducesTheOrder(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 8})
	f.mustRun(exitOK, "rollout", "start", "v2", "--seed", "1234")
	assertContains(t, "status", f.mustRun(exitOK, "rollout", "status"), "seed 1234", "--seed 1234")
	f.mustRun(exitOK, "rollout", "start", "v3", "--seed", "1234")
	f.mustRun(exitOK, "rollout", "start", "v4", "--seed", "99")
	order := func(id int64) []string {
		rs, err := f.store().HostResults(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].Index < rs[j].Index })
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.Host.ID)
		}
		return ids
	}
	if a, b := order(1), order(2); !reflect.DeepEqual(a, b) {
		t.Errorf("seed 1234 gave two orders:\n%v\n%v", a, b)
	}
	if a, c := order(1), order(3); reflect.DeepEqual(a, c) {
		t.Errorf("seeds 1234 and 99 gave one order: %v", a)
	}
	f.mustRun(exitUsage, "rollout", "start", "v5", "--seed", "x")
}

// A second halt says the rollout is halted already, by whom and why, and
// keeps the first reason; the wording never says "halted: halted by".
func TestCLISecondHalt(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 4})
	f.fleet.Hold()
	driver := f.child("rollout", "start", "v2", "--concurrency", "1")
	f.waitUpdates(1)
	f.mustRun(exitOK, "rollout", "halt", "first", "reason")
	// Halting, not yet halted: the second is told so, and the first reason stays.
	if out, err := f.inProc("rollout", "halt", "second"); err == nil || !strings.Contains(out+err.Error(), "first reason") {
		t.Logf("second halt while halting: %v\n%s", err, out)
	}
	f.fleet.Release()
	driver.wait(t)
	out := f.mustRun(exitNothingToDo, "rollout", "halt", "third")
	assertContains(t, "halt of a halted rollout", out, "rollout #1 is already halted, by ", `("first reason")`, "the first halt is kept")
	status := f.mustRun(exitHalted, "rollout", "status")
	assertContains(t, "status", status, "halted by", "first reason")
	for _, o := range []string{out, status, driver.out.String()} {
		if strings.Contains(o, "halted: halted by") || strings.Contains(o, "third") {
			t.Errorf("wording:\n%s", o)
		}
	}
}

// The demo explains its symbols and points to no command on the store it
// deletes.
func TestCLIDemoExplainsItself(t *testing.T) {
	var out syncBuffer
	m := &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := m.Run(ctx, []string{"demo", "--hosts", "60", "--fail", "0.3", "--pause", "0s", "--latency", "1ms"})
	if err != nil && !silent(err) {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	assertContains(t, "demo", s, "✓ updated", "↷ skipped", "↺ rolled back", "✗ failed", "⋯ in flight", "removed at the end")
	if strings.Contains(s, "rollout status --failed") {
		t.Errorf("the demo suggests a command on the store it deletes:\n%s", s)
	}
}

// The systemd unit's documented check runs as the service does: its user,
// its env file (the secrets), its state directory.
func TestDeployUnitCheckStepLoadsTheEnvFile(t *testing.T) {
	unit := string(deployRead(t, deployFile(t, "rolloutbot.service")))
	i := strings.Index(unit, "config check --serve")
	if i < 0 {
		t.Fatal("the unit documents no config check step")
	}
	j := strings.LastIndex(unit[:i], "systemd-run")
	if j < 0 {
		t.Fatalf("the check step is not run by systemd-run, with the unit's environment:\n%s", unit[max(0, i-300):i])
	}
	step := unit[j:i]
	for _, want := range []string{"-p User=rolloutbot", "-p EnvironmentFile=/etc/rolloutbot/env", "-p StateDirectory=rolloutbot"} {
		if !strings.Contains(step, want) {
			t.Errorf("the check step lacks %q:\n%s", want, step)
		}
	}
}

// --log-file takes every log line; the terminal keeps warnings and errors.
func TestCLILogFile(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 3})
	path := filepath.Join(f.dir, "rollout.log")
	out := f.mustRun(exitOK, "rollout", "start", "v2", "--log-file", path)
	if strings.Contains(out, "level=INFO") {
		t.Errorf("info lines on the terminal with --log-file:\n%s", out)
	}
	assertContains(t, "output", out, "■ rollout #1 completed")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, "the log file", string(data), `msg="rollout started"`, `msg="rollout ended"`, "rollout_id=1")
	f.mustRun(exitUsage, "rollout", "resume", "--log-file", filepath.Join(f.dir, "no", "such", "dir", "x.log"))
}
