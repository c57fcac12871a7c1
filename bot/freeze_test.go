package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// Freeze, a start refused with the reason, unfreeze, a start accepted; a
// non-admin's freeze refused; the list and the override, announced.
func TestFreezeEndToEnd(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 4})
	ctx := context.Background()

	e.command(user, "freeze for 1h not yours")
	e.ephemeral(user, "Only rolloutbot admins can freeze")
	if fs, _ := e.db.Freezes(ctx, e.engine.Now()); len(fs) != 0 {
		t.Fatalf("a non-admin's freeze was set: %+v", fs)
	}

	e.command(admin, `freeze until "2001-01-01 00:00" too late`)
	e.ephemeral(admin, "is not in the future")
	if a := e.command(admin, "freeze for 2h"); !strings.Contains(ackText(a), "say why") {
		t.Errorf("a freeze without a reason: %q", ackText(a))
	}

	e.command(admin, "freeze for 2h incident 4711")
	e.ephemeral(admin, "Freeze #1 set, until")
	e.waitFor("the freeze announced", func() bool { return e.channelSays("froze rollouts until") && e.channelSays("incident 4711") })

	e.command(admin, "freeze")
	e.ephemeral(admin, "freeze #1 by U0ADMIN: incident 4711")

	e.command(user, "plan v2")
	e.ephemeral(user, "refused now: frozen by the freeze #1 by U0ADMIN: incident 4711, until")

	e.command(admin, "start v2")
	refusal := e.ephemeral(admin, "Rollouts are frozen by freeze #1 set by <@U0ADMIN>: incident 4711")
	if !strings.Contains(refusal, "until ") || !strings.Contains(refusal, "override") {
		t.Errorf("refusal %q does not say when it ends and how to override", refusal)
	}
	if _, err := e.db.ActiveRollout(ctx); err == nil {
		t.Fatal("a rollout started during the freeze")
	}

	e.command(user, "unfreeze")
	e.ephemeral(user, "Only rolloutbot admins can unfreeze")
	e.command(admin, "unfreeze")
	e.ephemeral(admin, "Ended 1 freeze")
	e.waitFor("the unfreeze announced", func() bool { return e.channelSays("ended the freeze #1") })

	e.command(admin, "start v2")
	e.ephemeral(admin, "Started rollout #1")
	e.waitFor("the rollout to end", e.rolloutEnded)
	if r := e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted }); r.Version != "v2" {
		t.Fatalf("rollout %+v", r)
	}

	// An override starts during a freeze, loudly.
	e.command(admin, "freeze release party")
	e.ephemeral(admin, "Freeze #2 set, until someone unfreezes")
	e.command(admin, `start v3 override "hotfix for 4711"`)
	e.ephemeral(admin, "Started rollout #2")
	e.waitFor("the override announced", func() bool { return e.channelSays("overriding the freezes: hotfix for 4711") })
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.ID == 2 && r.Phase == rollout.PhaseCompleted })

	log, _ := e.db.AuditLog(ctx, 50)
	var actions []string
	for i := len(log) - 1; i >= 0; i-- {
		actions = append(actions, log[i].Action+"/"+map[bool]string{true: "ok", false: "refused"}[log[i].Allowed])
	}
	want := "freeze/refused freeze/ok start/refused unfreeze/refused unfreeze/ok start/ok freeze/ok start/ok freeze.override/ok"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit %s\nwant  %s", got, want)
	}
}

// A rollout outside the windows says on its status message and in
// /rollout status what it waits for and until when.
func TestWaitingShownOnStatus(t *testing.T) {
	e := startOutsideTheWindow(t)
	e.waitFor("the status message to show the wait", func() bool {
		m, ok := e.statusMessage()
		return ok && strings.Contains(blockText(m.Blocks), "Outside the rollout windows") &&
			strings.Contains(blockText(m.Blocks), "opens Mon")
	})
	e.command(admin, "status")
	e.ephemeral(admin, "waiting for the window (Mon 00:00-00:01 Pacific/Kiritimati): opens Mon")
	// Halt works while waiting.
	e.command(admin, "halt not this week")
	e.waitRollout("halted", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })
}

// startOutsideTheWindow starts rollout #1 of v2 on three hosts, with one
// window a minute a week, and returns once it waits for the window.
func startOutsideTheWindow(t *testing.T) *env {
	t.Helper()
	w, err := rollout.ParseWindow("Mon 00:00-00:01 Pacific/Kiritimati")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{hosts: 3, calendar: rollout.Calendar{Windows: rollout.Windows{w}}})
	// Open for one minute a week: the test would have to run in that minute to see it open.
	if open, _ := e.engine.Calendar().Windows.At(e.engine.Now()); open {
		t.Skip("the clock is inside the one-minute window")
	}
	e.command(admin, "start v2")
	e.ephemeral(admin, "Started rollout #1")
	e.waitRollout("waiting for the window", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseWindow })
	return e
}

// channelSays reports whether a message in the channel contains s.
func (e *env) channelSays(s string) bool {
	for _, m := range e.slack.Messages(channel) {
		if strings.Contains(m.Text+"\n"+blockText(m.Blocks), s) {
			return true
		}
	}
	return false
}

// The status message of a rollout that waits says until when, and keeps its
// "in 2 min" true while nothing else happens: the pause sends no event until
// it ends, yet the message counts down.
func TestStatusWaitCountsDown(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 10, settings: rollout.Settings{Stages: []int{10, 100}, Concurrency: 3, Threshold: 30,
		Pause: 95 * time.Second}})
	e.command(admin, "start v2")
	says := func(want string) func() bool {
		return func() bool {
			m, ok := e.statusMessage()
			return ok && strings.Contains(string(m.Blocks), want)
		}
	}
	e.waitFor("the pause shown", says("pausing before the next stage, in 2 min"))
	m, _ := e.statusMessage()
	edits := m.Edits
	e.waitFor("the pause counting down", says("pausing before the next stage, in 1 min"))
	if r := e.waitRollout("paused", func(*rollout.Rollout) bool { return true }); r.Phase != rollout.PhasePaused {
		t.Fatalf("the countdown came with the rollout %s, want still paused", r.Phase)
	}
	m, _ = e.statusMessage()
	if m.Edits != edits+1 {
		t.Errorf("%d edits for the countdown, want 1", m.Edits-edits)
	}
	e.command(admin, "halt enough")
	e.waitFor("the rollout to end", e.rolloutEnded)
}

// A rollout held outside the windows has a Go on button, behind a confirm
// dialog: a non-admin's press is refused, an admin's overrides the windows
// (audited and announced) and the rollout goes on; the button pressed again
// once the rollout moved on does nothing and says so.
func TestGoOnButtonOverridesTheWindow(t *testing.T) {
	e := startOutsideTheWindow(t)
	var m slackfake.Message
	e.waitFor("a status message with a Go on button", func() bool {
		var ok bool
		m, ok = e.statusMessage()
		return ok && strings.Contains(blockText(m.Blocks), "Go on outside the window")
	})
	for _, want := range []string{`"value":"1:window_0"`, "Go on outside the windows?", "is waiting for the window", "Keep waiting"} {
		if !strings.Contains(string(m.Blocks), want) {
			t.Errorf("the Go on button lacks %q:\n%s", want, m.Blocks)
		}
	}

	e.click(user, m.TS, bot.PromoteActionID, "")
	e.ephemeral(user, "Only rolloutbot admins can promote")
	if r, _ := e.db.ActiveRollout(context.Background()); r == nil || r.Phase != rollout.PhaseWindow || r.Anytime != nil {
		t.Fatalf("a refused press reached the rollout: %+v", r)
	}
	e.click(admin, m.TS, bot.PromoteActionID, "")
	e.ephemeral(admin, "Rollout #1 goes on: you overrode what held it")
	r := e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	if r.Anytime == nil || r.Anytime.By != admin {
		t.Fatalf("the override is %+v, want by %s", r.Anytime, admin)
	}
	e.waitFor("the override announced", func() bool { return e.channelSays("<@" + admin + "> promoted rollout #1 (v2) past what held it") })

	e.click(admin, m.TS, bot.PromoteActionID, "1:window_0")
	e.ephemeral(admin, "Nothing done: that button is from when rollout #1 was waiting for a rollout window before stage 10%; now it is completed")
	log, _ := e.db.AuditLog(context.Background(), 20)
	var got []string
	for _, a := range log {
		if a.Action == "window.override" || a.Action == "promote" {
			got = append(got, a.Action+"/"+a.Actor+"/"+map[bool]string{true: "ok", false: "refused"}[a.Allowed])
		}
	}
	want := "promote/" + admin + "/refused window.override/" + admin + "/ok promote/" + user + "/refused"
	if strings.Join(got, " ") != want {
		t.Errorf("audit (newest first) %v, want %s", got, want)
	}
}

// Unfreeze during a recurring freeze of the configuration ends nothing and
// says how to get past it: an override to start, Go on or promote for a
// rollout it holds.
func TestUnfreezeDuringARecurringFreeze(t *testing.T) {
	always := rollout.RecurringFreeze{Name: "weekend", Reason: "no changes over the weekend", Spec: "every minute", Duration: time.Hour,
		Next: func(t time.Time) time.Time { return t.Truncate(time.Minute).Add(time.Minute) }}
	e := newEnv(t, envOptions{hosts: 3, calendar: rollout.Calendar{Recurring: []rollout.RecurringFreeze{always}}})
	e.command(admin, "unfreeze")
	e.ephemeral(admin, `Nothing to unfreeze`)
	e.ephemeral(admin, `The recurring freeze "weekend" of the configuration holds until`)
	e.ephemeral(admin, "a rollout it holds goes on with *Go on despite the freeze* or `/rollout promote`")
}
