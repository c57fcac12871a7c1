package metrics_test

import (
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/metrics"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// Time spent waiting is counted by reason as each wait ends; a gauge says
// what the rollout waits for now.
func TestWaitMetrics(t *testing.T) {
	m := metrics.New()
	waiting := func(phase rollout.Phase) rollout.Progress {
		return rollout.Progress{Rollout: rollout.Rollout{Phase: phase}}
	}
	m.Notify(rollout.Event{Kind: rollout.EventWaiting, Progress: waiting(rollout.PhaseFrozen)})
	if got := scrape(t, m)(`rolloutbot_rollout_waiting{reason="frozen"}`); got != 1 {
		t.Fatalf("waiting gauge while frozen: %v", got)
	}
	m.Notify(rollout.Event{Kind: rollout.EventWaitOver, Progress: waiting(rollout.PhaseFrozen), Pause: 90 * time.Minute})
	m.Notify(rollout.Event{Kind: rollout.EventWaiting, Progress: waiting(rollout.PhaseWindow)})
	m.Notify(rollout.Event{Kind: rollout.EventWaitOver, Progress: waiting(rollout.PhaseWindow), Pause: 30 * time.Second})
	m.Notify(rollout.Event{Kind: rollout.EventWaiting, Progress: waiting(rollout.PhaseFrozen)})
	m.Notify(rollout.Event{Kind: rollout.EventWaitOver, Progress: waiting(rollout.PhaseFrozen), Pause: 30 * time.Minute})
	got := scrape(t, m)
	for name, want := range map[string]float64{
		`rolloutbot_rollout_wait_seconds_total{reason="frozen"}`: 7200,
		`rolloutbot_rollout_wait_seconds_total{reason="window"}`: 30,
		`rolloutbot_rollout_waiting{reason="frozen"}`:            0,
		`rolloutbot_rollout_waiting{reason="window"}`:            0,
	} {
		if v := got(name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}
