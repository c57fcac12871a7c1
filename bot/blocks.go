package bot

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Block Kit limits (SLACK.md): what the rendering stays inside.
const (
	maxBlocks      = 50
	maxSectionText = 3000
	maxFailures    = 10 // latest failures listed on the status message
)

// Block and action IDs of the status message.
const (
	HaltActionID   = "rollout_halt"    // the Halt button
	OutcomeBlockID = "rollout_outcome" // the line that replaces it when the rollout ends
)

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func section(s string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(fitText(s, maxSectionText)), nil, nil)
}

// fitText cuts s to n characters at a line break when it can, saying so.
func fitText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = "\n…"
	cut := s[:n-len(more)]
	if i := strings.LastIndexByte(cut, '\n'); i > n/2 {
		cut = cut[:i]
	}
	return strings.ToValidUTF8(cut, "") + more
}

// escape makes text safe inside mrkdwn: Slack reads &, < and > as markup.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func clipLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// statusBlocks renders the live status message of a rollout.
func statusBlocks(p rollout.Progress, now time.Time) ([]slack.Block, string) {
	r := p.Rollout
	c := p.Counts
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(clipLine(fmt.Sprintf("Rollout #%d · %s", r.ID, r.Version), 150))),
		section(stageLine(p) + "\n" + fmt.Sprintf("Started by %s · %s", who(r.StartedBy), elapsed(r, now))),
		section(progressBar(c.Done(), c.Total()) + fmt.Sprintf("  *%d/%d* done", c.Done(), c.Total())),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			mrkdwn(fmt.Sprintf("✅ Updated: *%d*", c.Success)),
			mrkdwn(fmt.Sprintf("↷ Skipped: *%d*", c.Skipped)),
			mrkdwn(fmt.Sprintf("↩️ Rolled back: *%d*", c.RolledBack)),
			mrkdwn(fmt.Sprintf("❌ Failed: *%d*", c.Failed)),
			mrkdwn(fmt.Sprintf("⏳ In flight: *%d*", c.Updating)),
			mrkdwn(fmt.Sprintf("… Pending: *%d*", c.Pending)),
		}, nil),
	}
	if len(p.Recent) > 0 {
		blocks = append(blocks, section(failureList(p.Recent, c.Failed+c.RolledBack)))
	}
	if r.Phase.Active() {
		if r.Halt != nil {
			blocks = append(blocks, slack.NewContextBlock("rollout_halting", mrkdwn(haltingLine(r.Halt, c.Updating)+" — letting in-flight hosts finish")))
		} else {
			btn := slack.NewButtonBlockElement(HaltActionID, strconv.FormatInt(r.ID, 10), plain("Halt rollout"))
			btn.Style = slack.StyleDanger
			btn.Confirm = slack.NewConfirmationBlockObject(plain("Halt this rollout?"),
				plain(fmt.Sprintf("No new host of #%d (%s) will start; hosts being updated finish. You can resume it later.", r.ID, clipLine(r.Version, 60))),
				plain("Halt"), plain("Keep going"))
			blocks = append(blocks, slack.NewActionBlock("rollout_actions", btn))
		}
	} else {
		blocks = append(blocks, slack.NewContextBlock(OutcomeBlockID, mrkdwn(endLine(&r, c))))
	}
	text := fmt.Sprintf("Rollout #%d of %s: %s, %d/%d done", r.ID, r.Version, stateWord(r), c.Done(), c.Total())
	return blocks, text
}

func stageLine(p rollout.Progress) string {
	r := p.Rollout
	var parts []string
	for _, st := range p.Stages {
		label := fmt.Sprintf("%d%%", st.Percent)
		switch {
		case st.Size() == 0:
			label = "~" + label + "~"
		case r.Phase == rollout.PhaseCompleted || st.Index < r.Stage || (st.Index == r.Stage && r.Phase == rollout.PhasePaused):
			label = "✅ " + label
		case st.Index == r.Stage && r.Phase.Active():
			label = "▶️ *" + label + "*"
		case st.Index == r.Stage:
			label = "⏹ *" + label + "*"
		default:
			label = "⏳ " + label
		}
		parts = append(parts, label)
	}
	return "*Stage* " + strings.Join(parts, " → ")
}

func stateWord(r rollout.Rollout) string { return r.Label() }

// haltingLine says that a halt is under way, and why.
func haltingLine(h *rollout.Halt, inFlight int) string {
	if h.Auto() {
		return fmt.Sprintf("⏸ Halting: %s; %d in flight", escape(h.Reason), inFlight)
	}
	return fmt.Sprintf("⏸ Halt requested by %s%s; %d in flight", who(h.By), reasonSuffix(h.Reason), inFlight)
}

func elapsed(r rollout.Rollout, now time.Time) string {
	end := now
	if !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	d := end.Sub(r.CreatedAt).Round(time.Second)
	if r.FinishedAt.IsZero() {
		return "running for " + d.String()
	}
	return "took " + d.String()
}

func progressBar(done, total int) string {
	const width = 20
	if total == 0 {
		total = 1
	}
	filled := done * width / total
	return "`" + strings.Repeat("█", filled) + strings.Repeat("░", width-filled) + "`"
}

func failureList(recent []rollout.HostResult, total int) string {
	var b strings.Builder
	b.WriteString("*Latest failures*")
	start := max(0, len(recent)-maxFailures)
	for i := len(recent) - 1; i >= start; i-- {
		hr := recent[i]
		fmt.Fprintf(&b, "\n• `%s` %s at %s: %s", escape(clipLine(hr.Host.ID, 60)), statusWord(hr.Status), hr.Step,
			escape(clipLine(hr.Error, 200)))
	}
	if more := total - (len(recent) - start); more > 0 {
		fmt.Fprintf(&b, "\n_and %d more — `/rollout status failed`_", more)
	}
	return b.String()
}

func statusWord(s rollout.Status) string {
	switch s {
	case rollout.StatusRolledBack:
		return "↩️ rolled back"
	case rollout.StatusFailed:
		return "❌ failed"
	}
	return strings.ReplaceAll(string(s), "_", " ")
}

func endLine(r *rollout.Rollout, c rollout.Counts) string {
	switch {
	case r.Phase == rollout.PhaseHalted && r.Halt != nil && !r.Halt.Auto():
		return "⏹ Halted by " + who(r.Halt.By) + escape(reasonSuffix(r.Halt.Reason))
	case r.Phase == rollout.PhaseHalted && r.Halt != nil:
		return "⏹ Halted: " + escape(r.Halt.Reason)
	case r.Phase == rollout.PhaseHalted:
		return "⏹ Halted"
	case r.Phase == rollout.PhaseFailed:
		return "💥 Failed: " + escape(r.Error)
	case c.Failed+c.RolledBack > 0:
		return "⚠️ C" + escape(rollout.Outcome(r, c)[1:])
	}
	return "✅ C" + escape(rollout.Outcome(r, c)[1:])
}

// who renders an actor: a Slack user ID as a mention, anything else as text.
func who(actor string) string {
	if isUserID(actor) {
		return "<@" + actor + ">"
	}
	return escape(actor)
}

func isUserID(s string) bool {
	if len(s) < 3 || (s[0] != 'U' && s[0] != 'W') {
		return false
	}
	for _, r := range s[1:] {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + escape(clipLine(reason, 200))
}

// hostReply is the thread reply for a failed or rolled-back host.
func hostReply(hr rollout.HostResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s `%s` (%s) %s at *%s*: %s", map[bool]string{true: "↩️", false: "❌"}[hr.Status == rollout.StatusRolledBack],
		escape(clipLine(hr.Host.ID, 80)), escape(hr.Host.Addr()), strings.ReplaceAll(string(hr.Status), "_", " "), hr.Step,
		escape(clipLine(hr.Error, 600)))
	if out := tailLines(hr.Output, 12, 1500); out != "" {
		b.WriteString("\n" + codeBlock(out))
	}
	return fitText(b.String(), maxSectionText)
}

// codeBlock fences s as preformatted text; a fence inside s cannot end it.
func codeBlock(s string) string {
	return "```" + strings.ReplaceAll(s, "```", "ˋˋˋ") + "```"
}

// tailLines keeps the last n lines of s, at most max bytes.
func tailLines(s string, n, max int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s = strings.Join(lines, "\n")
	if len(s) > max {
		s = "…" + strings.ToValidUTF8(s[len(s)-max:], "")
	}
	return s
}
