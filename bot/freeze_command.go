package bot

import (
	"strconv"
	"strings"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Freeze commands.
const (
	KindFreeze     Kind = "freeze"
	KindUnfreeze   Kind = "unfreeze"
	KindFreezeList Kind = "freeze list"
)

// FreezeUsage is the help for freezes and the start overrides.
const FreezeUsage = "• `freeze [for DURATION | until TIME] REASON` — no rollout starts, running ones wait at their next stage; `freeze` alone lists the freezes\n" +
	"• `unfreeze [ID]` — end the freezes in effect (or freeze ID)\n" +
	"• `start [VERSION] override \"REASON\"` — start during a freeze · `start [VERSION] anytime` — start hosts outside the rollout windows too"

// parseFreeze reads `freeze [list]`, `freeze for DURATION REASON…`,
// `freeze until TIME REASON…` (a TIME with spaces in quotes) and
// `freeze REASON…`; the times are resolved when the command runs.
func parseFreeze(rest []string) (Command, error) {
	if len(rest) == 0 || (len(rest) == 1 && strings.EqualFold(rest[0], "list")) {
		return Command{Kind: KindFreezeList}, nil
	}
	c := Command{Kind: KindFreeze}
	switch strings.ToLower(rest[0]) {
	case "for":
		if len(rest) < 2 {
			return Command{}, usageErr("`freeze for DURATION REASON`: say how long, e.g. `freeze for 2h incident 4711`")
		}
		if _, err := rollout.ParseDuration(rest[1]); err != nil {
			return Command{}, usageErr("%q is not a duration: use e.g. 30m, 2h, 3d", clip(rest[1]))
		}
		c.For, rest = rest[1], rest[2:]
	case "until":
		if len(rest) < 2 {
			return Command{}, usageErr("`freeze until TIME REASON`: say until when, e.g. `freeze until 18:00 release party` or `freeze until \"2026-12-02 06:00 Europe/Berlin\" Black Friday`")
		}
		c.Until, rest = rest[1], rest[2:]
	}
	c.Reason = strings.TrimSpace(strings.Join(rest, " "))
	switch {
	case c.Reason == "":
		return Command{}, usageErr("say why: `freeze [for DURATION | until TIME] REASON`")
	case len(c.Reason) > 500:
		return Command{}, usageErr("keep the freeze reason under 500 characters")
	}
	return c, nil
}

// parseUnfreeze reads `unfreeze [ID]`.
func parseUnfreeze(rest []string) (Command, error) {
	c := Command{Kind: KindUnfreeze}
	switch len(rest) {
	case 0:
		return c, nil
	case 1:
		id, err := strconv.ParseInt(strings.TrimPrefix(rest[0], "#"), 10, 64)
		if err != nil || id < 1 {
			return Command{}, usageErr("%q is not a freeze number", clip(rest[0]))
		}
		c.Freeze = id
		return c, nil
	}
	return Command{}, usageErr("`unfreeze` takes at most one freeze number")
}
