package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// A watcher that reads the store too seldom to see every stage still shows
// each stage's start and end, once and in order, with that stage's counts.
func TestWatcherShowsTheStagesItMissed(t *testing.T) {
	var out bytes.Buffer
	w := newWatcher(console.NewProgress(&out, false))
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := &rollout.Rollout{ID: 1, Version: "v2", Hosts: 10, Phase: rollout.PhaseRunning, CreatedAt: now,
		Settings: rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: 1, Threshold: 30}}
	results := make([]rollout.HostResult, 10)
	for i := range results {
		results[i] = rollout.HostResult{Index: i, Host: rollout.Host{ID: fmt.Sprintf("h%d", i)}, Status: rollout.StatusPending}
	}
	results[0].Status = rollout.StatusUpdating
	w.update(r, results, now)

	// The next read finds the rollout paused after the second stage, one
	// host of it failed.
	for i := range 5 {
		results[i].Status = rollout.StatusSuccess
	}
	results[3].Status, results[3].Error = rollout.StatusFailed, "exit 1"
	paused := *r
	paused.Phase, paused.Stage = rollout.PhasePaused, 1
	w.update(&paused, slices.Clone(results), now.Add(time.Second))

	// Then completed.
	for i := 5; i < 10; i++ {
		results[i].Status = rollout.StatusSuccess
	}
	completed := paused
	completed.Phase, completed.Stage = rollout.PhaseCompleted, 2
	w.update(&completed, slices.Clone(results), now.Add(2*time.Second))

	want := []string{
		"▶ stage 10%", "✓ stage 10% done: 1 host, 0 failed",
		"▶ stage 50%", "✓ stage 50% done: 4 hosts, 1 failed",
		"▶ stage 100%", "✓ stage 100% done: 5 hosts, 0 failed",
	}
	text := out.String()
	at := 0
	for _, s := range want {
		i := strings.Index(text[at:], s)
		if i < 0 {
			t.Fatalf("the watch lacks %q after offset %d, or shows it out of order:\n%s", s, at, text)
		}
		at += i + len(s)
	}
	for _, p := range []int{10, 50, 100} {
		if n := strings.Count(text, fmt.Sprintf("▶ stage %d%%:", p)); n != 1 {
			t.Errorf("stage %d%% shown started %d times:\n%s", p, n, text)
		}
	}
}
