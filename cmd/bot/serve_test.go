package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
	addr := freeAddr(t)
	o.extra += fmt.Sprintf("slack:\n  channel: C0OPS\n  admins: [%s]\n  edit_interval: 1s\nhttp:\n  addr: %s\n", admin, addr)
	f := newFixture(t, o)
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

func waitConnected(t *testing.T, fake *slackfake.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fake.WaitConnections(ctx, 1); err != nil {
		t.Fatalf("the bot did not connect to Slack: %v", err)
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
	waitConnected(t, fake)
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
	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2"})
	waitState(t, f, func(r *rollout.Rollout) bool { return r.State == rollout.StateCompleted })
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

// SIGTERM mid-rollout: hosts in flight finish, the process exits within the
// grace period, and the next start resumes without updating a host twice.
func TestServeSIGTERMAndRestart(t *testing.T) {
	f, fake, _ := slackFixture(t, fixtureOptions{hosts: 12, latency: 100 * time.Millisecond})
	c := f.child("serve")
	waitConnected(t, fake)
	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2"})
	f.waitUpdates(4)
	sent := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, c.out.String())
	}
	if took := time.Since(sent); took > 15*time.Second { // the grace period is 10 s
		t.Errorf("exit took %s", took)
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
	waitState(t, f, func(r *rollout.Rollout) bool { return r.State == rollout.StateCompleted })
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
