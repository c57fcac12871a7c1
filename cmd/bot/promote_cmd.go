package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// rolloutPromote opens the manual gate the running rollout waits at. Like a
// halt it is a request kept in the store: the process that drives the
// rollout (a serve, a rollout start in another terminal) goes on with the
// next stage within its poll interval.
func (m *Main) rolloutPromote(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout promote")
	id := fs.Int64("id", 0, "the rollout expected to wait at a gate (default: the running one)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	a, err := m.openNoFollow(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer a.Close()
	cfg := a.cfg
	r, err := a.engine.Promote(ctx, rollout.PromoteRequest{Actor: actor(), Source: rollout.SourceCLI, ID: *id, Stage: -1})
	switch {
	case errors.Is(err, rollout.ErrNotRunning):
		return fmt.Errorf("no rollout is running; nothing to promote")
	case errors.Is(err, rollout.ErrOwnRollout):
		others := "another admin"
		if len(cfg.Slack.Admins) > 0 {
			others += " (slack.admins: " + strings.Join(cfg.Slack.Admins, ", ") + ")"
		}
		return fmt.Errorf("rollout #%d was started by %s: %w; %s must promote it", r.ID, r.Starter, err, others)
	case err != nil:
		return err
	}
	if r.Phase.Holding() {
		fmt.Fprintf(m.Stdout, "rollout #%d of %s goes on: you overrode what held it (%s); this is in the audit log\n", r.ID, r.Version, r.Label())
		m.announce(ctx, a, fmt.Sprintf("⚠️ %s promoted rollout #%d (%s) past what held it (%s), from a terminal. It goes on now.",
			actor(), r.ID, r.Version, r.Label()))
		return nil
	}
	stages := r.StageList()
	next := "the next stage"
	if k := r.NextStage(); k >= 0 {
		next = fmt.Sprintf("stage %d%% (%d hosts)", stages[k].Percent, stages[k].Size())
	}
	fmt.Fprintf(m.Stdout, "promoted rollout #%d of %s past its gate after stage %d%%: the process driving it starts %s\n",
		r.ID, r.Version, stages[r.Stage].Percent, next)
	m.announce(ctx, a, fmt.Sprintf("▶️ %s promoted rollout #%d (%s) past its gate after stage %d %%, from a terminal.",
		actor(), r.ID, r.Version, stages[r.Stage].Percent))
	return nil
}
