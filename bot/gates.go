package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// gatedPrefix starts the button state of a rollout waiting at a gate; the
// stage index follows, so a Promote drawn for one gate never opens another.
const gatedPrefix = "gated_"

func gatedState(stage int) string { return gatedPrefix + strconv.Itoa(stage) }

// stageDone reports whether a rollout in phase has finished its stage and
// waits before the next one.
func stageDone(p rollout.Phase) bool {
	return p == rollout.PhasePaused || p == rollout.PhaseGated || p == rollout.PhaseBaking
}

// nextPercent is the percent of the stage a promote of r starts, or 0.
func nextPercent(r rollout.Rollout) int {
	if k := r.NextStage(); k >= 0 {
		return r.Settings.Stages[k]
	}
	return 0
}

// promoteButton is the Promote button of a rollout waiting at its gate.
func promoteButton(r rollout.Rollout) *slack.ButtonBlockElement {
	next := nextPercent(r)
	if next == 0 {
		return nil
	}
	b := slack.NewButtonBlockElement(PromoteActionID, buttonValue(r), plain(fmt.Sprintf("Promote to %d %%", next)))
	b.Style = slack.StylePrimary
	return b
}

// gateText says what a rollout waits for at its gate and who may promote it.
func gateText(r rollout.Rollout, promoters string) string {
	done := ""
	if r.Stage < len(r.Settings.Stages) {
		done = fmt.Sprintf(" — stage %d%% is done", r.Settings.Stages[r.Stage])
	}
	twoPerson := r.Settings.PromoteByOther && r.Starter != ""
	if twoPerson {
		// The starter is no promoter of this one: leave them out of the list.
		promoters = strings.Join(slices.DeleteFunc(strings.Split(promoters, ", "), func(p string) bool { return p == who(r.Starter) }), ", ")
	}
	if promoters == "" {
		promoters = "any rolloutbot admin"
	}
	text := fmt.Sprintf("⏸ *Waiting for promotion to %d %%*%s.\nWho may promote: %s", nextPercent(r), done, promoters)
	if twoPerson {
		text += fmt.Sprintf(" — not %s, who started it (two-person rule)", who(r.Starter))
	}
	text += "."
	if !r.WaitUntil.IsZero() {
		text += fmt.Sprintf("\nIf nobody promotes it by %s, it halts.", slackTime(r.WaitUntil))
	}
	return text
}

// bakeText says what a baking rollout does until when.
func bakeText(r rollout.Rollout) string {
	return fmt.Sprintf("🔬 *Baking stage %d%%*: the checks run again and again until %s; a bad result halts the rollout.",
		r.Settings.Stages[r.Stage], slackTime(r.WaitUntil))
}

// slackTime shows t in each reader's own time zone, with UTC as fallback.
func slackTime(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// adminsText names who counts as a rolloutbot admin, for "who may promote".
func adminsText(cfg Config) string {
	var parts []string
	for _, a := range cfg.Admins {
		parts = append(parts, who(a))
	}
	for _, g := range cfg.AdminGroups {
		parts = append(parts, "members of <!subteam^"+escape(g)+">")
	}
	if cfg.WorkspaceAdmins {
		parts = append(parts, "workspace admins")
	}
	return strings.Join(parts, ", ")
}

// gateThreadLine is the thread reply for a gate event, or "".
func gateThreadLine(ev rollout.Event) string {
	r := ev.Progress.Rollout
	switch ev.Kind {
	case rollout.EventGated:
		line := fmt.Sprintf("⏸ Waiting for promotion to %d %%: *Promote* on the message above, or `/rollout promote`", nextPercent(r))
		if ev.Pause > 0 {
			line += fmt.Sprintf("; halts if nobody does within %s", ev.Pause)
		}
		return line
	case rollout.EventPromoted:
		return fmt.Sprintf("▶️ Promoted to %d %% by %s", nextPercent(r), who(r.Promote.By))
	case rollout.EventBaking:
		return fmt.Sprintf("🔬 Baking stage %d%% for %s: the checks run again and again; a bad result halts", ev.Stage.Percent, ev.Pause)
	}
	return ""
}

// promote opens the gate rollout id (0: the running one) waits at; stage
// is the gate a button was drawn for (-1: whichever it waits at now).
func (b *Bot) promote(ctx context.Context, c caller, id int64, stage int) (string, error) {
	r, err := b.engine.Promote(ctx, rollout.PromoteRequest{Actor: c.user, Source: rollout.SourceSlack, ID: id, Stage: stage})
	switch {
	case errors.Is(err, rollout.ErrNotRunning):
		return "No rollout is running; nothing to promote.", nil
	case errors.Is(err, rollout.ErrOwnRollout):
		others := b.otherAdmins(r.Starter)
		return fmt.Sprintf("⛔ You started rollout #%d, and the two-person rule (`rollout.promote_by_other`) needs someone else to promote it: %s.",
			r.ID, others), nil
	case errors.Is(err, rollout.ErrNotGated), errors.Is(err, rollout.ErrPromoted):
		return "Nothing done: " + escape(err.Error()) + ".", nil
	case err != nil:
		return "", err
	}
	if r.Phase.Holding() {
		// Held by a freeze or outside the windows: the promote overrode that.
		b.Announce(ctx, fmt.Sprintf("⚠️ %s promoted rollout #%d (%s) past what held it: %s. It goes on now.",
			who(c.user), r.ID, escape(r.Version), escape(r.Label())))
		return fmt.Sprintf("▶️ Rollout #%d goes on: you overrode what held it (%s). This is in the audit log.", r.ID, escape(r.Label())), nil
	}
	next := nextPercent(*r)
	b.Announce(ctx, fmt.Sprintf("▶️ %s promoted rollout #%d (%s) to %d %%.", who(c.user), r.ID, escape(r.Version), next))
	return fmt.Sprintf("▶️ Promoted rollout #%d to %d %%: the next stage starts.", r.ID, next), nil
}

// otherAdmins names the admins who may promote a rollout starter started.
func (b *Bot) otherAdmins(starter string) string {
	var parts []string
	for _, a := range b.cfg.Admins {
		if a != starter {
			parts = append(parts, who(a))
		}
	}
	for _, g := range b.cfg.AdminGroups {
		parts = append(parts, "members of <!subteam^"+escape(g)+">")
	}
	if b.cfg.WorkspaceAdmins {
		parts = append(parts, "workspace admins")
	}
	if len(parts) == 0 {
		return "no other admin is configured: add one to `slack.admins`"
	}
	return strings.Join(parts, ", ")
}

// gateStage reads the stage index from a gated button state.
func gateStage(state string) (int, bool) {
	s, ok := strings.CutPrefix(state, gatedPrefix)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(s)
	return k, err == nil && k >= 0
}

// drawnWord says what a button state was, for a stale press's answer.
func drawnWord(r *rollout.Rollout, state string) string {
	if k, ok := gateStage(state); ok && k < len(r.Settings.Stages) {
		return fmt.Sprintf("waiting at its gate after stage %d%%", r.Settings.Stages[k])
	}
	if p, k, ok := holdStage(state); ok && k < len(r.Settings.Stages) {
		what := "frozen"
		if p == rollout.PhaseWindow {
			what = "waiting for a rollout window"
		}
		return fmt.Sprintf("%s before stage %d%%", what, r.Settings.Stages[k])
	}
	return strings.ReplaceAll(state, "_", " ")
}

// settingsFor is a start's or plan's settings: nil for the configured ones,
// or those with the gates the command names.
func (b *Bot) settingsFor(cmd Command) (*rollout.Settings, error) {
	if cmd.Gate == "" {
		return nil, nil
	}
	s := b.engine.Defaults()
	gates, err := rollout.ParseGates(cmd.Gate, s.Stages)
	if err != nil {
		return nil, err
	}
	s.Gates = gates
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
