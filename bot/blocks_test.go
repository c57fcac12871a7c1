package bot

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// The status message stays inside Block Kit's limits (SLACK.md) in every
// phase of a rollback, at any fleet size and with the longest texts a user
// or a host can put in it.
func TestRollbackBlocksFitBlockKit(t *testing.T) {
	now := time.Now()
	long := strings.Repeat("ü<&", 700)
	version := strings.Repeat("v", 128)
	var recent []rollout.HostResult
	for i := range 10 {
		recent = append(recent, rollout.HostResult{Host: rollout.Host{ID: fmt.Sprintf("%s-%d", strings.Repeat("h", 250), i), Address: "10.0.0.1", Port: 22},
			Status: rollout.StatusSuccess, Undo: rollout.UndoResult{Status: rollout.UndoFailed, Error: long, Output: long}})
	}
	undo := &rollout.Undo{By: "U0ADMIN", Reason: strings.Repeat("why ", 125), At: now.Add(-time.Hour), Epoch: 3}
	base := rollout.Rollout{ID: 123456789, Version: version, Settings: rollout.DefaultSettings(), Hosts: 1_000_000,
		StartedBy: "schedule #1", CreatedAt: now.Add(-2 * time.Hour)}
	counts := rollout.Counts{Success: 400_000, Failed: 100_000, RolledBack: 100_000, Updating: 10_000, Pending: 390_000,
		Undo: rollout.UndoCounts{Pending: 300_000, Restoring: 10_000, Restored: 200_000, Failed: 50_000, Left: 40_000, NotNeeded: 100_000}}
	phase := func(p rollout.Phase, halt, u bool) rollout.Rollout {
		r := base
		r.Phase = p
		if halt {
			r.Halt = &rollout.Halt{By: "U0OTHER", Reason: long, At: now}
		}
		if u {
			r.Undo = undo
		}
		if p.Ended() {
			r.FinishedAt = now
		}
		return r
	}
	notBegun := phase(rollout.PhaseCompleted, false, false)
	notBegun.Undo = &rollout.Undo{By: "U0ADMIN", At: now} // asked for as it completed: no epoch yet
	for _, tc := range []struct {
		name     string
		r        rollout.Rollout
		rollback bool // the message shows the rollback
	}{
		{"running", phase(rollout.PhaseRunning, false, false), false},
		{"halting to roll back", phase(rollout.PhaseRunning, true, true), false},
		{"rolling back", phase(rollout.PhaseRollingBack, false, true), true},
		{"halting the rollback", phase(rollout.PhaseRollingBack, true, true), true},
		{"rollback halted", phase(rollout.PhaseHalted, true, true), true},
		{"rolled back", phase(rollout.PhaseRolledBack, false, true), true},
		{"completed as its rollback was asked for", notBegun, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := rollout.Progress{Rollout: tc.r, Stages: tc.r.StageList(), Counts: counts, Recent: recent}
			blocks, text := statusBlocks(p, now, "")
			checkBlocks(t, blocks)
			if text == "" {
				t.Error("no fallback text")
			}
			if got := blockTexts(blocks); tc.rollback != strings.Contains(got, "Restored: *200000*") {
				t.Errorf("rollback view %v? The message reads:\n%s", tc.rollback, got)
			}
		})
	}
	// The thread replies too.
	for _, reply := range []string{undoReply(recent[0]), undoStartLine(phase(rollout.PhaseRollingBack, false, true), counts.Undo)} {
		if n := utf8.RuneCountInString(reply); n > maxSectionText {
			t.Errorf("a thread reply of %d characters", n)
		}
	}
}

func checkBlocks(t *testing.T, blocks []slack.Block) {
	t.Helper()
	if len(blocks) > maxBlocks {
		t.Errorf("%d blocks", len(blocks))
	}
	n := utf8.RuneCountInString
	for _, b := range blocks {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			if n(b.Text.Text) > 150 {
				t.Errorf("header of %d characters", n(b.Text.Text))
			}
		case *slack.SectionBlock:
			if b.Text != nil && n(b.Text.Text) > maxSectionText {
				t.Errorf("section of %d characters", n(b.Text.Text))
			}
			if len(b.Fields) > 10 {
				t.Errorf("%d fields", len(b.Fields))
			}
			for _, f := range b.Fields {
				if n(f.Text) > 2000 {
					t.Errorf("field of %d characters", n(f.Text))
				}
			}
		case *slack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				if tb, ok := e.(*slack.TextBlockObject); ok && n(tb.Text) > maxSectionText {
					t.Errorf("context of %d characters", n(tb.Text))
				}
			}
		case *slack.ActionBlock:
			for _, e := range b.Elements.ElementSet {
				btn := e.(*slack.ButtonBlockElement)
				if n(btn.Text.Text) > 75 || n(btn.Value) > 2000 {
					t.Errorf("button %q with value %q", btn.Text.Text, btn.Value)
				}
				if c := btn.Confirm; c != nil && (n(c.Title.Text) > 100 || n(c.Text.Text) > 300 || n(c.Confirm.Text) > 30 || n(c.Deny.Text) > 30) {
					t.Errorf("confirm dialog past the limits: %q / %q", c.Title.Text, c.Text.Text)
				}
			}
		}
	}
}

func blockTexts(blocks []slack.Block) string {
	var out []string
	for _, b := range blocks {
		if s, ok := b.(*slack.SectionBlock); ok {
			if s.Text != nil {
				out = append(out, s.Text.Text)
			}
			for _, f := range s.Fields {
				out = append(out, f.Text)
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestButtonValue(t *testing.T) {
	for _, tc := range []struct {
		in    string
		id    int64
		state string
		ok    bool
	}{
		{"12:running", 12, "running", true},
		{"12:rolling_back", 12, "rolling_back", true},
		{"12", 12, "running", true}, // drawn before buttons carried a state
		{"12:", 0, "", false},
		{":running", 0, "", false},
		{"0:running", 0, "", false},
		{"x:running", 0, "", false},
		{"", 0, "", false},
	} {
		id, state, err := parseButtonValue(tc.in)
		if (err == nil) != tc.ok || id != tc.id || state != tc.state {
			t.Errorf("parseButtonValue(%q) = %d, %q, %v", tc.in, id, state, err)
		}
	}
	r := rollout.Rollout{ID: 7, Phase: rollout.PhaseRunning}
	if v := buttonValue(r); v != "7:running" {
		t.Errorf("value %q", v)
	}
	for _, tc := range []struct {
		r    rollout.Rollout
		want string
	}{
		{rollout.Rollout{Phase: rollout.PhasePaused}, "running"},
		{rollout.Rollout{Phase: rollout.PhaseRunning, Halt: &rollout.Halt{}}, "halting"},
		{rollout.Rollout{Phase: rollout.PhaseRollingBack, Undo: &rollout.Undo{}}, "rolling_back"},
		{rollout.Rollout{Phase: rollout.PhaseRollingBack, Undo: &rollout.Undo{}, Halt: &rollout.Halt{}}, "halting"},
		{rollout.Rollout{Phase: rollout.PhaseCompleted}, "completed"},
		{rollout.Rollout{Phase: rollout.PhaseHalted, Undo: &rollout.Undo{}}, "halted"},
	} {
		if got := buttonState(tc.r); got != tc.want {
			t.Errorf("buttonState(%s) = %q, want %q", tc.r.Label(), got, tc.want)
		}
	}
}
