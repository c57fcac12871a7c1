package bot_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// A rollout at its gate shows "waiting for promotion" and a Promote button
// beside Halt. Under the two-person rule the admin who started it is
// refused, with who else may promote; another admin's press goes on. A
// press on the button once the rollout moved on does nothing and says so.
func TestPromoteButtonTwoPersonRule(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 10, settings: rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: 3, Threshold: 30,
		Gates: []int{10}, PromoteByOther: true}})
	e.command(admin, "start v2 now")
	e.waitRollout("gated", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseGated })
	var ts string
	e.waitFor("a status message with a Promote button", func() bool {
		m, ok := e.statusMessage()
		ts = m.TS
		text := blockText(m.Blocks)
		return ok && strings.Contains(string(m.Blocks), bot.PromoteActionID) && strings.Contains(text, "Promote to 50 %") &&
			strings.Contains(text, "Waiting for promotion to 50 %") && strings.Contains(string(m.Blocks), bot.HaltActionID)
	})
	m, _ := e.slack.Message(channel, ts)
	if text := blockText(m.Blocks); !strings.Contains(text, "Who may promote: members of <!subteam^S0OPS> — not <@"+admin+">, who started it (two-person rule).") {
		t.Errorf("the status message does not say who may promote:\n%s", text)
	}
	if !strings.Contains(string(m.Blocks), `"value":"1:gated_0"`) {
		t.Errorf("the buttons do not carry the gate they were drawn for:\n%s", m.Blocks)
	}
	if n := e.fleet.Totals().Updates; n != 1 {
		t.Fatalf("%d hosts updated at the gate, want the canary", n)
	}
	e.command(user, "status")
	e.ephemeral(user, "⏸ Waiting for promotion to 50 %: `/rollout promote`")

	// The starter is refused, and told who can promote instead.
	e.click(admin, ts, bot.PromoteActionID, "")
	e.ephemeral(admin, "two-person rule")
	e.ephemeral(admin, "members of <!subteam^S0OPS>")
	// Someone who is no admin is refused too.
	e.click(user, ts, bot.PromoteActionID, "")
	e.ephemeral(user, "Only rolloutbot admins can promote")
	if r, _ := e.db.ActiveRollout(context.Background()); r == nil || r.Phase != rollout.PhaseGated || r.Promote != nil {
		t.Fatalf("a refused press reached the rollout: %+v", r)
	}

	// Another admin (by group) promotes it.
	e.click(groupie, ts, bot.PromoteActionID, "")
	e.ephemeral(groupie, "Promoted rollout #1 to 50 %")
	r := e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	if r.Promote == nil || r.Promote.By != groupie {
		t.Fatalf("promoted by %+v", r.Promote)
	}
	e.waitFor("the announcement", func() bool {
		for _, m := range e.slack.Messages(channel) {
			if strings.Contains(m.Text, "<@"+groupie+"> promoted rollout #1 (v2) to 50 %") {
				return true
			}
		}
		return false
	})
	thread := e.thread(ts, "ompleted")
	for _, want := range []string{"⏸ Waiting for promotion to 50 %", "▶️ Promoted to 50 % by <@" + groupie + ">"} {
		if !strings.Contains(thread, want) {
			t.Errorf("the thread does not say %q:\n%s", want, thread)
		}
	}

	// The old button, pressed again, does nothing.
	e.click(groupie, ts, bot.PromoteActionID, "1:gated_0")
	e.ephemeral(groupie, "Nothing done: that button is from when rollout #1 was waiting at its gate after stage 10%; now it is completed")
	e.command(groupie, "promote")
	e.ephemeral(groupie, "No rollout is running; nothing to promote.")

	log, _ := e.db.AuditLog(context.Background(), 20)
	var got []string
	for _, a := range log {
		if a.Action == "promote" {
			got = append(got, a.Actor+"/"+map[bool]string{true: "ok", false: "refused"}[a.Allowed])
		}
	}
	want := []string{groupie + "/refused", groupie + "/refused", groupie + "/ok", user + "/refused", admin + "/refused"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("promote audit (newest first) %v, want %v", got, want)
	}
}
