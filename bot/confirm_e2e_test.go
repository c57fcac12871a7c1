package bot_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// preview waits for the latest ephemeral to who with a Start button and
// returns it with the button's value.
func (e *env) preview(who string, n int) (slackfake.Message, string) {
	e.t.Helper()
	var found slackfake.Message
	e.waitFor("a preview with Start and Cancel", func() bool {
		got := 0
		for _, m := range e.slack.Ephemerals(channel, who) {
			if strings.Contains(string(m.Blocks), bot.StartActionID) && strings.Contains(string(m.Blocks), bot.CancelActionID) {
				found = m
				got++
			}
		}
		return got >= n
	})
	var blocks []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	_ = json.Unmarshal(found.Blocks, &blocks)
	for _, b := range blocks {
		for _, el := range b.Elements {
			if el.ActionID == bot.StartActionID {
				return found, el.Value
			}
		}
	}
	e.t.Fatalf("no Start button value in %s", found.Blocks)
	return found, ""
}

// pressOn presses a button of an ephemeral message as who.
func (e *env) pressOn(who string, m slackfake.Message, actionID, value string) {
	e.t.Helper()
	id, err := e.slack.ClickButton(slackfake.ButtonClick{UserID: who, ChannelID: channel, MessageTS: m.TS, ActionID: actionID, Value: value})
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitAck(id)
}

// replaced waits until the ephemeral m was replaced with text saying want.
func (e *env) replaced(who string, m slackfake.Message, want string) {
	e.t.Helper()
	e.waitFor("the preview replaced with "+want, func() bool {
		for _, x := range e.slack.Ephemerals(channel, who) {
			if x.TS == m.TS && strings.Contains(x.Text+"\n"+blockText(x.Blocks), want) && !strings.Contains(string(x.Blocks), bot.StartActionID) {
				return true
			}
		}
		return false
	})
}

func (e *env) rollouts() []*rollout.Rollout {
	e.t.Helper()
	rs, err := e.db.Rollouts(context.Background(), 10)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// /rollout start answers with the plan and Start / Cancel; the rollout
// starts on Start. A second press of the same Start, and a Start on a plan
// gone stale, start nothing and say why; Cancel starts nothing.
func TestStartPreview(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 10, confirm: true})
	e.command(admin, "start v2 gate 10")
	m, value := e.preview(admin, 1)
	text := blockText(m.Blocks)
	for _, want := range []string{"Start v2?", "Plan for v2 on 10 hosts", "stage  10%: 1 host ", "halts at",
		"then waits for an admin to promote it", "10 minutes"} {
		if !strings.Contains(text, want) {
			t.Errorf("the preview does not say %q:\n%s", want, text)
		}
	}
	if rs := e.rollouts(); len(rs) != 0 {
		t.Fatalf("a preview started a rollout: %+v", rs[0])
	}

	// Someone who is no admin gets no preview.
	e.command(user, "start v2")
	e.ephemeral(user, "Only rolloutbot admins can start")

	e.pressOn(admin, m, bot.StartActionID, "")
	e.replaced(admin, m, "Started rollout #1 of v2 on 10 hosts")
	r := e.waitRollout("at its gate", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseGated })
	if r.StartedBy != admin || r.Settings.Gates == nil || r.Settings.Gates[0] != 10 {
		t.Fatalf("started %+v", r)
	}

	// The same Start again: nothing more starts.
	e.pressOn(admin, m, bot.StartActionID, value)
	e.ephemeral(admin, "Nothing started: rollout #1 of v2 (started by <@"+admin+">; waiting for promotion to 50%) came after this plan")
	if _, err := e.engine.Halt(context.Background(), rollout.HaltRequest{Actor: admin, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	e.waitRollout("halted", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })

	// A plan whose inventory changed since.
	e.command(admin, "start v3")
	m, value = e.preview(admin, 1)
	hosts, _ := e.db.ActiveHosts(context.Background())
	if err := e.db.SetHostDisabled(context.Background(), hosts[0].ID, true); err != nil {
		t.Fatal(err)
	}
	e.pressOn(admin, m, bot.StartActionID, value)
	e.ephemeral(admin, "Nothing started: the inventory changed since this plan (10 active hosts then, 9 now)")

	// A plan older than ten minutes.
	var tk map[string]any
	_ = json.Unmarshal([]byte(value), &tk)
	tk["t"] = time.Now().Add(-11 * time.Minute).Unix()
	old, _ := json.Marshal(tk)
	e.pressOn(admin, m, bot.StartActionID, string(old))
	e.ephemeral(admin, "more than 10 minutes ago")

	// Cancel.
	e.command(admin, "start v3")
	m, _ = e.preview(admin, 2)
	e.pressOn(admin, m, bot.CancelActionID, "")
	e.replaced(admin, m, "Cancelled: nothing was started.")

	if rs := e.rollouts(); len(rs) != 1 {
		t.Fatalf("%d rollouts, want the one started", len(rs))
	}
	log, _ := e.db.AuditLog(context.Background(), 20)
	var stale, refused int
	for _, a := range log {
		switch {
		case a.Action == "start" && strings.Contains(a.Detail, "stale plan"):
			stale++
		case a.Action == "start" && !a.Allowed:
			refused++
		}
	}
	if stale != 3 || refused != 1 {
		t.Errorf("audit: %d stale starts (want 3), %d other refusals (want 1, the non-admin): %+v", stale, refused, log)
	}

	// `now` skips the preview.
	e.command(admin, "start v4 now")
	e.ephemeral(admin, "Started rollout #2 of v4 on 9 hosts")
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.ID == 2 && r.Phase == rollout.PhaseCompleted })
}

// During a freeze the preview says so; a start that overrides it says that
// too, and Start carries the override: the rollout starts, loudly.
func TestStartPreviewDuringAFreeze(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 4, confirm: true})
	e.command(admin, "freeze for 2h incident 4711")
	e.ephemeral(admin, "Freeze #1 set")
	e.command(admin, `start v2 override "hotfix for 4711"`)
	m, _ := e.preview(admin, 1)
	text := blockText(m.Blocks)
	for _, want := range []string{"incident 4711", "It overrides the freezes: hotfix for 4711"} {
		if !strings.Contains(text, want) {
			t.Errorf("the preview does not say %q:\n%s", want, text)
		}
	}
	e.pressOn(admin, m, bot.StartActionID, "")
	e.replaced(admin, m, "Started rollout #1 of v2")
	r := e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	if r.FreezeOverride == nil || r.FreezeOverride.Reason != "hotfix for 4711" {
		t.Fatalf("started without the override: %+v", r.FreezeOverride)
	}
}
