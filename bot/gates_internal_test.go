package bot

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestParseGatesAndNow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  error
	}{
		{"start v2.4.1 gate", Command{Kind: KindStart, Version: "v2.4.1", Gate: "all"}, nil},
		{"start v2.4.1 gate 10,50", Command{Kind: KindStart, Version: "v2.4.1", Gate: "10,50"}, nil},
		{"start gate 10% v2.4.1", Command{Kind: KindStart, Version: "v2.4.1", Gate: "10%"}, nil},
		{"start v2.4.1 now", Command{Kind: KindStart, Version: "v2.4.1", Now: true}, nil},
		{"START now", Command{Kind: KindStart, Now: true}, nil},
		{"start v2 gate 10 now", Command{Kind: KindStart, Version: "v2", Gate: "10", Now: true}, nil},
		{"plan v2 gate", Command{Kind: KindPlan, Version: "v2", Gate: "all"}, nil},
		{"plan v2 now", Command{}, ErrUsage},
		{"start v2 gate gate", Command{}, ErrUsage},
		{"start v2 v3", Command{}, ErrUsage},
		{"start v2 gate 10;rm", Command{}, ErrUsage},
		{"promote", Command{Kind: KindPromote}, nil},
		{"promote now", Command{}, ErrUsage},
	} {
		got, err := Parse(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Parse(%q) error %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if !KindPromote.Mutating() {
		t.Error("promote must need an admin")
	}
}

func TestParseGatesOfStages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{{"all", []int{10, 50}}, {"", []int{10, 50}}, {"none", nil}, {"50,10%", []int{10, 50}}} {
		got, err := rollout.ParseGates(tc.in, []int{10, 50, 100})
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseGates(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := rollout.ParseGates("ten", []int{10, 100}); err == nil {
		t.Error("ParseGates(ten) accepted")
	}
}

// A rollout at its gate shows what it waits for, who may promote, when it
// times out, and Promote to 50 % first beside Halt; buttons carry the gate.
func TestGatedStatusBlocks(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := rollout.Rollout{ID: 4, Version: "v2.4.1", Hosts: 10, Phase: rollout.PhaseGated, Stage: 0, StartedBy: "U0ADMIN", Starter: "U0ADMIN",
		Settings:  rollout.Settings{Stages: []int{10, 50, 100}, Gates: []int{10}, PromoteByOther: true, Concurrency: 2, Threshold: 30},
		WaitUntil: now.Add(time.Hour), CreatedAt: now}
	p := rollout.Progress{Rollout: r, Stages: r.StageList(), Counts: rollout.Counts{Success: 1, Pending: 9}}
	blocks, text := statusBlocks(p, now, "<@U0ADMIN>, <@U0OTHER>")
	raw, _ := json.Marshal(blocks)
	s := string(raw)
	for _, want := range []string{"Waiting for promotion to 50 %", "Who may promote: \\u003c@U0OTHER\\u003e — not \\u003c@U0ADMIN\\u003e, who started it (two-person rule).",
		"it halts", `"action_id":"rollout_promote"`, `"text":"Promote to 50 %"`, `"value":"4:gated_0"`, "✅ 10%"} {
		if !strings.Contains(s, want) {
			t.Errorf("the gated status message lacks %s:\n%s", want, s)
		}
	}
	if strings.Index(s, PromoteActionID) > strings.Index(s, HaltActionID) {
		t.Error("Promote should come before Halt")
	}
	if !strings.Contains(text, "waiting for promotion to 50%") {
		t.Errorf("fallback text %q", text)
	}
	if k, ok := gateStage(buttonState(r)); !ok || k != 0 {
		t.Errorf("button state %q", buttonState(r))
	}

	// Halting at the gate: no Promote any more.
	r.Halt = &rollout.Halt{By: "U0OTHER"}
	p.Rollout = r
	blocks, _ = statusBlocks(p, now, "")
	raw, _ = json.Marshal(blocks)
	if strings.Contains(string(raw), PromoteActionID) {
		t.Error("a halting rollout shows Promote")
	}

	// Baking shows what it does until when.
	r.Halt, r.Phase = nil, rollout.PhaseBaking
	p.Rollout = r
	blocks, _ = statusBlocks(p, now, "")
	raw, _ = json.Marshal(blocks)
	if !strings.Contains(string(raw), "Baking stage 10%") || strings.Contains(string(raw), PromoteActionID) {
		t.Errorf("baking:\n%s", raw)
	}
}
