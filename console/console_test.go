package console_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// script is a small rollout of 4 hosts, stages 50/100, as the engine reports
// it: one host rolled back in the first stage, 0.6 s between events.
func script() []rollout.Event {
	t0 := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	r := rollout.Rollout{ID: 3, Version: "v2.4.1", Hosts: 4, Seed: 7, Phase: rollout.PhaseRunning,
		Settings: rollout.Settings{Stages: []int{50, 100}, Concurrency: 2, Threshold: 30}}
	stages := r.StageList()
	var evs []rollout.Event
	c := rollout.Counts{Pending: 4}
	at := t0
	add := func(kind rollout.EventKind, host *rollout.HostResult, st rollout.Stage, fails int) {
		evs = append(evs, rollout.Event{Kind: kind, At: at, Host: host, Stage: st,
			Progress: rollout.Progress{Rollout: r, Stages: stages, Counts: c, StageFailures: fails}})
		at = at.Add(600 * time.Millisecond)
	}
	done := func(id string, s rollout.Status, errText, out string) *rollout.HostResult {
		c.Pending--
		c.Add(s, 1)
		return &rollout.HostResult{Host: rollout.Host{ID: id}, Status: s, Step: rollout.StepHealth, Error: errText, Output: out}
	}
	add(rollout.EventStarted, nil, rollout.Stage{}, 0)
	add(rollout.EventStageStarted, nil, stages[0], 0)
	add(rollout.EventHostDone, done("vps-a", rollout.StatusSuccess, "", ""), stages[0], 0)
	add(rollout.EventHostDone, done("vps-b", rollout.StatusRolledBack, "health failed: exited with status 1", "starting\nport 443 closed\n"), stages[0], 1)
	add(rollout.EventStageDone, nil, stages[0], 1)
	r.Stage = 1
	add(rollout.EventStageStarted, nil, stages[1], 0)
	add(rollout.EventHostDone, done("vps-c", rollout.StatusSuccess, "", ""), stages[1], 0)
	add(rollout.EventHostDone, done("vps-d", rollout.StatusSuccess, "", ""), stages[1], 0)
	add(rollout.EventStageDone, nil, stages[1], 0)
	r.Phase = rollout.PhaseCompleted
	add(rollout.EventEnded, nil, rollout.Stage{}, 0)
	return evs
}

func play(tty bool) string {
	var out bytes.Buffer
	p := console.NewProgress(&out, tty)
	for _, ev := range script() {
		p.Notify(ev)
	}
	p.Finish()
	return out.String()
}

// Off a terminal (a log, a pipe): event lines, a progress line every 2 s of
// the rollout, no escape codes, and the outcome at the end.
func TestProgressPlain(t *testing.T) {
	got := play(false)
	if strings.Contains(got, "\x1b") || strings.Contains(got, "\r") {
		t.Errorf("terminal codes off a terminal:\n%q", got)
	}
	for _, want := range []string{
		"rollout #3: v2.4.1 to 4 hosts (stages 50/100 %, 2 at once, halt above 30% failed per stage), seed 7\n",
		"▶ stage 50%: hosts 1–2 of 4, halts at 1 failed\n",
		"  ↺ vps-b rolled back at health: health failed: exited with status 1 | port 443 closed\n",
		"✓ stage 50% done: 2 hosts, 1 failed; fleet: 1 updated, 1 rolled back, 2 not started\n",
		"■ rollout #3 completed, 1 rolled back — 3 updated, 1 rolled back in 5.4s\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// The events span 5.4 s: progress lines at 2 s and 4 s, none at the end.
	if n := strings.Count(got, "] "); n != 2 {
		t.Errorf("%d progress lines, want 2 (one per 2 s):\n%s", n, got)
	}
	if strings.Contains(got, "vps-a") {
		t.Errorf("a successful host got a line of its own:\n%s", got)
	}
}

// On a terminal the bar is redrawn in place under the event lines, and
// Finish leaves the cursor on a fresh line.
func TestProgressTerminal(t *testing.T) {
	got := play(true)
	if !strings.Contains(got, "\r\x1b[K[") {
		t.Fatalf("no bar drawn in place:\n%q", got)
	}
	// An event line first clears the bar it replaces.
	if !strings.Contains(got, "\r\x1b[K  ↺ vps-b rolled back") {
		t.Errorf("the failure line does not clear the bar:\n%q", got)
	}
	last := got[strings.LastIndex(got, "\r\x1b[K"):]
	if !strings.HasPrefix(last, "\r\x1b[K■ rollout #3 completed") || !strings.HasSuffix(got, "\n") {
		t.Errorf("the end: %q", last)
	}
	if strings.Contains(got, "[██████████████████████████████] 4/4") == false {
		t.Errorf("the full bar is never drawn:\n%q", got)
	}
}

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"two\nlines  and\ttabs", 40, "two lines and tabs"},
		{"abcdefghij", 5, "abcd…"},
		{"héllo wörld", 6, "héllo…"},
	} {
		if got := console.Clip(tt.in, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	r := &rollout.Rollout{ID: 9, Version: "v3", Hosts: 3, Phase: rollout.PhaseHalted, StartedBy: "alice", Source: rollout.SourceCLI,
		Settings: rollout.Settings{Stages: []int{10, 50, 100}}, Stage: 1,
		CreatedAt: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), FinishedAt: time.Date(2026, 11, 27, 3, 1, 30, 0, time.UTC)}
	var results []rollout.HostResult
	for i, s := range []rollout.Status{rollout.StatusSuccess, rollout.StatusFailed, rollout.StatusRolledBack} {
		results = append(results, rollout.HostResult{Index: i, Host: rollout.Host{ID: "h" + string(rune('0'+i))}, Status: s,
			Step: rollout.StepUpdate, Error: "update failed: exited with status 2"})
	}
	var out bytes.Buffer
	console.WriteStatus(&out, r, results, 1, time.Now())
	got := out.String()
	for _, want := range []string{"rollout #9: v3, halted", "ended after 1m30s", "hosts: 3 — 1 updated, 1 rolled back, 1 failed",
		"failures (2):", "✗ h1", "… and 1 more (rolloutbot rollout status --failed)"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "h2") {
		t.Errorf("the limit of 1 failure listed is not kept:\n%s", got)
	}
}

// The status of a running rollout whose driver let its lease run out says
// so, and how it goes on; one with a live lease, or nobody's, does not.
func TestWriteStatusOfAStalledDriver(t *testing.T) {
	now := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		owner   string
		until   time.Time
		stalled bool
	}{
		{"lease live", "bot-a:41", now.Add(5 * time.Second), false},
		{"lease ran out", "bot-a:41", now.Add(-40 * time.Second), true},
		{"nobody holds it", "", time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rollout.Rollout{ID: 3, Version: "v2", Hosts: 2, Phase: rollout.PhaseRunning, Settings: rollout.Settings{Stages: []int{100}},
				Owner: tc.owner, LeaseUntil: tc.until, CreatedAt: now.Add(-time.Minute)}
			var out bytes.Buffer
			console.WriteStatus(&out, r, nil, 0, now)
			said := strings.Contains(out.String(), "its driver bot-a:41 let its lease run out 40s ago: it stopped, froze or lost the store")
			if said != tc.stalled {
				t.Errorf("stalled line shown %v, want %v:\n%s", said, tc.stalled, out.String())
			}
		})
	}
}

// undoScript is the rollback of a completed rollout of 4 hosts, as the
// engine reports it: one put back, one whose rollback failed, one changed by
// hand and left alone, one already back.
func undoScript() []rollout.Event {
	t0 := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	r := rollout.Rollout{ID: 12, Version: "v2", Hosts: 4, Phase: rollout.PhaseRollingBack,
		Settings: rollout.Settings{Stages: []int{100}, Concurrency: 2, Threshold: 30},
		Undo:     &rollout.Undo{By: "alice", Reason: "bad metrics", At: t0, Epoch: 2}}
	stages := r.StageList()
	c := rollout.Counts{Success: 4, Undo: rollout.UndoCounts{Pending: 4}}
	var evs []rollout.Event
	at := t0
	add := func(kind rollout.EventKind, host *rollout.HostResult) {
		evs = append(evs, rollout.Event{Kind: kind, At: at, Host: host, Stage: stages[0],
			Progress: rollout.Progress{Rollout: r, Stages: stages, Counts: c}})
		at = at.Add(500 * time.Millisecond)
	}
	done := func(id string, s rollout.UndoStatus, errText, out string) *rollout.HostResult {
		c.Undo.Pending--
		c.Undo.Add(s, 1)
		return &rollout.HostResult{Host: rollout.Host{ID: id}, Status: rollout.StatusRolledBack, Step: rollout.StepHealth,
			Error: "health failed in the rollout", PrevVersion: "v1", NewVersion: "v2",
			Undo: rollout.UndoResult{Status: s, Error: errText, Output: out}}
	}
	add(rollout.EventStarted, nil)
	add(rollout.EventUndoStarted, nil)
	add(rollout.EventHostDone, done("vps-a", rollout.UndoRestored, "", ""))
	add(rollout.EventHostDone, done("vps-b", rollout.UndoFailed, "rollback to v1 failed: exited with status 2", "no such version\n"))
	add(rollout.EventHostDone, done("vps-c", rollout.UndoLeft, "runs v9, not v2 as the rollout left it: changed by hand? left alone", ""))
	add(rollout.EventHostDone, done("vps-d", rollout.UndoNotNeeded, "", ""))
	r.Phase = rollout.PhaseRolledBack
	add(rollout.EventEnded, nil)
	return evs
}

// A rollback's progress: who asked and why, what it puts back, each host it
// could not put back or left alone with why, and its outcome; nothing of the
// rollout's own host failures, and a bar that counts the rollback.
func TestProgressOfARollback(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out bytes.Buffer
		p := console.NewProgress(&out, tty)
		for _, ev := range undoScript() {
			p.Notify(ev)
		}
		p.Finish()
		got := out.String()
		for _, want := range []string{
			"rollout #12 (v2): rollback asked by alice: bad metrics\n",
			"↩ rolling back #12 (v2): 4 hosts to put back, newest first, 2 at once\n",
			"  ✗ vps-b not put back on v1: rollback to v1 failed: exited with status 2 | no such version\n",
			"  ? vps-c left alone: runs v9, not v2 as the rollout left it: changed by hand? left alone\n",
			"■ rollout #12 rolled back: 1 restored, 1 failed, 1 left alone (changed by hand), 1 already back in 3s\n",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("tty %v: output lacks %q:\n%s", tty, want, got)
			}
		}
		for _, not := range []string{"vps-a", "vps-d", "health failed in the rollout", "to 4 hosts (stages", "updated"} {
			if strings.Contains(got, not) {
				t.Errorf("tty %v: output has %q:\n%s", tty, not, got)
			}
		}
		if tty && !strings.Contains(got, "] 4/4  rolling back  ↩2 ✗1 ?1") {
			t.Errorf("the bar does not count the rollback:\n%q", got)
		}
	}
}

// The halt that comes before a rollback of a running rollout says so.
func TestProgressRollbackOfARunningRollout(t *testing.T) {
	r := rollout.Rollout{ID: 5, Version: "v3", Hosts: 10, Phase: rollout.PhaseRunning,
		Settings: rollout.Settings{Stages: []int{10, 100}, Concurrency: 2},
		Halt:     &rollout.Halt{By: "bob", Reason: "to roll back: oops"}, Undo: &rollout.Undo{By: "bob", Reason: "oops"}}
	var out bytes.Buffer
	p := console.NewProgress(&out, false)
	p.Notify(rollout.Event{Kind: rollout.EventHalting, Progress: rollout.Progress{Rollout: r, Stages: r.StageList(),
		Counts: rollout.Counts{Updating: 2, Pending: 8}}})
	if got, want := out.String(), "■ rollback requested by bob (oops): halting first; letting 2 hosts in flight finish\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// status shows a rollback: who asked and why, its tally, and the hosts not
// put back with why; a halted rollback says how to continue it.
func TestWriteStatusOfARollback(t *testing.T) {
	at := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	r := &rollout.Rollout{ID: 9, Version: "v3", Hosts: 4, Phase: rollout.PhaseHalted, StartedBy: "alice", Source: rollout.SourceCLI,
		Settings: rollout.Settings{Stages: []int{100}}, CreatedAt: at, FinishedAt: at.Add(time.Minute),
		Halt: &rollout.Halt{By: "bob", Reason: "wait"}, Undo: &rollout.Undo{By: "carol", Reason: "errors up", At: at, Epoch: 3}}
	undo := []rollout.UndoResult{{Status: rollout.UndoRestored}, {Status: rollout.UndoFailed, Error: "rollback to v2 failed: exit 1"},
		{Status: rollout.UndoLeft, Error: "runs v7, not v3"}, {Status: rollout.UndoPending}}
	var results []rollout.HostResult
	for i, u := range undo {
		results = append(results, rollout.HostResult{Index: i, Host: rollout.Host{ID: "h" + string(rune('0'+i))},
			Status: rollout.StatusSuccess, PrevVersion: "v2", NewVersion: "v3", Undo: u})
	}
	var out bytes.Buffer
	console.WriteStatus(&out, r, results, 0, time.Now())
	got := out.String()
	for _, want := range []string{"rollout #9: v3, rollback halted by bob: wait (1 restored, 1 failed, 1 left alone (changed by hand), 1 to go)",
		"rollback: asked by carol at", ": errors up", "rollback: 4 hosts — 1 restored", "`rolloutbot rollout resume` continues it",
		"not put back (2):", "✗ h1", "rollback to v2 failed: exit 1", "? h2", "left alone", "runs v7, not v3"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	console.WriteHost(&out, results[1])
	if got := out.String(); !strings.Contains(got, "rollback: failed") || !strings.Contains(got, "error: rollback to v2 failed") {
		t.Errorf("host:\n%s", got)
	}
	out.Reset()
	console.WriteHistory(&out, []*rollout.Rollout{r}, map[int64]rollout.Counts{9: rollout.CountResults(results)})
	if got := out.String(); !strings.Contains(got, "rollback halted by bob: wait (1 restored") {
		t.Errorf("history:\n%s", got)
	}
}

// On a terminal a log line goes above the bar, which is drawn again under
// it; Tick redraws the bar with a moving clock when no event comes; off a
// terminal neither draws anything in place.
func TestProgressLogAndTick(t *testing.T) {
	evs := script()
	var out bytes.Buffer
	p := console.NewProgress(&out, true)
	for _, ev := range evs[:3] {
		p.Notify(ev)
	}
	out.Reset()
	if _, err := p.Log().Write([]byte("level=WARN msg=\"store slow\"\nlevel=ERROR msg=half")); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "\r\x1b[Klevel=WARN msg=\"store slow\"\n\r\x1b[K[") || strings.Contains(s, "half") {
		t.Errorf("log line on a terminal: %q", s)
	}
	_, _ = p.Log().Write([]byte(" line\n"))
	if !strings.Contains(out.String(), "level=ERROR msg=half line\n") {
		t.Errorf("a log line written in two parts: %q", out.String())
	}
	out.Reset()
	start := evs[0].At
	p.Tick(start.Add(42 * time.Second))
	if s := out.String(); !strings.HasPrefix(s, "\r\x1b[K[") || !strings.HasSuffix(s, "42s") {
		t.Errorf("tick: %q", s)
	}
	out.Reset()
	p.Notify(evs[len(evs)-1]) // ended: ticks draw nothing more
	out.Reset()
	p.Tick(start.Add(50 * time.Second))
	if out.Len() != 0 {
		t.Errorf("a tick after the end drew %q", out.String())
	}

	var plain bytes.Buffer
	q := console.NewProgress(&plain, false)
	q.Notify(evs[0])
	plain.Reset()
	_, _ = q.Log().Write([]byte("level=WARN msg=x\n"))
	q.Tick(start.Add(time.Minute))
	if plain.String() != "level=WARN msg=x\n" {
		t.Errorf("off a terminal: %q", plain.String())
	}
}

func TestInteractive(t *testing.T) {
	f, err := os.Open(os.DevNull) // a character device, as a terminal is
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		env  func(string) string
		want bool
	}{
		{env("TERM", "xterm"), true},
		{env("TERM", "dumb"), false},
		{env("TERM", "xterm", "NO_COLOR", "1"), false},
	} {
		if got := console.Interactive(f, tc.env); got != tc.want {
			t.Errorf("Interactive = %v, want %v", got, tc.want)
		}
	}
	reg, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if console.Interactive(reg, env("TERM", "xterm")) {
		t.Error("a file is interactive")
	}
}
