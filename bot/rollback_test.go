package bot_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
)

// waitCounts polls the store, for at most 30 s, until the latest rollout's
// host counts satisfy cond.
func (e *env) waitCounts(what string, cond func(rollout.Counts) bool) rollout.Counts {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
		rs, err := e.db.Rollouts(context.Background(), 1)
		if err == nil && len(rs) == 1 {
			if c, err := e.db.Counts(context.Background(), rs[0].ID); err == nil && cond(c) {
				tick.Stop()
				return c
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// click presses a button of the status message as who and waits for the ack.
// An empty value takes the button's own, as Slack would send it.
func (e *env) click(who, ts, actionID, value string) {
	e.t.Helper()
	id, err := e.slack.ClickButton(slackfake.ButtonClick{UserID: who, ChannelID: channel, MessageTS: ts, ActionID: actionID,
		BlockID: "rollout_actions", Value: value})
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitAck(id)
}

// hostIndex maps host names to fleet indexes.
func (e *env) hostIndex() map[string]int {
	index := map[string]int{}
	for _, h := range e.fleet.Hosts() {
		index[h.Name] = h.Index
	}
	return index
}

// thread is the text of every reply under the status message, once the
// last one says want.
func (e *env) thread(ts, want string) string {
	e.t.Helper()
	e.waitFor("a last reply saying "+want, func() bool {
		rs := e.slack.Replies(channel, ts)
		return len(rs) > 0 && strings.Contains(rs[len(rs)-1].Text, want)
	})
	var all []string
	for _, r := range e.slack.Replies(channel, ts) {
		all = append(all, r.Text)
	}
	return strings.Join(all, "\n")
}

// ephemerals waits until n ephemerals to who say want.
func (e *env) ephemerals(who, want string, n int) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d answers to %s saying %q", n, who, want), func() bool {
		got := 0
		for _, m := range e.slack.Ephemerals(channel, who) {
			if strings.Contains(m.Text+"\n"+blockText(m.Blocks), want) {
				got++
			}
		}
		return got == n
	})
}

func auditOf(e *env, action string) []rollout.AuditEntry {
	e.t.Helper()
	if err := e.engine.FlushAudit(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	log, err := e.db.AuditLog(context.Background(), 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []rollout.AuditEntry
	for _, a := range log {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// Halt & roll back, pressed mid-stage: the rollout halts, every host it
// updated goes back to its previous version once, the status message ends
// rolled back with no buttons, and the thread tells the story.
func TestHaltAndRollBackButton(t *testing.T) {
	// Slow updates, quick rollbacks: the press lands mid-stage.
	e := newEnv(t, envOptions{hosts: 30, latency: 10 * time.Millisecond, update: 300 * time.Millisecond,
		failAt:   map[int]fleetsim.Behavior{1: fleetsim.HealthFails, 2: fleetsim.RollbackFails},
		settings: rollout.Settings{Stages: []int{100}, Concurrency: 2, Threshold: 50}})
	healthFails, rollbackFails := e.failing[0], e.failing[1]
	e.command(admin, "start v2")
	var ts string
	e.waitFor("a status message with Halt & roll back", func() bool {
		m, ok := e.statusMessage()
		ts = m.TS
		return ok && strings.Contains(string(m.Blocks), bot.RollbackActionID)
	})
	m, _ := e.statusMessage()
	if blocks := string(m.Blocks); !strings.Contains(blocks, `"value":"1:running"`) || !strings.Contains(blockText(m.Blocks), "Halt & roll back") {
		t.Fatalf("buttons do not carry the rollout and its state:\n%s", blocks)
	}

	// A non-admin's press is refused, audited, and changes nothing.
	e.click(user, ts, bot.RollbackActionID, "")
	e.ephemeral(user, "Only rolloutbot admins can roll back")
	if r, _ := e.db.ActiveRollout(context.Background()); r == nil || r.Undo != nil || r.Halt != nil {
		t.Fatalf("a non-admin's press reached the rollout: %+v", r)
	}

	e.waitCounts("6 hosts updated", func(c rollout.Counts) bool { return c.Success >= 6 })
	// The updates from now on wait until the press is answered, so it lands
	// mid-stage however slow the machine.
	e.fleet.Hold()
	// The confirm dialog says how many hosts go back, from the counts shown.
	e.waitFor("a confirm dialog naming 6 or more hosts", func() bool {
		m, _ := e.statusMessage()
		text := blockText(m.Blocks)
		for n := 6; n <= 30; n++ {
			if strings.Contains(text, fmt.Sprintf("Halt #1 and put back the %d hosts it updated, each on its previous version?", n)) {
				return true
			}
		}
		return false
	})
	// One updated host is changed by hand meanwhile: the rollback leaves it alone.
	index := e.hostIndex()
	results, _ := e.db.HostResults(context.Background(), 1)
	var changed string
	for _, hr := range results {
		if hr.Status == rollout.StatusSuccess {
			changed = hr.Host.ID
			break
		}
	}
	e.fleet.SetVersion(index[changed], "v9-hotfix")

	e.click(admin, ts, bot.RollbackActionID, "")
	e.ephemeral(admin, "Rollback of rollout #1 (v2) requested: it halts first")
	e.fleet.Release()
	atPress, _ := e.db.Counts(context.Background(), 1)
	r := e.waitRollout("rolled back", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseRolledBack })
	if r.Undo == nil || r.Undo.By != admin || r.Undo.Reason != "Halt & roll back button" {
		t.Errorf("rollback request %+v", r.Undo)
	}

	// It halted first: only the hosts in flight at the press finished their update.
	results, _ = e.db.HostResults(context.Background(), 1)
	c := rollout.CountResults(results)
	if c.Done() > atPress.Done()+2 || c.Pending == 0 {
		t.Errorf("%d hosts done after the halt, %d at the press (2 at once); %d never started", c.Done(), atPress.Done(), c.Pending)
	}
	// Every host it updated is back on its previous version, put back once;
	// the host changed by hand and the one whose rollback fails are not.
	restored := 0
	for _, hr := range results {
		i := index[hr.Host.ID]
		st := e.fleet.Stats(i)
		var updateRollbacks int64
		if hr.Status == rollout.StatusRolledBack || hr.Status == rollout.StatusFailed && hr.Step == rollout.StepRollback {
			updateRollbacks = 1
		}
		want, wantUndo, wantRollbacks := "v1", rollout.UndoNone, int64(0)
		switch {
		case hr.Host.ID == changed:
			want, wantUndo = "v9-hotfix", rollout.UndoLeft
		case hr.Host.ID == rollbackFails:
			want, wantUndo, wantRollbacks = "v2", rollout.UndoFailed, 1
		case hr.Host.ID == healthFails:
			wantUndo = rollout.UndoNotNeeded
		case hr.Status == rollout.StatusSuccess:
			wantUndo, wantRollbacks = rollout.UndoRestored, 1
			restored++
		}
		if v := e.fleet.Version(i); v != want || hr.Undo.Status != wantUndo || st.Rollbacks-updateRollbacks != wantRollbacks {
			t.Errorf("%s (%s): runs %s, rollback %q, %d rollbacks beyond the update's; want %s, %q, %d",
				hr.Host.ID, hr.Status, v, hr.Undo.Status, st.Rollbacks-updateRollbacks, want, wantUndo, wantRollbacks)
		}
	}

	// The status message ends rolled back, with no buttons.
	e.waitFor("the rolled-back status", func() bool {
		m, _ := e.statusMessage()
		b := string(m.Blocks)
		return strings.Contains(b, bot.OutcomeBlockID) && !strings.Contains(b, bot.HaltActionID) && !strings.Contains(b, bot.RollbackActionID)
	})
	m, _ = e.statusMessage()
	end := fmt.Sprintf("↩️ Rolled back: %d restored, 1 failed, 1 left alone (changed by hand), 1 already back", restored)
	if text := blockText(m.Blocks); !strings.Contains(text, end) || !strings.Contains(text, "Rollback of v2 → previous") ||
		!strings.Contains(text, "Rollback asked by <@"+admin+">: Halt &amp; roll back button") || !strings.Contains(text, "*Not put back*") {
		t.Errorf("rolled-back status lacks %q:\n%s", end, text)
	}

	// The thread: who asked and why, the hosts not put back with their output, the summary.
	thread := e.thread(ts, "Rolled back:")
	for _, want := range []string{
		"⏸ Halt & roll back requested by <@" + admin + ">: Halt &amp; roll back button; ",
		"↩️ Rolling back v2, asked by <@" + admin + ">: Halt &amp; roll back button",
		"✋ left alone `" + changed + "`", "runs v9-hotfix, not v2",
		"❌ not put back `" + rollbackFails + "`", "E: rollback to v1 failed on",
		end + " — the rollback took",
	} {
		if !strings.Contains(thread, want) {
			t.Errorf("thread lacks %q:\n%s", want, thread)
		}
	}

	// The audit log has the refused press and the rollback, with who and why.
	var refused, allowed int
	for _, a := range auditOf(e, "rollback") {
		switch {
		case !a.Allowed && a.Actor == user && a.RolloutID == 1 && a.Detail == "not a rolloutbot admin":
			refused++
		case a.Allowed && a.Actor == admin && a.RolloutID == 1 && a.Detail == "Halt & roll back button":
			allowed++
		default:
			t.Errorf("unexpected audit entry %+v", a)
		}
	}
	if refused != 1 || allowed != 1 {
		t.Errorf("audit has %d refused and %d allowed rollbacks", refused, allowed)
	}

	// A stale press, from a client that still shows the running message,
	// does nothing and says what the rollout does now.
	before := e.fleet.Totals()
	e.click(admin, ts, bot.HaltActionID, "1:running")
	e.ephemeral(admin, "Nothing done: that button is from when rollout #1 was running; now it is rolled back: ")
	e.click(admin, ts, bot.RollbackActionID, "1:running")
	e.ephemerals(admin, "Nothing done: that button is from when rollout #1 was running", 2)
	if after := e.fleet.Totals(); after != before {
		t.Errorf("a stale press touched hosts: %+v, then %+v", before, after)
	}
	if halts := auditOf(e, "halt"); len(halts) != 1 || halts[0].Allowed || !strings.Contains(halts[0].Detail, "stale button") {
		t.Errorf("stale halt audited as %+v", halts)
	}
	if r, _ := e.db.Rollout(context.Background(), 1); r.Phase != rollout.PhaseRolledBack {
		t.Errorf("a stale press changed the rollout: %+v", r)
	}

	// Status lists what the rollback did not put back, and why.
	e.command(user, "status failed")
	got := e.ephemeral(user, "*Not put back by the rollback*")
	for _, want := range []string{"`" + changed + "` ✋ left alone: runs v9-hotfix", "`" + rollbackFails + "` ❌ not put back: rollback to v1 failed",
		fmt.Sprintf("↩️ Rollback asked by <@%s>: Halt &amp; roll back button: %d/%d restored", admin, restored, restored+3)} {
		if !strings.Contains(got, want) {
			t.Errorf("status failed lacks %q:\n%s", want, got)
		}
	}
	e.command(user, "status "+rollbackFails)
	got = e.ephemeral(user, "Rollback: ❌ not put back: rollback to v1 failed")
	if !strings.Contains(got, "E: rollback to v1 failed on "+rollbackFails) {
		t.Errorf("status HOST:\n%s", got)
	}

	// History tells a rolled-back rollout from the others.
	e.command(user, "history")
	if got := e.ephemeral(user, "#1 `v2`"); !strings.Contains(got, fmt.Sprintf("rolled back: %d restored, 1 failed", restored)) {
		t.Errorf("history:\n%s", got)
	}
}

// /rollout rollback on a completed rollout, halted halfway by the Halt
// button of its rollback, refused a second time, and resumed to its end;
// /rollout plan rollback before it.
func TestRollbackCommand(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 8, slow: 250 * time.Millisecond,
		settings: rollout.Settings{Stages: []int{100}, Concurrency: 1, Threshold: 30}})
	e.command(admin, "plan rollback")
	e.ephemeral(admin, "Nothing to roll back: there is no rollout yet.")
	e.command(admin, "rollback")
	e.ephemerals(admin, "Nothing to roll back: there is no rollout yet.", 2)

	e.command(admin, "start v2")
	e.waitRollout("completed", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	e.waitFor("the final status", e.rolloutEnded)
	m, _ := e.statusMessage()
	ts := m.TS

	// Halt pressed on a message drawn while the rollout ran: nothing happens.
	e.click(admin, ts, bot.HaltActionID, "1:running")
	e.ephemeral(admin, "that button is from when rollout #1 was running; now it is completed.")

	e.command(user, "plan rollback")
	got := e.ephemeral(user, "rollback of rollout #1 (v2, completed): 8 hosts to check")
	if !strings.Contains(got, "8 back from v2 to v1") {
		t.Errorf("plan rollback:\n%s", got)
	}
	e.command(user, "rollback")
	e.ephemeral(user, "Only rolloutbot admins can roll back")

	// Held rollbacks: the rollback is still running when its Halt is pressed.
	e.fleet.Hold()
	e.command(admin, "rollback bad release")
	e.ephemeral(admin, "Rolling back rollout #1 (v2): 8 hosts to put back on their previous versions")
	e.waitFor("the rollback view with its Halt button", func() bool {
		m, _ := e.statusMessage()
		return strings.Contains(blockText(m.Blocks), "↩️ *Rolling back v2 → previous*: ") &&
			strings.Contains(string(m.Blocks), `"value":"1:rolling_back"`) && !strings.Contains(string(m.Blocks), bot.RollbackActionID)
	})
	e.click(admin, ts, bot.HaltActionID, "")
	e.ephemeral(admin, "Halt requested for the rollback of rollout #1: no more hosts are put back")
	e.fleet.Release()
	r := e.waitRollout("halted", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })
	c, _ := e.db.Counts(context.Background(), 1)
	if r.Undo == nil || c.Undo.Pending == 0 || c.Undo.Restored == 0 && c.Undo.Restoring == 0 && c.Undo.Failed == 0 {
		t.Fatalf("halted rollback %+v with %+v", r.Undo, c.Undo)
	}
	e.waitFor("the halted rollback's status", func() bool {
		m, _ := e.statusMessage()
		text := blockText(m.Blocks)
		return strings.Contains(text, "⏹ Rollback halted by <@"+admin+">: Halt button") &&
			strings.Contains(text, "`/rollout resume` continues it") && !strings.Contains(string(m.Blocks), bot.HaltActionID)
	})

	e.command(admin, "rollback again")
	e.ephemeral(admin, "Rollout #1 was rolled back already: asked by <@"+admin+">: bad release; it is rollback halted. `/rollout resume` continues the rollback.")
	e.click(admin, ts, bot.HaltActionID, "1:rolling_back")
	e.ephemeral(admin, "that button is from when rollout #1 was rolling back; now it is rollback halted by "+admin)

	e.command(admin, "resume")
	e.ephemeral(admin, "Resumed the rollback of rollout #1 (v2)")
	e.waitRollout("rolled back", func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseRolledBack })
	for i := range 8 {
		if v, n := e.fleet.Version(i), e.fleet.Stats(i).Rollbacks; v != "v1" || n != 1 {
			t.Errorf("host %d runs %s after %d rollbacks, want v1 after 1", i, v, n)
		}
	}
	e.waitFor("the rolled-back status", func() bool {
		m, _ := e.statusMessage()
		return strings.Contains(blockText(m.Blocks), "↩️ Rolled back: 8 restored") && !strings.Contains(string(m.Blocks), bot.HaltActionID)
	})
	thread := e.thread(ts, "Rolled back: 8 restored")
	for _, want := range []string{
		"↩️ Rolling back v2, asked by <@" + admin + ">: bad release: 8 hosts to put back on their previous versions, newest first, 1 at once",
		"⏸ Halt of the rollback requested by <@" + admin + ">: Halt button; ", " being put back: no more hosts are put back",
		"⏹ Rollback halted by <@" + admin + ">: Halt button",
		"↩️ Rollback of v2 picked up again",
	} {
		if !strings.Contains(thread, want) {
			t.Errorf("thread lacks %q:\n%s", want, thread)
		}
	}
	if strings.Contains(thread, "Rollout picked up again") {
		t.Errorf("a rollback is announced as the rollout picked up again:\n%s", thread)
	}
	e.command(user, "hosts")
	e.ephemeral(user, "`v1` × 8")
	var allowed int
	for _, a := range auditOf(e, "rollback") {
		if a.Allowed && a.Actor == admin && a.Detail == "bad release" {
			allowed++
		}
	}
	if allowed != 1 {
		t.Errorf("%d allowed rollbacks by %s for \"bad release\" in the audit log", allowed, admin)
	}
}

// A rollback's thread lists the first ThreadCap hosts it did not put back,
// then one "and N more", whatever the fleet's size.
func TestRollbackThreadIsCapped(t *testing.T) {
	fake := slackfake.New(slackfake.Options{})
	t.Cleanup(fake.Close)
	fake.AddChannel(channel, "ops", true)
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	api := bot.NewClient("xoxb-test", "xapp-test", fake.APIURL(), nil)
	status := bot.NewStatus(api, bot.StatusConfig{Channel: channel, EditInterval: time.Millisecond, ReplyInterval: time.Millisecond, ThreadCap: 3}, db, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { status.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	r := rollout.Rollout{ID: 1, Version: "v2", Phase: rollout.PhaseRollingBack, Hosts: 10, Settings: rollout.Settings{Stages: []int{100}, Concurrency: 4},
		Undo: &rollout.Undo{By: admin, Reason: "5xx", At: time.Now(), Epoch: 2}, CreatedAt: time.Now()}
	p := rollout.Progress{Rollout: r, Stages: r.StageList(), Counts: rollout.Counts{Success: 10, Undo: rollout.UndoCounts{Pending: 10}}}
	status.Notify(rollout.Event{Kind: rollout.EventStarted, Progress: p})
	status.Notify(rollout.Event{Kind: rollout.EventUndoStarted, Progress: p})
	for i := range 10 {
		hr := rollout.HostResult{Index: i, Host: rollout.Host{ID: fmt.Sprintf("web-%d", i), Address: "10.0.0.1", Port: 22}, Status: rollout.StatusSuccess,
			PrevVersion: "v1", Undo: rollout.UndoResult{Status: rollout.UndoFailed, Error: "rollback to v1 failed: exited with status 1", Output: "E: disk full"}}
		if i%2 == 1 {
			hr.Undo = rollout.UndoResult{Status: rollout.UndoRestored}
		}
		p.Counts.Undo.Pending--
		p.Counts.Undo.Add(hr.Undo.Status, 1)
		status.Notify(rollout.Event{Kind: rollout.EventHostDone, Progress: p, Host: &hr})
	}
	p.Rollout.Phase, p.Rollout.FinishedAt = rollout.PhaseRolledBack, time.Now()
	status.Notify(rollout.Event{Kind: rollout.EventEnded, Progress: p, At: time.Now()})

	var ts string
	waitCtx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	err = fake.WaitFor(waitCtx, func() bool {
		for _, m := range fake.Messages(channel) {
			if m.ThreadTS == "" {
				ts = m.TS
			}
		}
		rs := fake.Replies(channel, ts)
		return ts != "" && len(rs) > 0 && strings.Contains(rs[len(rs)-1].Text, "Rolled back: 5 restored, 5 failed")
	})
	if err != nil {
		t.Fatalf("no summary: %v", err)
	}
	var hosts, more int
	var all []string
	for _, m := range fake.Replies(channel, ts) {
		all = append(all, m.Text)
		if strings.HasPrefix(m.Text, "❌ not put back `web-") && strings.Contains(m.Text, "E: disk full") {
			hosts++
		}
		if strings.Contains(m.Text, "… and 2 more hosts not put back") {
			more++
		}
	}
	if hosts != 3 || more != 1 || !strings.HasPrefix(all[0], "↩️ Rolling back v2, asked by <@"+admin+">: 5xx: 10 hosts to put back") {
		t.Errorf("%d host replies (want 3) and %d \"and 2 more\" (want 1):\n%s", hosts, more, strings.Join(all, "\n"))
	}
	err = fake.WaitFor(waitCtx, func() bool {
		m, _ := fake.Message(channel, ts)
		return !strings.Contains(string(m.Blocks), bot.HaltActionID) && strings.Contains(blockText(m.Blocks), "↩️ Rolled back: 5 restored, 5 failed")
	})
	if err != nil {
		m, _ := fake.Message(channel, ts)
		t.Errorf("final message:\n%s", blockText(m.Blocks))
	}
}
