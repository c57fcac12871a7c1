package bot_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
)

const (
	seed    = 7
	channel = "C0OPS"
	admin   = "U0ADMIN"
	user    = "U0USER"
	groupie = "U0GROUPIE"
	wsAdmin = "U0WSADMIN" // a workspace admin
)

// env is a bot wired as `serve` wires it, against a fake Slack and a
// simulated fleet over real SSH, with a real SQLite store.
type env struct {
	t       *testing.T
	slack   *slackfake.Server
	fleet   *fleetsim.Fleet
	db      *store.DB
	engine  *rollout.Engine
	bot     *bot.Bot
	logs    *syncBuffer
	failing []string // ids of the hosts set to fail
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

type envOptions struct {
	hosts     int
	latency   time.Duration
	update    time.Duration             // added to every update command (fleetsim UpdateDelay)
	slow      time.Duration             // how long a Slow host waits before each command
	failAt    map[int]fleetsim.Behavior // by position in the rollout's shuffled order
	settings  rollout.Settings
	notMember bool // the bot is not in the status channel
	wsAdmins  bool // workspace admins are rolloutbot admins
	calendar  rollout.Calendar
	confirm   bool // /rollout start shows its plan with Start / Cancel first
	// health is the health timeout (default 2s, which a HealthFails host
	// waits out); longer where no host fails its health check.
	health time.Duration

	link func(int64) string // the web view's links
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.settings.Stages == nil {
		o.settings = rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: 3, Threshold: 30}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, cancel: cancel, logs: &syncBuffer{}}
	e.slack = slackfake.New(slackfake.Options{PingInterval: time.Second})
	e.slack.AddUser(slackfake.User{ID: admin, Name: "alice"})
	e.slack.AddUser(slackfake.User{ID: user, Name: "bob"})
	e.slack.AddUser(slackfake.User{ID: groupie, Name: "carol"})
	e.slack.AddUser(slackfake.User{ID: wsAdmin, Name: "dave", IsAdmin: true})
	e.slack.AddUserGroup("S0OPS", "ops", groupie)
	e.slack.AddChannel(channel, "ops", !o.notMember)
	e.slack.AddChannel("C0RANDOM", "random", true)

	var err error
	e.fleet, err = fleetsim.Start(ctx, fleetsim.Options{Hosts: o.hosts, Latency: o.latency, UpdateDelay: o.update, SlowDelay: o.slow})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := e.fleet.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	e.db, err = store.Open(ctx, "sqlite:"+filepath.Join(dir, "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []rollout.Host
	for _, h := range e.fleet.Hosts() {
		hosts = append(hosts, rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port})
	}
	if err := e.db.PutHosts(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	index := map[string]int{}
	for i, h := range hosts {
		index[h.ID] = i
	}
	order := rollout.Shuffle(hosts, seed)
	// In position order, so e.failing[i] is the i-th failing host to run.
	for _, pos := range slices.Sorted(maps.Keys(o.failAt)) {
		e.fleet.SetBehavior(index[order[pos].ID], o.failAt[pos])
		e.failing = append(e.failing, order[pos].ID)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	runner, err := sshrunner.New(sshrunner.Config{User: "fleet", KeyFile: filepath.Join(dir, "client_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"), CommandTimeout: 5 * time.Second,
		Recipe: sshrunner.Recipe{Version: "fleetctl version", Update: "fleetctl update {version}", Health: "fleetctl health",
			Rollback: "fleetctl rollback {version}"}}, e.db, log)
	if err != nil {
		t.Fatal(err)
	}
	api := bot.NewClient("xoxb-test", "xapp-test", e.slack.APIURL(), nil)
	status := bot.NewStatus(api, bot.StatusConfig{Channel: channel, EditInterval: 100 * time.Millisecond, ReplyInterval: time.Millisecond,
		WaitRefresh: 50 * time.Millisecond, Link: o.link}, e.db, log)
	e.engine = rollout.New(rollout.Config{Store: e.db, Inventory: e.db, Updater: runner, Notifier: status, Logger: log,
		Defaults: o.settings, Seed: func() int64 { return seed }, HealthTimeout: cmp.Or(o.health, 2*time.Second),
		HealthInterval: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond, Freezes: e.db, Calendar: o.calendar})
	b := bot.New(api, bot.Config{Channel: channel, Admins: []string{admin}, AdminGroups: []string{"S0OPS"}, WorkspaceAdmins: o.wsAdmins,
		Link: o.link, ConfirmStart: o.confirm},
		e.engine, e.db, e.db, status, log)
	b.SetFreezer(e.engine)
	e.bot = b
	for _, run := range []func(context.Context){
		func(ctx context.Context) { _ = e.engine.Serve(ctx) },
		status.Run,
		func(ctx context.Context) { _ = b.Run(ctx) },
	} {
		e.done.Go(func() { run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		e.done.Wait()
		e.db.Close()
		e.fleet.Close()
		e.slack.Close()
		if t.Failed() {
			t.Logf("bot log:\n%s", e.logs.String())
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.slack.WaitConnections(wctx, 1); err != nil {
		t.Fatalf("bot did not connect: %v", err)
	}
	return e
}

// command types /rollout text as who, in the ops channel, and waits for the ack.
func (e *env) command(who, text string) slackfake.Ack {
	e.t.Helper()
	id := e.slack.SlashCommand(slackfake.SlashCommand{UserID: who, ChannelID: channel, Text: text})
	return e.waitAck(id)
}

func (e *env) waitAck(id string) slackfake.Ack {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.slack.WaitAck(ctx, id)
	if err != nil {
		e.t.Fatalf("no ack for %s: %v", id, err)
	}
	if ack.Delay >= 3*time.Second {
		e.t.Errorf("ack took %s, past Slack's 3 s deadline", ack.Delay)
	}
	return ack
}

// waitFor waits, for at most 20 s, until cond holds.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.slack.WaitFor(ctx, cond); err != nil {
		e.t.Fatalf("timed out waiting for %s", what)
	}
}

// waitRollout polls the store, for at most 30 s, until the latest rollout satisfies cond.
func (e *env) waitRollout(what string, cond func(*rollout.Rollout) bool) *rollout.Rollout {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
		rs, err := e.db.Rollouts(context.Background(), 1)
		if err == nil && len(rs) == 1 && cond(rs[0]) {
			tick.Stop()
			return rs[0]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for the rollout to be %s", what)
		}
	}
}

// ephemeral waits for an ephemeral message to who containing want.
func (e *env) ephemeral(who, want string) string {
	e.t.Helper()
	var found string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := e.slack.WaitFor(ctx, func() bool {
		for _, m := range e.slack.Ephemerals(channel, who) {
			if text := m.Text + "\n" + blockText(m.Blocks); strings.Contains(text, want) {
				found = text
				return true
			}
		}
		return false
	})
	if err != nil {
		var got []string
		for _, m := range e.slack.Ephemerals(channel, who) {
			got = append(got, m.Text)
		}
		e.t.Fatalf("no ephemeral to %s saying %q; got %q", who, want, got)
	}
	return found
}

// statusMessage is the rollout's status message in the channel.
func (e *env) statusMessage() (slackfake.Message, bool) {
	for _, m := range e.slack.Messages(channel) {
		if m.ThreadTS == "" && strings.Contains(string(m.Blocks), "Rollout #") {
			return m, true
		}
	}
	return slackfake.Message{}, false
}

func (e *env) rolloutEnded() bool {
	m, ok := e.statusMessage()
	return ok && !strings.Contains(string(m.Blocks), bot.HaltActionID) && strings.Contains(string(m.Blocks), bot.OutcomeBlockID)
}

func ackText(a slackfake.Ack) string {
	var p struct{ Text string }
	_ = json.Unmarshal(a.Payload, &p)
	return p.Text
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// blockText is the text of every text field of some blocks, one per line.
func blockText(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v)
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if t, ok := x["text"].(string); ok {
				out = append(out, t)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return strings.Join(out, "\n")
}
