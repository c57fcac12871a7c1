package bot

import (
	"context"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// The message of a rollout that waits is edited when only the clock moved
// its "in 2 min", and no more once its driver here stopped without an end
// (shut down, its lease lost): it is then another driver's to edit, and old
// progress would overwrite the new driver's.
func TestStatusCountdownStopsWithTheDriver(t *testing.T) {
	sl := slackfake.New(slackfake.Options{})
	defer sl.Close()
	sl.AddChannel("C1", "ops", true)
	api := NewClient("xoxb-test", "xapp-test", sl.APIURL(), nil)
	ctx := context.Background()
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("status", false))
	if err != nil {
		t.Fatal(err)
	}
	s := NewStatus(api, StatusConfig{Channel: "C1", EditInterval: time.Millisecond}, nil, nil)
	now := time.Now()
	r := rollout.Rollout{ID: 1, Version: "v2", Phase: rollout.PhasePaused, Hosts: 10, MessageTS: ts,
		Settings: rollout.Settings{Stages: []int{10, 100}, Concurrency: 1, Threshold: 30}, WaitUntil: now.Add(95 * time.Second)}
	s.Notify(rollout.Event{Kind: rollout.EventPaused, At: now, Progress: rollout.Progress{Rollout: r}})
	m := s.msgs[1]

	steps := []struct {
		after time.Duration
		edits int
		next  bool // another look is due
	}{
		{0, 1, true},                 // the pause: "in 2 min"
		{2 * time.Second, 1, true},   // still "in 2 min": no edit
		{10 * time.Second, 2, true},  // "in 1 min"
		{20 * time.Second, 2, true},  // still "in 1 min"
		{-1, 2, false},               // the driver stops here
		{40 * time.Second, 2, false}, // "in under a minute" is not this process's to say
	}
	for _, st := range steps {
		if st.after < 0 {
			s.Notify(rollout.Event{Kind: rollout.EventStopped, Progress: rollout.Progress{Rollout: r}})
			continue
		}
		next := s.edit(ctx, m, ts, now.Add(st.after))
		if got := sl.Calls("chat.update"); got != st.edits || next.IsZero() == st.next {
			t.Fatalf("at +%s: %d edits, next look %v; want %d edits, another look %v", st.after, got, next, st.edits, st.next)
		}
	}
}
