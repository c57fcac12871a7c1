package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// tmuxPane runs rolloutbot in a real terminal: a tmux session of its own
// (scripts/deps.sh installs tmux), read back with capture-pane.
type tmuxPane struct {
	t    *testing.T
	sock string
	raw  string // every byte the program wrote to the terminal
}

func startTmux(t *testing.T, f *fixture, env string, args ...string) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is not installed: CI must install it (scripts/deps.sh does)")
		}
		t.Skip("tmux is not installed (scripts/deps.sh installs it)")
	}
	p := &tmuxPane{t: t, sock: filepath.Join(f.dir, "tmux.sock"), raw: filepath.Join(f.dir, "terminal.raw")}
	gate := filepath.Join(f.dir, "go")
	quoted := []string{"'" + os.Args[0] + "'"}
	for _, a := range append(args, "--config", f.cfg) {
		quoted = append(quoted, "'"+a+"'")
	}
	// The program starts once the pane's output is piped to a file (the
	// gate file appears); the pane stays after it, showing its exit code.
	shell := fmt.Sprintf("until [ -e '%s' ]; do sleep 0.05; done; env -u NO_COLOR ROLLOUTBOT_RUN_MAIN=1 %s %s; echo EXIT=$?; sleep 600",
		gate, env, strings.Join(quoted, " "))
	p.tmux("-f", "/dev/null", "new-session", "-d", "-x", "150", "-y", "45", "-s", "rb", shell)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", p.sock, "kill-server").Run() })
	p.tmux("pipe-pane", "-t", "rb", "-o", "cat >> '"+p.raw+"'")
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the terminal shows now.
func (p *tmuxPane) screen() string { return p.tmux("capture-pane", "-p", "-t", "rb") }

// until polls the screen, at most 60 s, until ok says it is done; check
// sees every screen on the way.
func (p *tmuxPane) until(what string, ok func(string) bool, check func(string)) string {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s := p.screen()
		if check != nil {
			check(s)
		}
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the terminal never showed %s:\n%s", what, s)
		}
		<-tick.C
	}
}

var (
	barLine = regexp.MustCompile(`^\[[█░]{30}\] \d+/\d+  stage \d+%  ✓\d+ ↷\d+ ↺\d+ ✗\d+  ⋯\d+ in flight  (\S+)$`)
	exitRE  = regexp.MustCompile(`EXIT=(\d+)`)
)

// bar returns the progress bar's line on screen s and its clock, and fails
// the test on any line where the bar and something else got mixed.
func bar(t *testing.T, s string) (string, bool) {
	t.Helper()
	var found string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, " ")
		if !strings.ContainsAny(line, "█░") {
			continue
		}
		m := barLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("a broken progress bar line: %q\nscreen:\n%s", line, s)
			continue
		}
		found = m[1]
	}
	return found, found != ""
}

// In a real terminal the progress bar stays whole while log lines and host
// failures flow above it, and its clock goes on during a pause, when no
// event comes. Under TERM=dumb and NO_COLOR the progress is plain lines.
func TestTerminalUnderTmux(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 12, latency: 5 * time.Millisecond, extra: "log:\n  level: debug\n"})
	for i := range 3 {
		f.fleet.SetBehavior(i, fleetsim.UpdateFails)
	}
	// One pause, long enough for a loaded machine to see the clock move.
	p := startTmux(t, f, "TERM=xterm-256color", "rollout", "start", "v2", "--stages", "10,100", "--pause", "5s",
		"--concurrency", "2", "--threshold", "100", "--seed", "5")
	check := func(s string) { bar(t, s) }

	// The pause: the screen has no new event for 5 s, but the clock moves.
	s := p.until("the pause", func(s string) bool { return strings.Contains(s, "pausing 5s before the next stage") }, check)
	first, ok := bar(t, s)
	if !ok {
		t.Fatalf("no progress bar during the pause:\n%s", s)
	}
	p.until("the clock ticking during the pause", func(s string) bool {
		clock, ok := bar(t, s)
		return ok && clock != first && !strings.Contains(s, "stage 100%: hosts")
	}, check)

	end := p.until("the end", func(s string) bool { return exitRE.MatchString(s) }, check)
	if m := exitRE.FindStringSubmatch(end); m[1] != fmt.Sprint(exitWithFailures) {
		t.Errorf("exit %s, want %d:\n%s", m[1], exitWithFailures, end)
	}
	// Logs went above the bar (debug shows them), as did the failed hosts.
	assertContains(t, "the terminal", end, `msg="stage started"`, "↺ sim-", "■ rollout #1 completed, 3 ")
	if raw, _ := os.ReadFile(p.raw); !strings.Contains(string(raw), "\r\x1b[K[") {
		t.Errorf("the bar was not drawn in place:\n%q", raw)
	}

	// Plain lines where the terminal cannot redraw: no bar drawn in place.
	for _, env := range []string{"TERM=dumb", "TERM=xterm NO_COLOR=1"} {
		t.Run(env, func(t *testing.T) {
			g := newFixture(t, fixtureOptions{hosts: 4})
			p := startTmux(t, g, env, "rollout", "start", "v2")
			end := p.until("the end", func(s string) bool { return exitRE.MatchString(s) }, nil)
			assertContains(t, env, end, "■ rollout #1 completed", "EXIT=0")
			raw, err := os.ReadFile(p.raw)
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(string(raw), "\x1b") || strings.Contains(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\r") {
				t.Errorf("redraws on a terminal that cannot take them:\n%q", raw)
			}
		})
	}
}
