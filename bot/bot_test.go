package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

func TestAdminStartRunsAllStages(t *testing.T) {
	// Stages of 2, 8 and 10 hosts: one failure in each later stage stays under 30 %.
	e := newEnv(t, envOptions{hosts: 20, failAt: map[int]fleetsim.Behavior{5: fleetsim.HealthFails, 15: fleetsim.UpdateFails}})
	e.command(admin, "start v2")
	e.ephemeral(admin, "Started rollout #1 of v2 on 20 hosts")
	e.waitFor("the final status", e.rolloutEnded)

	m, _ := e.statusMessage()
	blocks := string(m.Blocks)
	for _, want := range []string{"Rollout #1 · v2", "Updated: *18*", "Rolled back: *2*", "Completed, 2 rolled back", "20/20"} {
		if !strings.Contains(blocks, want) {
			t.Errorf("final status message lacks %q:\n%s", want, blocks)
		}
	}
	if m.Edits == 0 {
		t.Errorf("the status message was never edited")
	}
	if pins := e.slack.Pins(channel); len(pins) != 1 || pins[0] != m.TS {
		t.Errorf("pins %v, want the status message %s", pins, m.TS)
	}
	e.waitFor("the summary reply", func() bool {
		rs := e.slack.Replies(channel, m.TS)
		return len(rs) > 0 && strings.Contains(rs[len(rs)-1].Text, "Completed, 2 rolled back")
	})
	var thread []string
	for _, r := range e.slack.Replies(channel, m.TS) {
		thread = append(thread, r.Text)
	}
	all := strings.Join(thread, "\n")
	for _, want := range []string{"Stage 10%: 2 hosts", "Stage 50% done", "Stage 100%", "`" + e.failing[0] + "`", "`" + e.failing[1] + "`",
		"rolled back at *health*", "rolled back at *update*"} {
		if !strings.Contains(all, want) {
			t.Errorf("thread lacks %q:\n%s", want, all)
		}
	}
	for _, h := range e.fleet.Hosts() {
		if n := e.fleet.Stats(h.Index).Updates; n != 1 {
			t.Errorf("%s updated %d times", h.Name, n)
		}
	}
	r, _ := e.db.Rollouts(context.Background(), 1)
	if r[0].StartedBy != admin || r[0].Source != rollout.SourceSlack || r[0].MessageTS != m.TS {
		t.Errorf("stored rollout %+v", r[0])
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 3})
	ctx := context.Background()

	// Garbage and bad versions are answered in the ack, before anything happens.
	for _, tc := range []struct{ text, want string }{
		{"frobnicate", "unknown command"},
		{"start v1;rm", "invalid version"},
		{"start v1; rm -rf /", "takes one version"},
		{"", "/rollout* commands"},
	} {
		if got := ackText(e.command(admin, tc.text)); !strings.Contains(got, tc.want) {
			t.Errorf("%q answered %q, want %q", tc.text, got, tc.want)
		}
	}
	// A non-admin is refused and audited; nothing starts.
	e.command(user, "start v2")
	e.ephemeral(user, "Only rolloutbot admins can start")
	if rs, _ := e.db.Rollouts(ctx, 10); len(rs) != 0 {
		t.Fatalf("a refused start left %d rollouts", len(rs))
	}
	if e.fleet.Totals().Connections != 0 {
		t.Fatalf("refused commands touched hosts")
	}
	log, _ := e.db.AuditLog(ctx, 10)
	if len(log) != 1 || log[0].Actor != user || log[0].Allowed || log[0].Action != "start" {
		t.Fatalf("audit: %+v", log)
	}
	// Read-only commands need no admin.
	e.command(user, "plan v2")
	e.ephemeral(user, "Plan for v2 on 3 hosts")
	e.command(user, "status")
	e.ephemeral(user, "No rollouts yet")
	e.command(user, "halt")
	e.ephemeral(user, "Only rolloutbot admins can halt")
	e.command(admin, "resume")
	e.ephemeral(admin, "Nothing to resume")
}

func TestGroupMemberIsAdmin(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 2})
	e.command(groupie, "start v2")
	e.ephemeral(groupie, "Started rollout #1")
	e.waitFor("the end", e.rolloutEnded)
}

func TestSecondStartIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 6, latency: 200 * time.Millisecond,
		settings: rollout.Settings{Stages: []int{100}, Concurrency: 1, Threshold: 30}})
	e.fleet.Hold() // the rollout runs until the halt is answered
	e.command(admin, "start v2")
	e.ephemeral(admin, "Started rollout #1")
	e.command(groupie, "start v3")
	e.ephemeral(groupie, "Rollout #1 of v2 is already running")
	e.command(admin, "halt enough")
	e.ephemeral(admin, "Halt requested for rollout #1")
	e.fleet.Release()
	r := e.waitRollout("halted", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })
	if r.Halt == nil || r.Halt.By != admin || !strings.Contains(r.Halt.Reason, "enough") {
		t.Fatalf("halted %+v", r)
	}
	e.waitFor("the halted status", e.rolloutEnded)
	m, _ := e.statusMessage()
	if !strings.Contains(blockText(m.Blocks), "Halted by <@"+admin+">: enough") {
		t.Errorf("halted status:\n%s", m.Blocks)
	}
}

func TestHaltButton(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 30, latency: 100 * time.Millisecond,
		settings: rollout.Settings{Stages: []int{100}, Concurrency: 2, Threshold: 30}})
	e.fleet.Hold() // the rollout runs until the admin's press is answered
	e.command(admin, "start v2")
	var ts string
	e.waitFor("a status message with a Halt button", func() bool {
		m, ok := e.statusMessage()
		ts = m.TS
		return ok && strings.Contains(string(m.Blocks), bot.HaltActionID)
	})

	// A non-admin's press is refused, audited, and changes nothing.
	id, err := e.slack.ClickButton(slackfake.ButtonClick{UserID: user, ChannelID: channel, MessageTS: ts, ActionID: bot.HaltActionID})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAck(id)
	e.ephemeral(user, "Only rolloutbot admins can halt")
	if r, _ := e.db.ActiveRollout(context.Background()); r == nil || r.Halt != nil {
		t.Fatalf("a non-admin's press reached the rollout: %+v", r)
	}

	// An admin's press stops new hosts: only the ones in flight finish.
	id, err = e.slack.ClickButton(slackfake.ButtonClick{UserID: admin, ChannelID: channel, MessageTS: ts, ActionID: bot.HaltActionID})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAck(id)
	e.ephemeral(admin, "Halt requested for rollout #1")
	atHalt := e.fleet.Totals().Connections
	e.fleet.Release()
	r := e.waitRollout("halted", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })
	if got := e.fleet.Totals().Connections; got > atHalt+2 {
		t.Errorf("%d hosts started after the halt, more than the 2 in flight", got-atHalt)
	}
	if r.Halt == nil || r.Halt.By != admin {
		t.Errorf("halted by %v", r.Halt)
	}
	e.waitFor("the button replaced", e.rolloutEnded)
	log, _ := e.db.AuditLog(context.Background(), 10)
	var refused, allowed int
	for _, a := range log {
		if a.Action == "halt" && a.Allowed {
			allowed++
		} else if a.Action == "halt" {
			refused++
		}
	}
	if refused != 1 || allowed != 1 {
		t.Errorf("audit has %d refused and %d allowed halts: %+v", refused, allowed, log)
	}
}

// A disconnect asked for by Slack, and a dropped websocket, lose no command.
func TestReconnects(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 2})
	e.slack.Disconnect("refresh_requested")
	e.command(user, "history") // delivered on the new connection
	e.ephemeral(user, "No rollouts yet")
	e.slack.DropConnections()
	e.command(user, "status")
	e.waitFor("two answers", func() bool { return len(e.slack.Ephemerals(channel, user)) >= 2 })
	if e.slack.ConnectionsOpened() < 3 {
		t.Errorf("connections opened: %d", e.slack.ConnectionsOpened())
	}
}

// A 429 on chat.update delays edits but the final state is still written.
func TestRateLimitedEdits(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 10})
	e.slack.RateLimitNext("chat.update", 1, 3)
	e.command(admin, "start v2")
	e.waitFor("the final status despite 429s", e.rolloutEnded)
	m, _ := e.statusMessage()
	if !strings.Contains(string(m.Blocks), "10/10") {
		t.Errorf("final status:\n%s", m.Blocks)
	}
	var limited int
	for _, c := range e.slack.CallLog() {
		if c.Method == "chat.update" && c.Status == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("no 429 was served")
	}
	// After a 429 with Retry-After 1 s, no chat.update came sooner.
	var last time.Time
	for _, c := range e.slack.CallLog() {
		if c.Method != "chat.update" {
			continue
		}
		if !last.IsZero() && c.At.Sub(last) < 900*time.Millisecond {
			t.Errorf("chat.update %s after a 429 asking for 1 s", c.At.Sub(last))
		}
		last = time.Time{}
		if c.Status == 429 {
			last = c.At
		}
	}
}

// When the bot is not in the channel the rollout still runs; the log says
// why, and the starter hears it.
func TestNotInChannel(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 3, notMember: true})
	e.slack.AddChannel("C0RANDOM", "random", true)
	e.slack.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0RANDOM", Text: "start v2"})
	e.waitFor("the starter told", func() bool {
		for _, m := range e.slack.Ephemerals("C0RANDOM", admin) {
			if strings.Contains(m.Text+string(m.Blocks), "not_in_channel") {
				return true
			}
		}
		return false
	})
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	if logs := e.logs.String(); !strings.Contains(logs, "cannot post the rollout status message") || !strings.Contains(logs, "/invite") {
		t.Errorf("log lacks a clear line:\n%s", logs)
	}
}

// Workspace admins are admins only when configured so.
func TestWorkspaceAdmins(t *testing.T) {
	off := newEnv(t, envOptions{hosts: 2})
	off.command(wsAdmin, "start v2")
	off.ephemeral(wsAdmin, "Only rolloutbot admins can start")

	on := newEnv(t, envOptions{hosts: 2, wsAdmins: true})
	on.command(user, "start v2") // a plain member still is not
	on.ephemeral(user, "Only rolloutbot admins can start")
	on.command(wsAdmin, "start v2")
	on.ephemeral(wsAdmin, "Started rollout #1")
}

// Only the current rollout's status message stays pinned.
func TestOnlyTheCurrentRolloutIsPinned(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 2})
	e.command(admin, "start v2")
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	e.waitFor("the first pin", func() bool { return len(e.slack.Pins(channel)) == 1 })
	first := e.slack.Pins(channel)[0]
	e.command(admin, "start v3")
	r := e.waitRollout("the second completed", func(r *rollout.Rollout) bool { return r.ID == 2 && r.Phase == rollout.PhaseCompleted })
	e.waitFor("the pin moved", func() bool {
		pins := e.slack.Pins(channel)
		return len(pins) == 1 && pins[0] == r.MessageTS
	})
	if first == r.MessageTS {
		t.Fatal("both rollouts share a message")
	}
}

// A bot that died between a rollout's end and the last edit of its status
// message leaves the message showing a live Halt button; the next start
// brings it to the final state.
func TestStaleStatusMessageIsReconciled(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 4})
	e.command(admin, "start v2")
	e.waitFor("the final status", e.rolloutEnded)
	m, _ := e.statusMessage()

	// The message as the dead bot last wrote it: mid-rollout.
	api := bot.NewClient("xoxb-test", "xapp-test", e.slack.APIURL(), nil)
	halt := slack.NewButtonBlockElement(bot.HaltActionID, "1", slack.NewTextBlockObject(slack.PlainTextType, "Halt rollout", false, false))
	if _, _, _, err := api.UpdateMessage(channel, m.TS, slack.MsgOptionText("Rollout #1 of v2: stage 50%", false),
		slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "Rollout #1 · 2/4 done", false, false), nil, nil),
			slack.NewActionBlock("rollout_actions", halt))); err != nil {
		t.Fatal(err)
	}
	if e.rolloutEnded() {
		t.Fatal("the message was not made stale")
	}

	restarted := bot.NewStatus(api, bot.StatusConfig{Channel: channel, EditInterval: 100 * time.Millisecond}, e.db, nil)
	if err := restarted.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { restarted.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.waitFor("the status message brought up to date", e.rolloutEnded)
	m, _ = e.statusMessage()
	if text := blockText(m.Blocks); !strings.Contains(text, "4/4") || !strings.Contains(text, "Completed") {
		t.Errorf("reconciled message:\n%s", text)
	}
}
