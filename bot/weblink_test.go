package bot_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/bot"
)

// TestOpenInBrowserLink: with the web view configured, the status message
// and /rollout status carry an "Open in browser" button with the rollout's
// link; pressing it (Slack reports link presses too) does nothing else.
func TestOpenInBrowserLink(t *testing.T) {
	link := func(id int64) string {
		return fmt.Sprintf("https://rollouts.example.com/rollouts/%d?exp=9&sig=abc", id)
	}
	e := newEnv(t, envOptions{hosts: 3, link: link})
	e.command(admin, "start v2")
	e.ephemeral(admin, "Started rollout #1")
	e.waitFor("the final status", e.rolloutEnded)
	m, _ := e.statusMessage()
	if b := string(m.Blocks); !strings.Contains(b, "Open in browser") || !strings.Contains(b, `"url":"https://rollouts.example.com/rollouts/1?exp=9\u0026sig=abc"`) {
		t.Fatalf("status message without the link button:\n%s", b)
	}
	e.command(user, "status")
	e.ephemeral(user, "Rollout #1")
	e.waitFor("the status reply's link", func() bool {
		for _, m := range e.slack.Ephemerals(channel, user) {
			if strings.Contains(string(m.Blocks), bot.WebLinkActionID) && strings.Contains(string(m.Blocks), "rollouts.example.com/rollouts/1") {
				return true
			}
		}
		return false
	})
	log, _ := e.db.AuditLog(context.Background(), 10)
	for _, l := range log {
		if l.Action != "start" {
			t.Errorf("audit entry %+v", l)
		}
	}
}

// TestNoLinkWithoutWebView: without the view, no button.
func TestNoLinkWithoutWebView(t *testing.T) {
	e := newEnv(t, envOptions{hosts: 2})
	e.command(admin, "start v2")
	e.waitFor("the final status", e.rolloutEnded)
	if m, _ := e.statusMessage(); strings.Contains(string(m.Blocks), "Open in browser") {
		t.Fatal("a link button without a web view")
	}
}
