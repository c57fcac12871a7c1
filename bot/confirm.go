package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Action IDs of a start's preview.
const (
	StartActionID  = "rollout_start_confirm" // Start rollout, on the preview of a start
	CancelActionID = "rollout_start_cancel"  // Cancel, on the preview of a start
)

// previewTTL is how long a start's preview may be acted on.
const previewTTL = 10 * time.Minute

// planTicket is what a preview's Start button carries: the start it
// proposes and the state it was drawn for, so a press on a plan gone stale
// (another rollout since, the inventory changed, too old) starts nothing.
type planTicket struct {
	Version   string `json:"v"`
	Gate      string `json:"g,omitempty"`
	Override  string `json:"o,omitempty"` // start … override REASON
	Anytime   bool   `json:"a,omitempty"` // start … anytime
	Hosts     int    `json:"n"`
	Inventory string `json:"h"` // fingerprint of the active hosts
	Latest    int64  `json:"r"` // the newest rollout's id when drawn, 0 for none
	At        int64  `json:"t"` // unix seconds
}

// fingerprint names a set of hosts: any change to one of them, or to which
// are active, changes it.
func fingerprint(hosts []rollout.Host) string {
	lines := make([]string, len(hosts))
	for i, h := range hosts {
		lines[i] = strings.Join([]string{h.ID, h.Address, strconv.Itoa(h.SSHPort()), h.User}, "\x00")
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:8])
}

// ticketNow reads what a ticket compares with: the inventory's
// fingerprint and size, and the newest rollout's id.
func (b *Bot) ticketNow(ctx context.Context) (fp string, hosts int, latest *rollout.Rollout, err error) {
	hs, err := b.inv.ActiveHosts(ctx)
	if err != nil {
		return "", 0, nil, fmt.Errorf("read inventory: %w", err)
	}
	rs, err := b.store.Rollouts(ctx, 1)
	if err != nil {
		return "", 0, nil, fmt.Errorf("read rollouts: %w", err)
	}
	if len(rs) > 0 {
		latest = rs[0]
	}
	return fingerprint(hs), len(hs), latest, nil
}

// preview answers a start with its plan and Start / Cancel buttons; nothing
// starts until Start is pressed.
func (b *Bot) preview(ctx context.Context, c caller, cmd Command) error {
	if cur, err := b.store.ActiveRollout(ctx); err == nil {
		b.reply(ctx, c, activeText(cur))
		return nil
	} else if !errors.Is(err, rollout.ErrNotFound) {
		return err
	}
	s, err := b.settingsFor(cmd)
	if err != nil {
		b.reply(ctx, c, "⛔ "+escape(err.Error()))
		return nil
	}
	p, err := b.engine.Plan(ctx, cmd.Version, s)
	switch {
	case errors.Is(err, rollout.ErrInvalidVersion), errors.Is(err, rollout.ErrNoHosts):
		b.reply(ctx, c, "⛔ "+escape(err.Error()))
		return nil
	case errors.Is(err, rollout.ErrNoVersion):
		b.reply(ctx, c, "⛔ Say which version: `/rollout start v2.4.1` (no latest-version command is configured).")
		return nil
	case err != nil:
		return err
	}
	text := codeBlock(escape(p.String() + b.planTimeline(ctx, p)))
	if cmd.Override != "" {
		text += "\n⚠️ It overrides the freezes: " + escape(cmd.Override) + " (audited and announced)."
	}
	if cmd.Anytime {
		text += "\n⚠️ It may start hosts outside the rollout windows (anytime; audited and announced)."
	}
	fp, n, latest, err := b.ticketNow(ctx)
	if err != nil {
		return err
	}
	t := planTicket{Version: p.Version, Gate: cmd.Gate, Override: cmd.Override, Anytime: cmd.Anytime, Hosts: n, Inventory: fp, At: time.Now().Unix()}
	if latest != nil {
		t.Latest = latest.ID
	}
	value, err := json.Marshal(t)
	if err != nil {
		return err
	}
	start := slack.NewButtonBlockElement(StartActionID, string(value), plain("Start rollout"))
	start.Style = slack.StylePrimary
	cancel := slack.NewButtonBlockElement(CancelActionID, "cancel", plain("Cancel"))
	blocks := append(textBlocks(fmt.Sprintf("*Start %s?* Here is what it would do:\n%s", escape(p.Version), text)),
		slack.NewContextBlock("rollout_preview_note", mrkdwn(fmt.Sprintf(
			"Nothing runs until you press Start; the plan holds for %d minutes, while the inventory and the rollouts stay as they are. `/rollout start %s now` skips this step.",
			int(previewTTL.Minutes()), escape(p.Version)))),
		slack.NewActionBlock("rollout_preview", start, cancel))
	b.replyBlocks(ctx, c, blocks, fmt.Sprintf("Start %s? Plan: %d hosts", p.Version, p.Hosts))
	return nil
}

// onPreviewButton answers Start or Cancel on a start's preview. Start is
// authorized again, then acted on only if the plan still holds; the answer
// replaces the preview, so its buttons go away.
func (b *Bot) onPreviewButton(ctx context.Context, c caller, a *slack.BlockAction) {
	if a.ActionID == CancelActionID {
		b.replaceOriginal(ctx, c, "✖️ Cancelled: nothing was started.")
		return
	}
	if !b.authorize(ctx, c, "start", 0) {
		return
	}
	var t planTicket
	if err := json.Unmarshal([]byte(a.Value), &t); err != nil || rollout.ValidateVersion(t.Version) != nil {
		b.log.WarnContext(ctx, "start button with a bad value", "value", clipLine(a.Value, 80))
		b.reply(ctx, c, "Nothing started: that button does not carry a plan I can read. Ask again: `/rollout start VERSION`.")
		return
	}
	stale, err := b.staleness(ctx, t)
	if err != nil {
		b.log.ErrorContext(ctx, "check a start's plan", "user", c.user, "err", err)
		b.reply(ctx, c, "⚠️ I could not check that plan is still good, so nothing started: "+escape(clipLine(err.Error(), 300)))
		return
	}
	if stale != "" {
		b.engine.Audit(ctx, rollout.AuditEntry{Actor: c.user, Source: rollout.SourceSlack, Action: "start", Allowed: false,
			Detail: t.Version + " refused: stale plan: " + stale})
		b.reply(ctx, c, "Nothing started: "+stale+" Ask for a fresh plan: `/rollout start "+escape(t.Version)+"`.")
		return
	}
	text, err := b.start(ctx, c, Command{Kind: KindStart, Version: t.Version, Gate: t.Gate, Override: t.Override, Anytime: t.Anytime})
	if err != nil {
		b.log.ErrorContext(ctx, "start failed", "user", c.user, "err", err)
		text = "⚠️ `start` failed: " + escape(clipLine(err.Error(), 300))
	}
	b.replaceOriginal(ctx, c, text)
}

// staleness says why a plan no longer holds, or "" when it does.
func (b *Bot) staleness(ctx context.Context, t planTicket) (string, error) {
	drawn := time.Unix(t.At, 0)
	if age := time.Since(drawn); age > previewTTL || age < -time.Minute {
		return fmt.Sprintf("this plan is from %s, more than %d minutes ago.", slackTime(drawn), int(previewTTL.Minutes())), nil
	}
	fp, n, latest, err := b.ticketNow(ctx)
	if err != nil {
		return "", err
	}
	if latest != nil && latest.ID != t.Latest {
		return fmt.Sprintf("rollout #%d of %s (started by %s; %s) came after this plan.", latest.ID, escape(latest.Version),
			who(latest.StartedBy), stateWord(*latest)), nil
	}
	if fp != t.Inventory {
		return fmt.Sprintf("the inventory changed since this plan (%d active hosts then, %d now).", t.Hosts, n), nil
	}
	return "", nil
}

// activeText is the refusal of a start while another rollout runs.
func activeText(r *rollout.Rollout) string {
	return fmt.Sprintf("⛔ Rollout #%d of %s is already running (%s, started by %s). `/rollout status` shows where it is; `/rollout halt` stops it.",
		r.ID, escape(r.Version), stateWord(*r), who(r.StartedBy))
}

// replyBlocks answers someone privately with blocks.
func (b *Bot) replyBlocks(ctx context.Context, c caller, blocks []slack.Block, text string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := b.api.PostEphemeralContext(ctx, c.channel, c.user, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(clipLine(text, 300), false))
	if err == nil {
		return
	}
	if c.responseURL != "" {
		_, _, rerr := b.api.PostMessageContext(ctx, c.channel, slack.MsgOptionResponseURL(c.responseURL, slack.ResponseTypeEphemeral),
			slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(clipLine(text, 300), false))
		if rerr == nil {
			return
		}
	}
	b.log.WarnContext(ctx, "could not answer user", "user", c.user, "channel", c.channel, "err", err)
}

// replaceOriginal puts text in place of the message whose button was
// pressed (through the press's response_url), or answers anew when it cannot.
func (b *Bot) replaceOriginal(ctx context.Context, c caller, text string) {
	if c.responseURL != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _, err := b.api.PostMessageContext(rctx, c.channel, slack.MsgOptionReplaceOriginal(c.responseURL),
			slack.MsgOptionBlocks(textBlocks(text)...), slack.MsgOptionText(clipLine(text, 300), false))
		if err == nil {
			return
		}
		b.log.WarnContext(ctx, "replace the pressed message", "user", c.user, "err", err)
	}
	b.reply(ctx, c, text)
}
