package slackfake

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// bot is the stock slack-go Socket Mode client, acking every request.
type bot struct {
	api    *slack.Client
	events chan socketmode.Event
}

func newFake(t *testing.T, opts Options) *Server {
	s := New(opts)
	t.Cleanup(s.Close)
	s.AddUser(User{ID: "U1", Name: "alice", IsAdmin: true})
	s.AddUser(User{ID: "U2", Name: "bob", Deleted: true})
	s.AddChannel("C1", "deploys", true)
	s.AddChannel("C2", "elsewhere", false)
	return s
}

func startBot(t *testing.T, s *Server, opts ...socketmode.Option) *bot {
	api := slack.New("xoxb-test", slack.OptionAppLevelToken("xapp-test"), slack.OptionAPIURL(s.APIURL()))
	sm := socketmode.New(api, opts...)
	b := &bot{api: api, events: make(chan socketmode.Event, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sm.RunContext(ctx)
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-sm.Events:
				switch evt.Type {
				case socketmode.EventTypeSlashCommand:
					_ = sm.Ack(*evt.Request, map[string]string{"text": "queued"})
				case socketmode.EventTypeInteractive:
					_ = sm.Ack(*evt.Request)
				case socketmode.EventTypeHello:
				default:
					continue
				}
				select {
				case b.events <- evt:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func (b *bot) next(t *testing.T, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case evt := <-b.events:
			if evt.Type == typ {
				return evt
			}
		case <-timer.C:
			t.Fatalf("no %s event", typ)
		}
	}
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSlashCommand(t *testing.T) {
	s := newFake(t, Options{})
	b := startBot(t, s)
	ctx := timeout(t)
	if err := s.WaitConnections(ctx, 1); err != nil {
		t.Fatal(err)
	}
	hello := b.next(t, socketmode.EventTypeHello)
	if hello.Request.NumConnections != 1 || hello.Request.ConnectionInfo.AppID != appID {
		t.Errorf("hello = %+v", hello.Request)
	}

	id := s.SlashCommand(SlashCommand{UserID: "U1", ChannelID: "C1", Text: "deploy api v1.2"})
	evt := b.next(t, socketmode.EventTypeSlashCommand)
	cmd := evt.Data.(slack.SlashCommand)
	if evt.Request.EnvelopeID != id || !evt.Request.AcceptsResponsePayload {
		t.Errorf("envelope = %+v, want id %s", evt.Request, id)
	}
	if cmd.Command != "/rollout" || cmd.Text != "deploy api v1.2" || cmd.UserID != "U1" || cmd.UserName != "alice" ||
		cmd.ChannelID != "C1" || cmd.ChannelName != "deploys" || cmd.TeamID != "T0001" || cmd.APIAppID != appID ||
		cmd.ResponseURL == "" || cmd.TriggerID == "" || cmd.IsEnterpriseInstall {
		t.Errorf("command = %+v", cmd)
	}
	var raw map[string]any
	if err := json.Unmarshal(evt.Request.Payload, &raw); err != nil || raw["is_enterprise_install"] != "false" {
		t.Errorf("is_enterprise_install = %#v (%v), want the string \"false\"", raw["is_enterprise_install"], err)
	}

	ack, err := s.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(ack.Payload) != `{"text":"queued"}` || ack.Delay < 0 || ack.ReceivedAt.IsZero() {
		t.Errorf("ack = %+v", ack)
	}
	// The response_url points at the fake, never at hooks.slack.com.
	resp, err := http.Post(cmd.ResponseURL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s.Calls("response_url") != 1 {
		t.Errorf("response_url calls = %d", s.Calls("response_url"))
	}
	if n := s.Calls("apps.connections.open"); n != 1 || s.ConnectionsOpened() != 1 {
		t.Errorf("apps.connections.open calls = %d, opened = %d", n, s.ConnectionsOpened())
	}
}

func TestClickButton(t *testing.T) {
	s := newFake(t, Options{})
	b := startBot(t, s)
	ctx := timeout(t)
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "Roll out *api*?", false, false), nil, nil),
		slack.NewActionBlock("decide", slack.NewButtonBlockElement("approve", "rollout-7",
			slack.NewTextBlockObject("plain_text", "Approve", false, false))),
	}
	_, ts, err := b.api.PostMessage("C1", slack.MsgOptionText("Roll out api?", false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnections(ctx, 1); err != nil {
		t.Fatal(err)
	}

	id, err := s.ClickButton(ButtonClick{UserID: "U1", ChannelID: "C1", MessageTS: ts, ActionID: "approve"})
	if err != nil {
		t.Fatal(err)
	}
	evt := b.next(t, socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID != "U1" || cb.User.Name != "alice" || cb.Channel.ID != "C1" ||
		cb.Container.MessageTs != ts || cb.Container.ChannelID != "C1" || cb.Message.Timestamp != ts ||
		cb.Message.Text != "Roll out api?" || len(cb.Message.Blocks.BlockSet) != 2 || cb.Team.ID != "T0001" {
		t.Errorf("callback = %+v", cb)
	}
	if acts := cb.ActionCallback.BlockActions; len(acts) != 1 || acts[0].ActionID != "approve" || acts[0].BlockID != "decide" ||
		acts[0].Value != "rollout-7" || acts[0].Text.Text != "Approve" || acts[0].Type != "button" {
		t.Errorf("actions = %+v", acts)
	}
	if evt.Request.EnvelopeID != id || evt.Request.AcceptsResponsePayload {
		t.Errorf("envelope = %+v", evt.Request)
	}
	if _, err := s.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClickButton(ButtonClick{UserID: "U1", ChannelID: "C1", MessageTS: "1.000001", ActionID: "approve"}); err == nil {
		t.Error("click on a missing message: no error")
	}
}

func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || err.Error() != want {
		t.Errorf("%s: error %v, want %s", what, err, want)
	}
}

func TestWebAPI(t *testing.T) {
	s := newFake(t, Options{})
	api := slack.New("xoxb-test", slack.OptionAPIURL(s.APIURL()))

	auth, err := api.AuthTest()
	if err != nil || auth.UserID != "U0BOT" || auth.TeamID != "T0001" {
		t.Errorf("auth.test = %+v, %v", auth, err)
	}
	_, err = slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL())).AuthTest()
	wantErr(t, "wrong token", err, "invalid_auth")

	section := slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "step 1/3", false, false), nil, nil)
	ch, ts1, err := api.PostMessage("C1", slack.MsgOptionText("rolling out", false), slack.MsgOptionBlocks(section))
	if err != nil || ch != "C1" {
		t.Fatalf("post: %s %v", ch, err)
	}
	_, ts2, err := api.PostMessage("C1", slack.MsgOptionText("canary ok", false), slack.MsgOptionTS(ts1))
	if err != nil || ts2 <= ts1 {
		t.Fatalf("reply ts %s after %s: %v", ts2, ts1, err)
	}
	if top, replies := s.Messages("C1"), s.Replies("C1", ts1); len(top) != 1 || len(replies) != 1 || replies[0].Text != "canary ok" {
		t.Errorf("messages %+v, replies %+v", top, replies)
	}
	_, _, err = api.PostMessage("C2", slack.MsgOptionText("x", false))
	wantErr(t, "post to a channel without the bot", err, "not_in_channel")
	_, _, err = api.PostMessage("C404", slack.MsgOptionText("x", false))
	wantErr(t, "post to an unknown channel", err, "channel_not_found")
	many := make([]slack.Block, 51)
	for i := range many {
		many[i] = slack.NewDividerBlock()
	}
	_, _, err = api.PostMessage("C1", slack.MsgOptionBlocks(many...))
	wantErr(t, "51 blocks", err, "invalid_blocks")
	btn := slack.NewButtonBlockElement("go", "1", slack.NewTextBlockObject("plain_text", "Go", false, false))
	btn.Confirm = slack.NewConfirmationBlockObject(slack.NewTextBlockObject("plain_text", "Sure?", false, false),
		slack.NewTextBlockObject("plain_text", strings.Repeat("x", 301), false, false),
		slack.NewTextBlockObject("plain_text", "Yes", false, false), slack.NewTextBlockObject("plain_text", "No", false, false))
	_, _, err = api.PostMessage("C1", slack.MsgOptionBlocks(slack.NewActionBlock("a", btn)))
	wantErr(t, "a confirm text of 301 characters", err, "invalid_blocks")
	_, _, err = api.PostMessage("C1")
	wantErr(t, "empty message", err, "no_text")

	if _, _, _, err := api.UpdateMessage("C1", ts1, slack.MsgOptionText("step 2/3", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message("C1", ts1); m.Text != "step 2/3" || m.Blocks == nil || m.Edits != 1 {
		t.Errorf("update without blocks: %+v", m)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts1, slack.MsgOptionText("done", false), slack.MsgOptionBlocks()); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message("C1", ts1); m.Blocks != nil || m.Edits != 2 || len(m.History) != 3 || m.History[0] == nil {
		t.Errorf("update with blocks=[]: %+v", m)
	}
	_, _, _, err = api.UpdateMessage("C1", "1.000001", slack.MsgOptionText("x", false))
	wantErr(t, "update a missing message", err, "message_not_found")

	ref := slack.NewRefToMessage("C1", ts1)
	if err := api.AddPin("C1", ref); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "pin twice", api.AddPin("C1", ref), "already_pinned")
	wantErr(t, "pin a missing message", api.AddPin("C1", slack.NewRefToMessage("C1", "1.000001")), "message_not_found")
	items, _, err := api.ListPins("C1")
	if err != nil || len(items) != 1 || items[0].Message.Timestamp != ts1 || len(s.Pins("C1")) != 1 {
		t.Errorf("pins.list = %+v, %v; Pins = %v", items, err, s.Pins("C1"))
	}
	if err := api.RemovePin("C1", ref); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "unpin twice", api.RemovePin("C1", ref), "no_pin")

	if _, err := api.PostEphemeral("C1", "U1", slack.MsgOptionText("only you", false)); err != nil {
		t.Fatal(err)
	}
	if e := s.Ephemerals("C1", "U1"); len(e) != 1 || e[0].Text != "only you" {
		t.Errorf("ephemerals = %+v", e)
	}

	if u, err := api.GetUserInfo("U1"); err != nil || !u.IsAdmin || u.IsOwner || u.Name != "alice" {
		t.Errorf("users.info U1 = %+v, %v", u, err)
	}
	if u, err := api.GetUserInfo("U2"); err != nil || !u.Deleted {
		t.Errorf("users.info U2 = %+v, %v", u, err)
	}
	_, err = api.GetUserInfo("U404")
	wantErr(t, "unknown user", err, "user_not_found")

	s.AddUserGroup("S1", "sre", "U1", "U2")
	if m, err := api.GetUserGroupMembers("S1"); err != nil || len(m) != 2 {
		t.Errorf("usergroups.users.list = %v, %v", m, err)
	}
	s.SetUserGroupMembers("S1", "U2")
	if m, err := api.GetUserGroupMembers("S1"); err != nil || len(m) != 1 || m[0] != "U2" {
		t.Errorf("after SetUserGroupMembers = %v, %v", m, err)
	}
	_, err = api.GetUserGroupMembers("S404")
	wantErr(t, "unknown group", err, "no_such_subteam")

	if c, err := api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: "C1"}); err != nil || c.Name != "deploys" || !c.IsMember {
		t.Errorf("conversations.info = %+v, %v", c, err)
	}

	resp, err := http.PostForm(s.APIURL()+"chat.nope", url.Values{"token": {"xoxb-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body slack.SlackResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error != "unknown_method" {
		t.Errorf("unknown method: %+v, %v", body, err)
	}
	if n := s.Calls("chat.postMessage"); n != 7 {
		t.Errorf("chat.postMessage calls = %d, want 7", n)
	}
}

func TestInjectedFailures(t *testing.T) {
	s := newFake(t, Options{})
	api := slack.New("xoxb-test", slack.OptionAPIURL(s.APIURL()))

	s.RateLimitNext("chat.postMessage", 7, 1)
	_, _, err := api.PostMessage("C1", slack.MsgOptionText("hi", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("rate limited post: %v", err)
	}
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("hi", false))
	if err != nil {
		t.Fatal(err)
	}

	s.FailNext("chat.update", "cant_update_message", 2)
	for range 2 {
		_, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("x", false))
		var se slack.SlackErrorResponse
		if !errors.As(err, &se) || se.Err != "cant_update_message" {
			t.Errorf("injected failure: %v", err)
		}
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("x", false)); err != nil {
		t.Errorf("third update: %v", err)
	}
	if s.Calls("chat.postMessage") != 2 || s.Calls("chat.update") != 3 {
		t.Errorf("calls: post %d, update %d", s.Calls("chat.postMessage"), s.Calls("chat.update"))
	}
	if log := s.CallLog(); log[0].Status != http.StatusTooManyRequests || log[0].Error != "ratelimited" || log[2].Error != "cant_update_message" {
		t.Errorf("call log = %+v", log)
	}
}

func TestReconnects(t *testing.T) {
	s := newFake(t, Options{})
	ctx := timeout(t)
	// Sent before any socket exists: queued until one connects.
	early := s.SlashCommand(SlashCommand{UserID: "U1", ChannelID: "C1", Text: "early"})
	b := startBot(t, s)
	if _, err := s.WaitAck(ctx, early); err != nil {
		t.Fatal(err)
	}
	b.next(t, socketmode.EventTypeSlashCommand)

	// slack-go can reconnect before a cut even returns, so the command below
	// may be queued or go straight to the new socket; either way it arrives.
	for i, cut := range []func(){func() { s.Disconnect("refresh_requested") }, s.DropConnections} {
		cut()
		id := s.SlashCommand(SlashCommand{UserID: "U1", ChannelID: "C1", Text: "status"})
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		if evt := b.next(t, socketmode.EventTypeSlashCommand); evt.Request.EnvelopeID != id {
			t.Errorf("got envelope %s, want %s", evt.Request.EnvelopeID, id)
		}
		if n := s.ConnectionsOpened(); n != i+2 {
			t.Errorf("connections opened = %d, want %d", n, i+2)
		}
	}
}

func TestEnvelopesSpreadOverConnections(t *testing.T) {
	s := newFake(t, Options{})
	b1, b2 := startBot(t, s), startBot(t, s)
	ctx := timeout(t)
	if err := s.WaitConnections(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := s.WaitAck(ctx, s.SlashCommand(SlashCommand{UserID: "U1", ChannelID: "C1"})); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*bot{b1, b2} {
		b.next(t, socketmode.EventTypeSlashCommand)
	}
}

func TestPingsKeepSocketAlive(t *testing.T) {
	// A ping every 50 ms against slack-go's 1 s deadline: a loaded machine
	// may delay one, not twenty in a row.
	s := newFake(t, Options{PingInterval: 50 * time.Millisecond})
	startBot(t, s, socketmode.OptionPingInterval(time.Second))
	ctx := timeout(t)
	pings := func() (n int) {
		s.read(func() { n = s.pings })
		return n
	}
	// 60 pongs span several of the client's ping deadlines.
	if err := s.WaitFor(ctx, func() bool { return pings() >= 60 }); err != nil {
		t.Fatal(err)
	}
	if n := s.ConnectionsOpened(); n != 1 {
		t.Errorf("connections opened = %d, want 1", n)
	}

	// Without pings inside its interval, slack-go hangs up and reconnects.
	quiet := newFake(t, Options{PingInterval: time.Hour})
	startBot(t, quiet, socketmode.OptionPingInterval(100*time.Millisecond))
	if err := quiet.WaitFor(ctx, func() bool { return quiet.ConnectionsOpened() >= 2 }); err != nil {
		t.Fatal(err)
	}
}
