package slackfake

import (
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// A click on an ephemeral message comes from its recipient only, carries
// no message (as Slack's does), and its response_url replaces or deletes it.
func TestClickEphemeral(t *testing.T) {
	s := newFake(t, Options{})
	s.AddUser(User{ID: "U3", Name: "carol"})
	b := startBot(t, s)
	ctx := timeout(t)
	if err := s.WaitConnections(ctx, 1); err != nil {
		t.Fatal(err)
	}
	post := func() string {
		t.Helper()
		ts, err := b.api.PostEphemeral("C1", "U1", slack.MsgOptionText("Start v2?", false), slack.MsgOptionBlocks(
			slack.NewActionBlock("preview", slack.NewButtonBlockElement("go", "plan-1", slack.NewTextBlockObject("plain_text", "Start", false, false)))))
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	ts := post()
	if _, err := s.ClickButton(ButtonClick{UserID: "U3", ChannelID: "C1", MessageTS: ts, ActionID: "go"}); err == nil {
		t.Error("someone else clicked U1's ephemeral")
	}
	id, err := s.ClickButton(ButtonClick{UserID: "U1", ChannelID: "C1", MessageTS: ts, ActionID: "go"})
	if err != nil {
		t.Fatal(err)
	}
	evt := b.next(t, socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	if !cb.Container.IsEphemeral || cb.Container.MessageTs != ts || cb.Message.Timestamp != "" || cb.ResponseURL == "" ||
		len(cb.ActionCallback.BlockActions) != 1 || cb.ActionCallback.BlockActions[0].Value != "plan-1" {
		t.Errorf("callback = %+v", cb)
	}
	if _, err := s.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.api.PostMessage("C1", slack.MsgOptionReplaceOriginal(cb.ResponseURL), slack.MsgOptionText("Started.", false)); err != nil {
		t.Fatal(err)
	}
	if es := s.Ephemerals("C1", "U1"); len(es) != 1 || es[0].TS != ts || es[0].Text != "Started." || len(es[0].History) != 2 {
		t.Errorf("after replace_original: %+v", es)
	}

	ts = post()
	if _, err := s.ClickButton(ButtonClick{UserID: "U1", ChannelID: "C1", MessageTS: ts, ActionID: "go"}); err != nil {
		t.Fatal(err)
	}
	cb = b.next(t, socketmode.EventTypeInteractive).Data.(slack.InteractionCallback)
	if _, _, err := b.api.PostMessage("C1", slack.MsgOptionDeleteOriginal(cb.ResponseURL)); err != nil {
		t.Fatal(err)
	}
	if es := s.Ephemerals("C1", "U1"); len(es) != 1 || es[0].Text != "Started." {
		t.Errorf("after delete_original: %+v", es)
	}
}
