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
	HaltActionID     = "rollout_halt"     // the Halt button (of a rollout, or of its rollback)
	PromoteActionID  = "rollout_promote"  // the Promote button of a rollout waiting at a gate
	RollbackActionID = "rollout_rollback" // the Halt & roll back button
	OutcomeBlockID   = "rollout_outcome"  // the line that replaces them when the rollout ends
)

// Button states: what a rollout was doing when its buttons were drawn. A
// press is acted on only while the rollout still does it.
const (
	stateRunning     = "running"      // updating, or paused between stages
	stateHalting     = "halting"      // a halt was asked for; hosts in flight finish
	stateRollingBack = "rolling_back" // putting hosts back
)

// buttonState names what r is doing, for a button's value: the states above,
// or the phase it ended in.
func buttonState(r rollout.Rollout) string {
	switch {
	case r.Phase.Ended():
		return string(r.Phase)
	case r.Halt != nil:
		return stateHalting
	case r.Phase == rollout.PhaseRollingBack:
		return stateRollingBack
	case r.Phase == rollout.PhaseGated:
		return gatedState(r.Stage)
	case r.Phase.Holding():
		return holdState(r)
	}
	return stateRunning
}

// buttonValue is a button's value: the rollout and the state it was drawn
// for, e.g. "12:running".
func buttonValue(r rollout.Rollout) string {
	return strconv.FormatInt(r.ID, 10) + ":" + buttonState(r)
}

// parseButtonValue reads a button's value. A bare id, from a message drawn
// before buttons carried a state, was drawn while the rollout ran.
func parseButtonValue(v string) (id int64, state string, err error) {
	idText, state, ok := strings.Cut(v, ":")
	if !ok {
		state = stateRunning
	}
	id, err = strconv.ParseInt(idText, 10, 64)
	if err != nil || id < 1 || state == "" {
		return 0, "", fmt.Errorf("bad button value %q", clipLine(v, 40))
	}
	return id, state, nil
}

// rollbackView reports whether the status message shows r's rollback: from
// when it begins (a running rollout halts first and shows that) to its end.
// A rollback asked for as the rollout ended has not begun (no epoch yet).
func rollbackView(r rollout.Rollout) bool {
	return r.Undo != nil && (r.Phase == rollout.PhaseRollingBack || r.Phase.Ended() && r.Undo.Epoch > 0)
}

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
func statusBlocks(p rollout.Progress, now time.Time, promoters string) ([]slack.Block, string) {
	if rollbackView(p.Rollout) {
		return rollbackBlocks(p, now)
	}
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
	if w := waitLine(r, now); w != "" {
		blocks = append(blocks, section(w))
	}
	if len(p.Recent) > 0 {
		blocks = append(blocks, section(failureList(p.Recent, c.Failed+c.RolledBack)))
	}
	if r.Phase.Active() {
		switch {
		case r.Halt != nil && r.Undo != nil:
			blocks = append(blocks, slack.NewContextBlock("rollout_halting", mrkdwn(haltingLine(r, c)+
				" — letting in-flight hosts finish, then every host it updated is put back")))
		case r.Halt != nil:
			blocks = append(blocks, slack.NewContextBlock("rollout_halting", mrkdwn(haltingLine(r, c)+" — letting in-flight hosts finish")))
		default:
			var buttons []slack.BlockElement
			if r.Phase == rollout.PhaseGated {
				blocks = append(blocks, section(gateText(r, promoters)))
				if promote := promoteButton(r); promote != nil {
					buttons = append(buttons, promote)
				}
			}
			if r.Phase == rollout.PhaseBaking {
				blocks = append(blocks, section(bakeText(r)))
			}
			if r.Phase.Holding() {
				buttons = append(buttons, goOnButton(r, now))
			}
			halt := slack.NewButtonBlockElement(HaltActionID, buttonValue(r), plain("Halt rollout"))
			halt.Style = slack.StyleDanger
			halt.Confirm = slack.NewConfirmationBlockObject(plain("Halt this rollout?"),
				plain(fmt.Sprintf("No new host of #%d (%s) will start; hosts being updated finish. You can resume it later.", r.ID, clipLine(r.Version, 60))),
				plain("Halt"), plain("Keep going"))
			back := slack.NewButtonBlockElement(RollbackActionID, buttonValue(r), plain("Halt & roll back"))
			back.Style = slack.StyleDanger
			back.Confirm = slack.NewConfirmationBlockObject(plain(clipLine(fmt.Sprintf("Halt and roll back #%d?", r.ID), 100)),
				plain(rollbackConfirm(r, c)), plain("Halt & roll back"), plain("Keep going"))
			blocks = append(blocks, slack.NewActionBlock("rollout_actions", append(buttons, halt, back)...))
		}
	} else {
		blocks = append(blocks, slack.NewContextBlock(OutcomeBlockID, mrkdwn(endLine(&r, c))))
	}
	text := fmt.Sprintf("Rollout #%d of %s: %s, %d/%d done", r.ID, r.Version, stateWord(r), c.Done(), c.Total())
	return blocks, text
}

// rollbackConfirm is the confirm dialog of Halt & roll back: how many hosts
// it puts back, from the counts the message shows.
func rollbackConfirm(r rollout.Rollout, c rollout.Counts) string {
	text := fmt.Sprintf("Halt #%d and put back the %d %s it updated, each on its previous version?",
		r.ID, c.Success, rollout.Plural(c.Success, "host", "hosts"))
	if c.Updating > 0 {
		text += fmt.Sprintf(" The %d in flight finish first and are put back too.", c.Updating)
	}
	if n := c.Failed + c.RolledBack; n > 0 {
		text += fmt.Sprintf(" The %d whose update failed are put back if they still run %s.", n, clipLine(r.Version, 40))
	}
	return clipLine(text, 300)
}

// rollbackBlocks renders the status message of a rollout being rolled back,
// or whose rollback ended.
func rollbackBlocks(p rollout.Progress, now time.Time) ([]slack.Block, string) {
	r := p.Rollout
	u := p.Counts.Undo
	head := "↩️ *Rolling back " + escape(r.Version) + " → previous*: "
	if r.Phase.Ended() {
		head = "↩️ *Rollback of " + escape(r.Version) + " → previous*: "
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(clipLine(fmt.Sprintf("Rollout #%d · %s", r.ID, r.Version), 150))),
		section(head + undoTally(u) + "\n" + fmt.Sprintf("Rollback asked by %s%s · %s\nThe rollout, started by %s: %s",
			who(r.Undo.By), reasonSuffix(r.Undo.Reason), undoElapsed(r, now), who(r.StartedBy), p.Counts)),
		section(progressBar(u.Done(), u.Total()) + fmt.Sprintf("  *%d/%d* done", u.Done(), u.Total())),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			mrkdwn(fmt.Sprintf("✅ Restored: *%d*", u.Restored)),
			mrkdwn(fmt.Sprintf("❌ Failed: *%d*", u.Failed)),
			mrkdwn(fmt.Sprintf("✋ Left alone: *%d*", u.Left)),
			mrkdwn(fmt.Sprintf("↷ Already back: *%d*", u.NotNeeded)),
			mrkdwn(fmt.Sprintf("⏳ In flight: *%d*", u.Restoring)),
			mrkdwn(fmt.Sprintf("… To go: *%d*", u.Pending)),
		}, nil),
	}
	var notBack []rollout.HostResult
	for _, hr := range p.Recent {
		if hr.Undo.Status == rollout.UndoFailed || hr.Undo.Status == rollout.UndoLeft {
			notBack = append(notBack, hr)
		}
	}
	if len(notBack) > 0 {
		blocks = append(blocks, section(notBackList(notBack, u.Failed+u.Left)))
	}
	switch {
	case r.Phase.Ended():
		blocks = append(blocks, slack.NewContextBlock(OutcomeBlockID, mrkdwn(endLine(&r, p.Counts))))
	case r.Halt != nil:
		blocks = append(blocks, slack.NewContextBlock("rollout_halting", mrkdwn(haltingLine(r, p.Counts)+
			" — letting them finish; `/rollout resume` continues the rollback")))
	default:
		halt := slack.NewButtonBlockElement(HaltActionID, buttonValue(r), plain("Halt rollback"))
		halt.Style = slack.StyleDanger
		halt.Confirm = slack.NewConfirmationBlockObject(plain("Halt the rollback?"),
			plain(clipLine(fmt.Sprintf("No more hosts of #%d are put back; the ones in flight finish. The %d to go stay on %s until `/rollout resume` continues the rollback.",
				r.ID, u.Pending, r.Version), 300)),
			plain("Halt"), plain("Keep going"))
		blocks = append(blocks, slack.NewActionBlock("rollout_actions", halt))
	}
	text := fmt.Sprintf("Rollout #%d of %s: %s, %d/%d restored", r.ID, r.Version, stateWord(r), u.Restored, u.Total())
	return blocks, text
}

// undoTally is a rollback's progress in one line, e.g. "37/120 restored, 2
// failed, 81 to go".
func undoTally(u rollout.UndoCounts) string {
	parts := []string{fmt.Sprintf("%d/%d restored", u.Restored, u.Total())}
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(u.Failed, "failed")
	add(u.Left, "left alone")
	add(u.NotNeeded, "already back")
	add(u.Restoring+u.Pending, "to go")
	return strings.Join(parts, ", ")
}

// undoElapsed is how long the rollback has run since it was asked for.
func undoElapsed(r rollout.Rollout, now time.Time) string {
	end := now
	if !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	d := end.Sub(r.Undo.At).Round(time.Second)
	if r.Phase.Ended() {
		return "took " + d.String()
	}
	return "running for " + d.String()
}

// notBackList lists the latest hosts the rollback could not put back.
func notBackList(recent []rollout.HostResult, total int) string {
	return hostList("*Not put back*", recent, total, func(hr rollout.HostResult) string {
		return fmt.Sprintf("%s: %s", undoWord(hr.Undo.Status), escape(clipLine(hr.Undo.Error, 200)))
	})
}

// hostList is title and a line for each of the latest hosts of recent,
// newest first, up to maxFailures, then how many more of total there are.
func hostList(title string, recent []rollout.HostResult, total int, line func(rollout.HostResult) string) string {
	var b strings.Builder
	b.WriteString(title)
	start := max(0, len(recent)-maxFailures)
	for i := len(recent) - 1; i >= start; i-- {
		fmt.Fprintf(&b, "\n• `%s` %s", escape(clipLine(recent[i].Host.ID, 60)), line(recent[i]))
	}
	if more := total - (len(recent) - start); more > 0 {
		fmt.Fprintf(&b, "\n_and %d more — `/rollout status failed`_", more)
	}
	return b.String()
}

func undoWord(s rollout.UndoStatus) string {
	switch s {
	case rollout.UndoFailed:
		return "❌ not put back"
	case rollout.UndoLeft:
		return "✋ left alone"
	case rollout.UndoRestored:
		return "✅ put back"
	case rollout.UndoNotNeeded:
		return "↷ already back"
	}
	return strings.ReplaceAll(string(s), "_", " ")
}

func stageLine(p rollout.Progress) string {
	r := p.Rollout
	var parts []string
	for _, st := range p.Stages {
		label := fmt.Sprintf("%d%%", st.Percent)
		switch {
		case st.Size() == 0:
			label = "~" + label + "~"
		case r.Phase == rollout.PhaseCompleted || st.Index < r.Stage || (st.Index == r.Stage && stageDone(r.Phase)):
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

// haltingLine says that a halt of r is under way, who asked for it and why,
// and how many hosts finish first.
func haltingLine(r rollout.Rollout, c rollout.Counts) string {
	h := r.Halt
	switch {
	case r.Phase == rollout.PhaseRollingBack:
		return fmt.Sprintf("⏸ Halt of the rollback requested by %s%s; %d being put back", who(h.By), reasonSuffix(h.Reason), c.Undo.Restoring)
	case r.Undo != nil:
		return fmt.Sprintf("⏸ Halt & roll back requested by %s%s; %d in flight", who(r.Undo.By), reasonSuffix(r.Undo.Reason), c.Updating)
	case h.Auto():
		return fmt.Sprintf("⏸ Halting: %s; %d in flight", escape(h.Reason), c.Updating)
	}
	return fmt.Sprintf("⏸ Halt requested by %s%s; %d in flight", who(h.By), reasonSuffix(h.Reason), c.Updating)
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
	return hostList("*Latest failures*", recent, total, func(hr rollout.HostResult) string {
		return fmt.Sprintf("%s at %s: %s", statusWord(hr.Status), hr.Step, escape(clipLine(hr.Error, 200)))
	})
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
	case r.Phase == rollout.PhaseRolledBack:
		return "↩️ Rolled back: " + escape(c.Undo.String())
	case r.Phase == rollout.PhaseHalted && r.Undo != nil:
		by := ""
		if r.Halt != nil {
			by = " by " + who(r.Halt.By) + reasonSuffix(r.Halt.Reason)
		}
		return "⏹ Rollback halted" + by + " (" + escape(c.Undo.String()) + ") — `/rollout resume` continues it"
	case r.Phase == rollout.PhaseHalted && r.Halt != nil && !r.Halt.Auto():
		return "⏹ Halted by " + who(r.Halt.By) + reasonSuffix(r.Halt.Reason)
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

// undoReply is the thread reply for a host the rollback could not put back,
// or left alone.
func undoReply(hr rollout.HostResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s `%s` (%s), to go back to %s: %s", undoWord(hr.Undo.Status), escape(clipLine(hr.Host.ID, 80)), escape(hr.Host.Addr()),
		escape(clipLine(hr.PrevVersion, 60)), escape(clipLine(hr.Undo.Error, 600)))
	if out := tailLines(hr.Undo.Output, 12, 1500); out != "" {
		b.WriteString("\n" + codeBlock(out))
	}
	return fitText(b.String(), maxSectionText)
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
