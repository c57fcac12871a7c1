package bot_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

func TestReports(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 20, failAt: map[int]fleetsim.Behavior{5: fleetsim.HealthFails, 15: fleetsim.RollbackFails}})
	e.command(admin, "start v2")
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })

	e.command(user, "status")
	got := e.ephemeral(user, "Rollout #1 · v2")
	for _, want := range []string{"completed, 1 rolled back, 1 failed", "20/20", "`" + e.failing[0] + "`", "`" + e.failing[1] + "`"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	e.command(user, "status failed")
	got = e.ephemeral(user, "*Failures*")
	if !strings.Contains(got, e.failing[0]) || !strings.Contains(got, "rolled back at health") || !strings.Contains(got, "failed at rollback") {
		t.Errorf("status failed:\n%s", got)
	}
	e.command(user, "status "+e.failing[1])
	got = e.ephemeral(user, "in rollout #1: *failed* at rollback")
	if !strings.Contains(got, "Version: v1 → ") || !strings.Contains(got, "rollback to v1 failed") || !strings.Contains(got, "```") {
		t.Errorf("status HOST:\n%s", got)
	}
	e.command(user, "status nope-17")
	e.ephemeral(user, "`nope-17` is not part of rollout #1")
	// The simulated hosts share 127.0.0.1: the address alone names none of
	// them, ADDRESS:PORT names one.
	e.command(user, "status 127.0.0.1")
	e.ephemeral(user, "127.0.0.1 is the address of several hosts (")
	h := e.fleet.Hosts()[3]
	e.command(user, fmt.Sprintf("status %s:%d", h.Address, h.Port))
	e.ephemeral(user, fmt.Sprintf("*%s* (%s:%d) in rollout #1", h.Name, h.Address, h.Port))
	e.command(user, "history 3")
	e.ephemeral(user, "#1 `v2`")
	e.command(user, "hosts")
	got = e.ephemeral(user, "*20 active hosts*")
	if !strings.Contains(got, "`v2` × 18") || !strings.Contains(got, "`v1` × 1") {
		t.Errorf("hosts:\n%s", got)
	}
}

func TestScheduleCommands(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 2})
	sched := schedule.New(schedule.Config{Store: e.db, Engine: e.engine, Announcer: e.bot, Owner: "test"})
	e.bot.SetSchedules(sched)
	e.command(user, `schedule add "0 3 * * 1-5" v2 Europe/Berlin`)
	e.ephemeral(user, "Only rolloutbot admins can schedule add")
	e.command(admin, `schedule add "0 3 * * 1-5" v2 Europe/Berlin`)
	got := e.ephemeral(admin, "Schedule #1 added")
	if !strings.Contains(got, "Europe/Berlin") || !strings.Contains(got, "Next run") {
		t.Errorf("add:\n%s", got)
	}
	e.command(admin, `schedule add "0 3 * * *" v2 Mars/Olympus`)
	e.ephemeral(admin, `unknown time zone "Mars/Olympus"`)
	e.command(user, "schedule list")
	e.ephemeral(user, "#1 `0 3 * * 1-5` Europe/Berlin, `v2`")
	e.command(admin, "schedule remove 1")
	e.ephemeral(admin, "Schedule #1 removed")
	e.command(admin, "schedule remove 1")
	e.ephemeral(admin, "There is no schedule #1")
	// A due schedule is announced in the channel.
	e.bot.Announce(context.Background(), "🗓 test announcement")
	e.waitFor("the announcement", func() bool {
		for _, m := range e.slack.Messages(channel) {
			if strings.Contains(m.Text, "test announcement") {
				return true
			}
		}
		return false
	})
}

// A large fleet with many failures still fits Block Kit's limits: the fake
// Slack refuses messages past them, so every post and edit must go through.
func TestBlockKitLimitsAtScale(t *testing.T) {
	fail := map[int]fleetsim.Behavior{}
	for i := 0; i < 300; i += 3 {
		fail[i] = fleetsim.UpdateFails
	}
	// No host fails its health check: a long health timeout keeps a healthy
	// host on a loaded machine from being counted as failed.
	e := newEnv(t, envOptions{hosts: 300, failAt: fail, health: 30 * time.Second,
		settings: rollout.Settings{Stages: []int{100}, Concurrency: 20, Threshold: 100}})
	e.command(admin, "start v2")
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	e.waitFor("the final status", e.rolloutEnded)
	m, _ := e.statusMessage()
	text := blockText(m.Blocks)
	if !strings.Contains(text, "and 90 more — `/rollout status failed`") {
		t.Errorf("status message failures not cut:\n%s", text)
	}
	e.command(user, "status failed")
	got := e.ephemeral(user, "*Failures*")
	for _, id := range e.failing {
		if !strings.Contains(got, "`"+id+"`") {
			t.Errorf("status failed does not list %s", id)
		}
	}
	for _, c := range e.slack.CallLog() {
		if c.Error != "" {
			t.Errorf("%s answered %s", c.Method, c.Error)
		}
	}
	// Per-host thread replies stop at the cap, with one "and N more".
	e.waitFor("the summary", func() bool {
		rs := e.slack.Replies(channel, m.TS)
		return len(rs) > 0 && strings.Contains(rs[len(rs)-1].Text, "Completed")
	})
	hostReplies, more := 0, false
	for _, r := range e.slack.Replies(channel, m.TS) {
		if strings.Contains(r.Text, "rolled back at *update*") {
			hostReplies++
		}
		more = more || strings.Contains(r.Text, "75 more failed or rolled-back hosts")
	}
	if hostReplies != 25 || !more {
		t.Errorf("%d host replies (want the cap, 25) and more=%v", hostReplies, more)
	}
}

// tickClock is a clock the test sets; the scheduler never waits on it.
type tickClock struct{ now time.Time }

func (c *tickClock) Now() time.Time                       { return c.now }
func (c *tickClock) After(time.Duration) <-chan time.Time { return nil }

// A schedule that comes due starts a rollout exactly as /rollout start does:
// announced in the channel, with the live status message.
func TestScheduleStartsARollout(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 3})
	clock := &tickClock{now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	sched := schedule.New(schedule.Config{Store: e.db, Engine: e.engine, Announcer: e.bot, Owner: "test", Clock: clock})
	ctx := context.Background()
	s, err := sched.AddSchedule(ctx, rollout.Schedule{Spec: "30 2 * * *", Version: "v2", CreatedBy: admin, Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	clock.now = s.Next
	if _, err := sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	r := e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	if r.Source != rollout.SourceSchedule || r.StartedBy != "schedule #1" {
		t.Errorf("rollout %+v", r)
	}
	e.waitFor("the announcement and the final status", func() bool {
		announced := false
		for _, m := range e.slack.Messages(channel) {
			announced = announced || strings.Contains(m.Text, "started rollout #1 of v2 on 3 hosts")
		}
		return announced && e.rolloutEnded()
	})
}

// Name is how the web view shows an actor: a Slack user's name from
// users.info, and the actor itself when it is no Slack user (the terminal's
// user, a schedule) or Slack does not know the id.
func TestNames(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 1})
	ctx := context.Background()
	for id, want := range map[string]string{admin: "alice", user: "bob", "root": "root", "schedule nightly": "schedule nightly", "U0NOBODY": "U0NOBODY"} {
		if got := e.bot.Name(ctx, id); got != want {
			t.Errorf("Name(%q) = %q, want %q", id, got, want)
		}
	}
	before := e.slack.Calls("users.info")
	e.bot.Name(ctx, admin)
	e.bot.Name(ctx, "U0NOBODY")
	if n := e.slack.Calls("users.info") - before; n != 0 {
		t.Errorf("names asked again cost %d more users.info calls, want none (cached, unknown ids too)", n)
	}
}
