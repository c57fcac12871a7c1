package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// maxListed is how many hosts a report lists before "and N more".
const maxListed = 100

// current returns the running rollout, or the last one.
func (b *Bot) current(ctx context.Context) (*rollout.Rollout, error) {
	rs, err := b.store.Rollouts(ctx, 1)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	return rs[0], nil
}

func (b *Bot) statusReport(ctx context.Context, cmd Command) (string, error) {
	r, err := b.current(ctx)
	if err != nil {
		return "", err
	}
	if r == nil {
		return "No rollouts yet. `/rollout plan VERSION` shows what a rollout would do.", nil
	}
	if cmd.Host != "" {
		hr, err := b.store.FindHostResult(ctx, r.ID, cmd.Host)
		var amb *rollout.AmbiguousHostError
		switch {
		case errors.Is(err, rollout.ErrNotFound):
			return fmt.Sprintf("`%s` is not part of rollout #%d.", escape(cmd.Host), r.ID), nil
		case errors.As(err, &amb):
			return escape(amb.Error()) + ".", nil
		case err != nil:
			return "", err
		}
		return hostDetail(r, hr), nil
	}
	results, err := b.store.HostResults(ctx, r.ID)
	if err != nil {
		return "", err
	}
	c := rollout.CountResults(results)
	var out strings.Builder
	fmt.Fprintf(&out, "*Rollout #%d · %s* — %s\n", r.ID, escape(r.Version), escape(rollout.Outcome(r, c)))
	p := rollout.Progress{Rollout: *r, Stages: r.StageList(), Counts: c}
	fmt.Fprintf(&out, "%s\nStarted by %s · %s\n%s *%d/%d* done: %s\n", stageLine(p), who(r.StartedBy), elapsed(*r, time.Now()),
		progressBar(c.Done(), c.Total()), c.Done(), c.Total(), c)
	if w := waitLine(*r, time.Now()); w != "" {
		out.WriteString(w + "\n")
	}
	if r.Undo != nil {
		fmt.Fprintf(&out, "↩️ Rollback asked by %s%s: %s\n", who(r.Undo.By), reasonSuffix(r.Undo.Reason), undoTally(c.Undo))
	}
	if r.Phase == rollout.PhaseGated && r.Halt == nil {
		fmt.Fprintf(&out, "⏸ Waiting for promotion to %d %%: `/rollout promote`, or Promote on its status message\n", nextPercent(*r))
	}
	var failures, notBack []rollout.HostResult
	for _, hr := range results {
		if hr.Status.Failure() {
			failures = append(failures, hr)
		}
		if hr.Undo.Status == rollout.UndoFailed || hr.Undo.Status == rollout.UndoLeft {
			notBack = append(notBack, hr)
		}
	}
	limit := 10
	if cmd.Failed {
		limit = maxListed
		if len(failures)+len(notBack) == 0 {
			out.WriteString("No failed or rolled-back hosts.")
			return out.String(), nil
		}
	}
	list := func(title string, hrs []rollout.HostResult, line func(rollout.HostResult) string) {
		if len(hrs) == 0 {
			return
		}
		out.WriteString(title + "\n")
		for i, hr := range hrs {
			if i == limit {
				more := "`/rollout status failed`"
				if cmd.Failed {
					more = "`rolloutbot rollout status --failed` on the bot's host"
				}
				fmt.Fprintf(&out, "_and %d more — %s_\n", len(hrs)-limit, more)
				break
			}
			out.WriteString(line(hr) + "\n")
		}
	}
	list("*Not put back by the rollback*", notBack, func(hr rollout.HostResult) string {
		return fmt.Sprintf("• `%s` %s: %s", escape(hr.Host.ID), undoWord(hr.Undo.Status), escape(clipLine(hr.Undo.Error, 160)))
	})
	list("*Failures*", failures, func(hr rollout.HostResult) string {
		return fmt.Sprintf("• `%s` %s at %s: %s", escape(hr.Host.ID), statusWord(hr.Status), hr.Step, escape(clipLine(hr.Error, 160)))
	})
	return out.String(), nil
}

func hostDetail(r *rollout.Rollout, hr rollout.HostResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s* (%s) in rollout #%d: *%s*", escape(hr.Host.ID), escape(hr.Host.Addr()), r.ID, strings.ReplaceAll(string(hr.Status), "_", " "))
	if hr.Status != rollout.StatusSuccess && hr.Step != "" {
		fmt.Fprintf(&b, " at %s", hr.Step)
	}
	if hr.PrevVersion != "" || hr.NewVersion != "" {
		fmt.Fprintf(&b, "\nVersion: %s → %s", cmp.Or(escape(hr.PrevVersion), "?"), cmp.Or(escape(hr.NewVersion), "?"))
	}
	if !hr.StartedAt.IsZero() && !hr.FinishedAt.IsZero() {
		fmt.Fprintf(&b, "\nTook %s", hr.FinishedAt.Sub(hr.StartedAt).Round(time.Millisecond))
	}
	if hr.Error != "" {
		fmt.Fprintf(&b, "\nError: %s", escape(clipLine(hr.Error, 1000)))
	}
	if out := tailLines(hr.Output, 20, 2000); out != "" {
		b.WriteString("\n" + codeBlock(out))
	}
	if hr.Undo.Status != rollout.UndoNone {
		fmt.Fprintf(&b, "\nRollback: %s", undoWord(hr.Undo.Status))
		if hr.Undo.Error != "" {
			fmt.Fprintf(&b, ": %s", escape(clipLine(hr.Undo.Error, 1000)))
		}
		if out := tailLines(hr.Undo.Output, 20, 2000); out != "" {
			b.WriteString("\n" + codeBlock(out))
		}
	}
	return b.String()
}

func (b *Bot) history(ctx context.Context, n int) (string, error) {
	rs, err := b.store.Rollouts(ctx, n)
	if err != nil {
		return "", err
	}
	if len(rs) == 0 {
		return "No rollouts yet.", nil
	}
	var out strings.Builder
	out.WriteString("*Recent rollouts*\n")
	for _, r := range rs {
		c, err := b.store.Counts(ctx, r.ID)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&out, "• #%d `%s` %s by %s — %s (%s)\n", r.ID, escape(r.Version), r.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"),
			who(r.StartedBy), escape(rollout.Outcome(r, c)), c)
	}
	return out.String(), nil
}

// hosts reports the inventory's size and the versions its hosts last reported.
func (b *Bot) hosts(ctx context.Context) (string, error) {
	hosts, err := b.inv.ActiveHosts(ctx)
	if err != nil {
		return "", err
	}
	known := map[string]string{}
	rs, err := b.store.Rollouts(ctx, 10)
	if err != nil {
		return "", err
	}
	for _, r := range rs { // newest first: the first version seen for a host is its latest
		results, err := b.store.HostResults(ctx, r.ID)
		if err != nil {
			return "", err
		}
		for _, hr := range results {
			if _, ok := known[hr.Host.ID]; ok {
				continue
			}
			switch {
			case hr.Undo.Status == rollout.UndoRestored || hr.Undo.Status == rollout.UndoNotNeeded:
				known[hr.Host.ID] = hr.PrevVersion
			case hr.Undo.Status != rollout.UndoNone && hr.Undo.Status != rollout.UndoPending:
				known[hr.Host.ID] = "" // the rollback could not tell, or left it alone
			case hr.Status == rollout.StatusSuccess || hr.Status == rollout.StatusSkipped || hr.Status == rollout.StatusRolledBack:
				known[hr.Host.ID] = hr.NewVersion
			case hr.PrevVersion != "" && hr.Status != rollout.StatusFailed:
				known[hr.Host.ID] = hr.PrevVersion
			}
		}
		if len(known) >= len(hosts) {
			break
		}
	}
	spread := map[string]int{}
	for _, h := range hosts {
		v, ok := known[h.ID]
		if !ok || v == "" {
			v = "unknown"
		}
		spread[v]++
	}
	versions := make([]string, 0, len(spread))
	for v := range spread {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, func(a, b string) int { return cmp.Or(cmp.Compare(spread[b], spread[a]), cmp.Compare(a, b)) })
	var out strings.Builder
	fmt.Fprintf(&out, "*%d active hosts*, by the version each last reported:\n", len(hosts))
	for i, v := range versions {
		if i == 20 {
			fmt.Fprintf(&out, "_and %d more versions_\n", len(versions)-20)
			break
		}
		fmt.Fprintf(&out, "• `%s` × %d\n", escape(v), spread[v])
	}
	return out.String(), nil
}

func (b *Bot) schedule(ctx context.Context, c caller, cmd Command) (string, error) {
	if b.schedules == nil {
		return "Scheduling is not set up on this bot.", nil
	}
	switch cmd.Kind {
	case KindScheduleAdd:
		s, err := b.schedules.AddSchedule(ctx, rollout.Schedule{Spec: cmd.Cron, TZ: cmd.TZ, Version: cmd.Version,
			CreatedBy: c.user, Source: rollout.SourceSlack})
		if err != nil {
			var ve interface{ Invalid() bool }
			if errors.As(err, &ve) && ve.Invalid() {
				return "⛔ " + escape(err.Error()), nil
			}
			return "", err
		}
		return fmt.Sprintf("🗓 Schedule #%d added: `%s` (%s), %s. Next run %s.", s.ID, escape(s.Spec), s.TZ,
			versionOrLatest(s.Version), s.Next.Format("Mon 2006-01-02 15:04 MST")) + calendarWarning(b.schedules, s), nil
	case KindScheduleRemove:
		err := b.schedules.RemoveSchedule(ctx, cmd.Schedule, c.user)
		if errors.Is(err, rollout.ErrNotFound) {
			return fmt.Sprintf("There is no schedule #%d.", cmd.Schedule), nil
		} else if err != nil {
			return "", err
		}
		return fmt.Sprintf("🗑 Schedule #%d removed.", cmd.Schedule), nil
	}
	ss, err := b.schedules.Schedules(ctx)
	if err != nil {
		return "", err
	}
	if len(ss) == 0 {
		return "No schedules. `/rollout schedule add \"0 3 * * 1-5\" v2.4.1 Europe/Berlin` adds one.", nil
	}
	var out strings.Builder
	out.WriteString("*Schedules*\n")
	for _, s := range ss {
		name := ""
		if s.Name != "" {
			name = " " + escape(s.Name) + " (from the configuration)"
		}
		fmt.Fprintf(&out, "• #%d%s `%s` %s, %s — next %s\n", s.ID, name, escape(s.Spec), s.TZ, versionOrLatest(s.Version),
			s.Next.Format("Mon 2006-01-02 15:04 MST"))
	}
	return out.String(), nil
}

func versionOrLatest(v string) string {
	if v == "" {
		return "the latest version"
	}
	return "`" + escape(v) + "`"
}
