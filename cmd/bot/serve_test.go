package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
)

const admin = "U0ADMIN"

// slackFixture adds a fake Slack and the serve settings to a fleet fixture.
func slackFixture(t *testing.T, o fixtureOptions) (*fixture, *slackfake.Server, string) {
	t.Helper()
	fake := slackfake.New(slackfake.Options{PingInterval: time.Second})
	t.Cleanup(fake.Close)
	fake.AddUser(slackfake.User{ID: admin, Name: "alice"})
	fake.AddChannel("C0OPS", "ops", true)
	o.extra += fmt.Sprintf("slack:\n  channel: C0OPS\n  admins: [%s]\n  edit_interval: 1s\n", admin)
	f := newFixture(t, o)
	// The ops port is taken once the simulated fleet has its ports, which it
	// takes in sequence: taken before, the fleet could bind it.
	addr := freeAddr(t)
	cfg, err := os.OpenFile(f.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if _, err := fmt.Fprintf(cfg, "http:\n  addr: %s\n", addr); err != nil {
		t.Fatal(err)
	}
	f.env = append(f.env, "SLACK_BOT_TOKEN=xoxb-test", "SLACK_APP_TOKEN=xapp-test", "SLACK_API_URL="+fake.APIURL())
	return f, fake, addr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitConnections waits, at most 30 s, until n bots are connected to Slack.
func waitConnections(t *testing.T, fake *slackfake.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fake.WaitConnections(ctx, n); err != nil {
		t.Fatalf("%d bots did not connect to Slack: %v", n, err)
	}
}

// waitState polls the store, at most 60 s, until the latest rollout is in a state cond accepts.
func waitState(t *testing.T, f *fixture, cond func(*rollout.Rollout) bool) *rollout.Rollout {
	t.Helper()
	db := f.store()
	deadline := time.Now().Add(60 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
		if rs, err := db.Rollouts(context.Background(), 1); err == nil && len(rs) == 1 && cond(rs[0]) {
			return rs[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the rollout")
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func metric(body, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// serve in this process: a rollout from Slack, then /healthz and /metrics.
func TestServeHealthAndMetrics(t *testing.T) {
	f, fake, addr := slackFixture(t, fixtureOptions{hosts: 6})
	env := map[string]string{}
	for _, kv := range f.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, []string{"serve", "--config", f.cfg}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	}()
	waitConnections(t, fake, 1)
	var code int
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); time.Now().Before(deadline); <-tick.C {
		if code, body = get(t, "http://"+addr+"/healthz"); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK || !strings.Contains(body, `"slack":"connected"`) || !strings.Contains(body, `"store":"ok"`) {
		t.Fatalf("healthz %d %s", code, body)
	}
	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2 now"})
	waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	f.assertEachHostOnce()

	_, body = get(t, "http://"+addr+"/metrics")
	for name, want := range map[string]float64{
		`rolloutbot_rollouts_total{outcome="completed"}`:                                1,
		`rolloutbot_hosts_total{status="success"}`:                                      6,
		`rolloutbot_hosts_in_flight`:                                                    0,
		`rolloutbot_host_update_duration_seconds_count{status="success",step="health"}`: 6,
	} {
		if got := metric(body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metric(body, `rolloutbot_slack_api_calls_total{code="OK",method="chat.postMessage"}`); got < 1 {
		t.Errorf("Slack calls not counted: %v", got)
	}
}

// SIGTERM mid-rollout: hosts in flight finish, the process exits without
// starting more (the rollout is left in the middle), and the next start
// resumes without updating a host twice.
func TestServeSIGTERMAndRestart(t *testing.T) {
	f, fake, _ := slackFixture(t, fixtureOptions{hosts: 12, latency: 100 * time.Millisecond})
	c := f.child("serve")
	waitConnections(t, fake, 1)
	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2 now"})
	f.waitUpdates(4)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, c.out.String())
	}
	db := f.store()
	r, err := db.ActiveRollout(context.Background())
	if err != nil {
		t.Fatalf("no active rollout after SIGTERM: %v\n%s", err, c.out.String())
	}
	if r.Owner != "" {
		t.Errorf("lease not released: %q", r.Owner)
	}
	results, _ := db.HostResults(context.Background(), r.ID)
	done := 0
	for _, hr := range results {
		if hr.Status == rollout.StatusUpdating {
			t.Errorf("%s left updating: in-flight hosts must finish before exit", hr.Host.ID)
		}
		if hr.Status.Done() {
			done++
		}
	}
	if done == 0 || done == len(results) {
		t.Fatalf("%d of %d hosts done at SIGTERM; the test needs a rollout in the middle", done, len(results))
	}

	f.child("serve")
	waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	f.assertEachHostOnce()
	// The restarted bot kept editing the same status message.
	msgs := fake.Messages("C0OPS")
	var status []slackfake.Message
	for _, m := range msgs {
		if strings.Contains(string(m.Blocks), "Rollout #1") {
			status = append(status, m)
		}
	}
	if len(status) != 1 {
		t.Fatalf("%d status messages, want the one edited across the restart", len(status))
	}
}

// Two serve processes on one PostgreSQL, as SPEC §6 runs them for high
// availability: exactly one drives the rollout; a Halt pressed on the other
// reaches the driver; when the driver dies, the other takes over and
// finishes, every host updated exactly once, in the same status message.
func TestServeHighAvailability(t *testing.T) {
	f, fake, addrA := slackFixture(t, fixtureOptions{hosts: 30, latency: 100 * time.Millisecond, lease: time.Second, dbURL: pg.NewDatabase(t)})
	f.run("migrate")
	raw, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgB := filepath.Join(f.dir, "rolloutbot-b.yaml")
	if err := os.WriteFile(cfgB, []byte(strings.Replace(string(raw), addrA, freeAddr(t), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A connects first, then B: the fake hands envelopes to the sockets in
	// turn, so the start goes to A and the Halt click after it to B.
	a := f.child("serve")
	waitConnections(t, fake, 1)
	b := f.childWith(cfgB, "serve")
	waitConnections(t, fake, 2)
	byPid := map[int]*child{a.cmd.Process.Pid: a, b.cmd.Process.Pid: b}
	driver := func(r *rollout.Rollout) *child {
		for pid, c := range byPid {
			if strings.Contains(r.Owner, "-"+strconv.Itoa(pid)+"-") {
				return c
			}
		}
		return nil
	}
	logs := func() string { return "A:\n" + a.out.String() + "\nB:\n" + b.out.String() }

	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2 now"})
	r := waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase.Active() && r.MessageTS != "" })
	f.waitUpdates(2)
	if d := driver(r); d != a {
		t.Fatalf("rollout driven by %q, want A (pid %d), which took the start:\n%s", r.Owner, a.cmd.Process.Pid, logs())
	}

	id, err := fake.ClickButton(slackfake.ButtonClick{UserID: admin, ChannelID: "C0OPS", MessageTS: r.MessageTS, ActionID: bot.HaltActionID})
	if err != nil {
		t.Fatal(err)
	}
	clicked := time.Now()
	r = waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseHalted })
	t.Logf("halted %s after the click on the other process", time.Since(clicked).Round(time.Millisecond))
	if !strings.Contains(b.out.String(), "halt requested") || strings.Contains(a.out.String(), "halt requested") {
		t.Fatalf("the Halt click (envelope %s) was not taken by B, the process not driving:\n%s", id, logs())
	}
	if r.Halt == nil || r.Halt.By != admin {
		t.Errorf("halted by %v", r.Halt)
	}
	if n := f.fleet.Totals().Updates; n >= 30 {
		t.Fatalf("all %d hosts updated before the halt took effect", n)
	}

	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "resume"})
	r = waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase.Active() && r.Owner != "" })
	resumed := f.fleet.Totals().Updates
	f.waitUpdates(resumed + 2)
	d := driver(r)
	if d == nil {
		t.Fatalf("no process drives the resumed rollout (owner %q)", r.Owner)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.wait(t)
	if n := f.fleet.Totals().Updates; n >= 30 {
		t.Fatalf("all %d hosts updated before the kill", n)
	}
	waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })
	f.assertEachHostOnce()

	var status []slackfake.Message
	for _, m := range fake.Messages("C0OPS") {
		if strings.Contains(string(m.Blocks), "Rollout #1") {
			status = append(status, m)
		}
	}
	if len(status) != 1 {
		t.Fatalf("%d status messages, want the one edited by both processes", len(status))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final := func() bool {
		m, _ := fake.Message("C0OPS", status[0].TS)
		return strings.Contains(string(m.Blocks), bot.OutcomeBlockID) && !strings.Contains(string(m.Blocks), bot.HaltActionID) &&
			strings.Contains(string(m.Blocks), "*30/30* done")
	}
	if err := fake.WaitFor(ctx, final); err != nil {
		m, _ := fake.Message("C0OPS", status[0].TS)
		t.Fatalf("the status message did not reach the final state: %s\n%s", m.Blocks, logs())
	}
}

// A rollout started from a terminal shows in Slack like any other when Slack
// is configured: its status message is posted, pinned and ended by the CLI
// process, and a Halt pressed on it is taken by the running bot and stops
// the CLI's rollout.
func TestCLIRolloutInSlack(t *testing.T) {
	f, fake, _ := slackFixture(t, fixtureOptions{hosts: 30, latency: 100 * time.Millisecond})
	f.child("serve")
	waitConnections(t, fake, 1)
	cli := f.child("rollout", "start", "v2")
	r := waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase.Active() && r.MessageTS != "" })
	if r.Source != rollout.SourceCLI {
		t.Fatalf("rollout from %s, want the CLI", r.Source)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fake.WaitFor(ctx, func() bool { p := fake.Pins("C0OPS"); return len(p) == 1 && p[0] == r.MessageTS }); err != nil {
		t.Fatalf("the CLI's status message %s is not pinned: %v", r.MessageTS, fake.Pins("C0OPS"))
	}
	if _, err := fake.ClickButton(slackfake.ButtonClick{UserID: admin, ChannelID: "C0OPS", MessageTS: r.MessageTS, ActionID: bot.HaltActionID}); err != nil {
		t.Fatal(err)
	}
	if code := cli.wait(t); code == 0 || !strings.Contains(cli.out.String(), "halted") {
		t.Fatalf("the CLI exited %d after the Halt; output:\n%s", code, cli.out.String())
	}
	// The CLI wrote the final state before it exited.
	m, _ := fake.Message("C0OPS", r.MessageTS)
	if b := string(m.Blocks); !strings.Contains(b, bot.OutcomeBlockID) || strings.Contains(b, bot.HaltActionID) || !strings.Contains(b, "Halted by") {
		t.Errorf("the status message after the halt:\n%s", b)
	}
	if n := f.fleet.Totals().Updates; n >= 30 {
		t.Errorf("all %d hosts updated: the halt did not stop the CLI's rollout", n)
	}
}

// Break-glass: with Slack configured but away, a rollout from the terminal
// goes on, with one clear error and no message.
func TestCLIRolloutWithSlackAway(t *testing.T) {
	f, _, _ := slackFixture(t, fixtureOptions{hosts: 6})
	f.env = append(f.env, "SLACK_API_URL=http://"+freeAddr(t)+"/api/") // the last one counts
	code, out := f.run("rollout", "start", "v2")
	if code != 0 {
		t.Fatalf("rollout start exited %d with Slack away:\n%s", code, out)
	}
	if n := strings.Count(out, "cannot post the rollout status message"); n != 1 {
		t.Errorf("%d errors about the status message, want 1:\n%s", n, out)
	}
	f.assertEachHostOnce()
}
