package bot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Freezer sets, ends and lists freezes; the rollout engine is one.
type Freezer interface {
	Freeze(ctx context.Context, req rollout.FreezeRequest) (*rollout.Freeze, error)
	Unfreeze(ctx context.Context, req rollout.UnfreezeRequest) ([]rollout.Freeze, error)
	Freezes(ctx context.Context) ([]rollout.Freeze, error)
	Calendar() rollout.Calendar
	Now() time.Time
	Span(f rollout.Freeze) string
	Timeline(ctx context.Context, p rollout.Plan) (rollout.Timeline, error)
}

// planTimeline is what freezes and windows would hold a planned rollout,
// and when it would finish; empty without a freezer.
func (b *Bot) planTimeline(ctx context.Context, p rollout.Plan) string {
	if b.freezer == nil {
		return ""
	}
	tl, err := b.freezer.Timeline(ctx, p)
	if err != nil {
		b.log.WarnContext(ctx, "plan timeline", "err", err)
		return ""
	}
	return tl.String(b.freezer.Calendar(), b.freezer.Now())
}

// SetFreezer enables the freeze commands.
func (b *Bot) SetFreezer(f Freezer) { b.freezer = f }

// freezeCommand answers freeze, unfreeze and the freeze list.
func (b *Bot) freezeCommand(ctx context.Context, c caller, cmd Command) (string, error) {
	if b.freezer == nil {
		return "Freezes are not set up on this bot.", nil
	}
	switch cmd.Kind {
	case KindFreezeList:
		return b.freezeList(ctx)
	case KindUnfreeze:
		return b.unfreeze(ctx, c, cmd.Freeze)
	}
	now := b.freezer.Now()
	req := rollout.FreezeRequest{Actor: c.user, Source: rollout.SourceSlack, Reason: cmd.Reason}
	switch {
	case cmd.For != "":
		d, err := rollout.ParseDuration(cmd.For)
		if err != nil {
			return "⛔ " + escape(err.Error()), nil
		}
		req.Until = now.Add(d)
	case cmd.Until != "":
		t, err := rollout.ParseUntil(cmd.Until, now, b.freezer.Calendar().Zone)
		if err != nil {
			return "⛔ " + escape(err.Error()), nil
		}
		req.Until = t
	}
	f, err := b.freezer.Freeze(ctx, req)
	switch {
	case errors.Is(err, rollout.ErrNoFreezeStore):
		return "Freezes are not set up on this bot.", nil
	case errors.Is(err, rollout.ErrInvalidFreeze):
		return "⛔ " + escape(err.Error()), nil
	case err != nil:
		return "", err
	}
	span := b.freezer.Span(*f)
	b.Announce(ctx, fmt.Sprintf("🧊 %s froze rollouts %s: %s. No rollout starts; a running one waits at its next stage. `/rollout unfreeze` ends it.",
		who(c.user), span, escape(f.Reason)))
	return fmt.Sprintf("🧊 Freeze #%d set, %s.", f.ID, span), nil
}

func (b *Bot) unfreeze(ctx context.Context, c caller, id int64) (string, error) {
	ended, err := b.freezer.Unfreeze(ctx, rollout.UnfreezeRequest{Actor: c.user, Source: rollout.SourceSlack, ID: id})
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		text := "Nothing to unfreeze: " + escape(strings.TrimSuffix(err.Error(), ": "+rollout.ErrNotFound.Error())) + "."
		if fs, ferr := b.freezer.Freezes(ctx); ferr == nil {
			for _, f := range fs {
				if f.Name != "" && f.Covers(b.freezer.Now()) {
					text += fmt.Sprintf(" The recurring freeze %q of the configuration holds until %s; `start … override \"REASON\"` starts anyway, and a rollout it holds goes on with *Go on despite the freeze* or `/rollout promote`.",
						escape(f.Name), b.freezer.Calendar().When(f.Until))
				}
			}
		}
		return text, nil
	case err != nil:
		return "", err
	}
	var names []string
	for _, f := range ended {
		names = append(names, escape(f.String()))
	}
	b.Announce(ctx, fmt.Sprintf("🌤 %s ended the %s. Rollouts may start again; waiting ones go on.", who(c.user), strings.Join(names, "; ")))
	return fmt.Sprintf("🌤 Ended %d %s.", len(ended), rollout.Plural(len(ended), "freeze", "freezes")), nil
}

func (b *Bot) freezeList(ctx context.Context) (string, error) {
	fs, err := b.freezer.Freezes(ctx)
	if err != nil {
		return "", err
	}
	if len(fs) == 0 {
		return "No freezes now or in the next 30 days. `/rollout freeze [for DURATION | until TIME] REASON` sets one.", nil
	}
	now := b.freezer.Now()
	var out strings.Builder
	out.WriteString("*Freezes*\n")
	for _, f := range fs {
		mark := "🗓"
		if f.Covers(now) {
			mark = "🧊 *now*"
		}
		fmt.Fprintf(&out, "%s %s, %s\n", mark, escape(f.String()), b.freezer.Span(f))
	}
	return out.String(), nil
}

// frozenRefusal is the answer to a start a freeze refused.
func frozenRefusal(fe *rollout.FrozenError) string {
	f := fe.Freeze
	what := fmt.Sprintf("freeze #%d set by %s%s", f.ID, who(f.By), reasonSuffix(f.Reason))
	if f.Name != "" {
		what = fmt.Sprintf("the recurring freeze %q of the configuration%s", escape(f.Name), reasonSuffix(f.Reason))
	}
	text := "🧊 Rollouts are frozen by " + what
	return text + fmt.Sprintf(", %s. An admin may start anyway with `/rollout start VERSION override \"REASON\"`; `/rollout freeze` lists the freezes.", fe.Text)
}

// waitLine says what a waiting rollout waits for and until when; empty when
// it does not wait.
func waitLine(r rollout.Rollout, now time.Time) string {
	w := r.Waiting(now)
	switch {
	case w == "", r.Phase == rollout.PhaseGated, r.Phase == rollout.PhaseBaking:
		return "" // gates and bakes have lines of their own (gateText, bakeText)
	case r.Phase == rollout.PhaseFrozen:
		return "🧊 *Frozen* — " + escape(w)
	case r.Phase == rollout.PhaseWindow:
		return "🕑 *Outside the rollout windows* — " + escape(w)
	}
	return "⏸ " + escape(w)
}

// holdState is the button state of a rollout held by a freeze or outside
// the windows, before stage k: "frozen_2", "window_1". A Go on button drawn
// for one hold never overrides another.
func holdState(r rollout.Rollout) string { return string(r.Phase) + "_" + strconv.Itoa(r.Stage) }

// holdStage reads a hold's button state.
func holdStage(state string) (phase rollout.Phase, stage int, ok bool) {
	for _, p := range []rollout.Phase{rollout.PhaseFrozen, rollout.PhaseWindow} {
		if rest, found := strings.CutPrefix(state, string(p)+"_"); found {
			k, err := strconv.Atoi(rest)
			return p, k, err == nil && k >= 0
		}
	}
	return "", 0, false
}

// goOnButton overrides what holds r, a freeze or the windows, so it goes on
// now: the same as /rollout promote, behind a confirm dialog that says so.
func goOnButton(r rollout.Rollout, now time.Time) *slack.ButtonBlockElement {
	label, title := "Go on despite the freeze", "Override the freeze?"
	if r.Phase == rollout.PhaseWindow {
		label, title = "Go on outside the window", "Go on outside the windows?"
	}
	b := slack.NewButtonBlockElement(PromoteActionID, buttonValue(r), plain(label))
	b.Style = slack.StyleDanger
	b.Confirm = slack.NewConfirmationBlockObject(plain(title),
		plain(clipLine(fmt.Sprintf("Rollout #%d (%s) is %s. Go on starts its hosts now; the override goes in the audit log and is announced in the channel.",
			r.ID, clipLine(r.Version, 60), r.Waiting(now)), 300)),
		plain("Go on"), plain("Keep waiting"))
	return b
}

// waitReply is the thread reply when a rollout begins to wait.
func waitReply(r rollout.Rollout, now time.Time) string {
	return waitLine(r, now) + " · no new host starts; `/rollout halt` and `/rollout rollback` work meanwhile"
}

// announceOverride tells the channel that a start overrode a freeze or the windows.
func (b *Bot) announceOverride(ctx context.Context, c caller, r *rollout.Rollout, cmd Command) {
	if cmd.Override != "" {
		b.Announce(ctx, fmt.Sprintf("⚠️ %s started rollout #%d of %s overriding the freezes: %s", who(c.user), r.ID, escape(r.Version), escape(cmd.Override)))
	}
	if cmd.Anytime {
		b.Announce(ctx, fmt.Sprintf("⚠️ %s started rollout #%d of %s to run outside the rollout windows (anytime).", who(c.user), r.ID, escape(r.Version)))
	}
}

// calendarWarning is a warning about the schedule's runs that fall in a
// recurring freeze or outside the windows, when the scheduler knows the
// calendar; empty otherwise.
func calendarWarning(s Schedules, sch rollout.Schedule) string {
	cw, ok := s.(interface{ CalendarWarning(rollout.Schedule) string })
	if !ok {
		return ""
	}
	if w := cw.CalendarWarning(sch); w != "" {
		return "\n⚠️ " + escape(w) + "."
	}
	return ""
}
