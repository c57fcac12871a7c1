// Package bot is rolloutbot in Slack: /rollout over Socket Mode, admin checks
// on every mutating command and button, and one pinned status message per
// rollout, edited in place as it moves. It is the only package that imports
// slack-go.
package bot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Kind is what a /rollout command asks for.
type Kind string

// Command kinds.
const (
	KindHelp           Kind = "help"
	KindStart          Kind = "start"
	KindPlan           Kind = "plan"
	KindStatus         Kind = "status"
	KindHalt           Kind = "halt"
	KindResume         Kind = "resume"
	KindRollback       Kind = "rollback"
	KindPlanRollback   Kind = "plan rollback"
	KindHistory        Kind = "history"
	KindHosts          Kind = "hosts"
	KindScheduleAdd    Kind = "schedule add"
	KindScheduleList   Kind = "schedule list"
	KindScheduleRemove Kind = "schedule remove"
	KindPromote        Kind = "promote"
)

// Mutating reports whether the command changes anything, and so needs an admin.
func (k Kind) Mutating() bool {
	switch k {
	case KindStart, KindHalt, KindResume, KindRollback, KindScheduleAdd, KindScheduleRemove, KindFreeze, KindUnfreeze, KindPromote:
		return true
	}
	return false
}

// Command is a parsed /rollout command.
type Command struct {
	Kind     Kind
	Version  string // start, plan, schedule add; empty: the latest
	Reason   string // halt, rollback
	Host     string // status HOST
	Failed   bool   // status failed
	N        int    // history N
	Cron     string // schedule add
	TZ       string // schedule add
	Schedule int64  // schedule remove
	Override string // start … override REASON: start during a freeze
	Anytime  bool   // start … anytime: start hosts outside the windows
	For      string // freeze for DURATION
	Until    string // freeze until TIME
	Freeze   int64  // unfreeze ID
	// Gate is start's and plan's gates, as rollout.ParseGates reads them:
	// "all" for `gate` alone, or percents such as "10,50"; empty: the
	// configured gates.
	Gate string
	Now  bool // start now: no preview with Start / Cancel buttons first
}

// Usage is the short help shown for help and for anything malformed.
const Usage = "*/rollout* commands:\n" +
	"• `start [VERSION] [gate [10,50]] [now]` — roll VERSION (default: the latest) out in stages; `gate` makes every stage (or the ones named) wait for a Promote; `now` skips the preview\n" +
	"• `promote` — let a rollout waiting at a gate go on to its next stage\n" +
	"• `plan [VERSION]` — the stages, and the failures that would halt each\n" +
	"• `status` · `status failed` · `status HOST` — where the rollout is\n" +
	"• `halt [reason]` — stop starting hosts; hosts in flight finish\n" +
	"• `resume` — continue a halted rollout (or a halted rollback)\n" +
	"• `rollback [reason]` — halt the latest rollout if it runs, then put every host it updated back on its previous version\n" +
	"• `plan rollback` — what a rollback would put back, before asking for it\n" +
	"• `history [N]` — the last N rollouts\n" +
	"• `hosts` — host count and version spread\n" +
	"• `schedule add \"<cron>\" [VERSION] [TZ]` · `schedule list` · `schedule remove ID`\n" +
	FreezeUsage + "\n" +
	"Starting, halting, resuming, rolling back, scheduling and freezing need a rolloutbot admin."

// ErrUsage marks input that is not a command; its message says what is wrong.
var ErrUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// Parse reads the text after /rollout. It never panics and never accepts
// half a command: anything it cannot read exactly is an error wrapping
// ErrUsage (or rollout.ErrInvalidVersion for a bad version).
func Parse(text string) (Command, error) {
	args, err := split(text)
	if err != nil {
		return Command{}, err
	}
	if len(args) == 0 {
		return Command{Kind: KindHelp}, nil
	}
	verb, rest := strings.ToLower(args[0]), args[1:]
	switch verb {
	case "help", "-h", "--help", "?":
		return Command{Kind: KindHelp}, nil
	case "start", "plan":
		// "plan rollback" is the rollback's plan, not a version's.
		if verb == "plan" && len(rest) > 0 && strings.EqualFold(rest[0], "rollback") {
			if len(rest) > 1 {
				return Command{}, usageErr("`plan rollback` takes no arguments")
			}
			return Command{Kind: KindPlanRollback}, nil
		}
		return parseStartOptions(Kind(verb), rest)
	case "promote":
		if len(rest) > 0 {
			return Command{}, usageErr("`promote` takes no arguments")
		}
		return Command{Kind: KindPromote}, nil
	case "status":
		switch {
		case len(rest) == 0:
			return Command{Kind: KindStatus}, nil
		case len(rest) > 1:
			return Command{}, usageErr("`status` takes `failed` or one host")
		case strings.EqualFold(rest[0], "failed"):
			return Command{Kind: KindStatus, Failed: true}, nil
		case !plainWord(rest[0]):
			return Command{}, usageErr("%q is not a host name", clip(rest[0]))
		}
		return Command{Kind: KindStatus, Host: rest[0]}, nil
	case "halt", "stop":
		reason := strings.Join(rest, " ")
		if len(reason) > 500 {
			return Command{}, usageErr("keep the halt reason under 500 characters")
		}
		return Command{Kind: KindHalt, Reason: reason}, nil
	case "rollback":
		reason := strings.Join(rest, " ")
		if len(reason) > 500 {
			return Command{}, usageErr("keep the rollback reason under 500 characters")
		}
		return Command{Kind: KindRollback, Reason: reason}, nil
	case "resume", "hosts":
		if len(rest) > 0 {
			return Command{}, usageErr("`%s` takes no arguments", verb)
		}
		return Command{Kind: Kind(verb)}, nil
	case "history":
		c := Command{Kind: KindHistory, N: 5}
		if len(rest) > 1 {
			return Command{}, usageErr("`history` takes one number")
		}
		if len(rest) == 1 {
			n, err := strconv.Atoi(rest[0])
			if err != nil || n < 1 || n > 50 {
				return Command{}, usageErr("`history N` takes a number from 1 to 50, not %q", clip(rest[0]))
			}
			c.N = n
		}
		return c, nil
	case "schedule", "schedules":
		return parseSchedule(rest)
	case "freeze", "freezes":
		return parseFreeze(rest)
	case "unfreeze":
		return parseUnfreeze(rest)
	}
	return Command{}, usageErr("unknown command %q", clip(verb))
}

// parseStartOptions reads start's and plan's words: a version, `gate` with
// optional stage percents, and (start only) `now` and `anytime`, in any
// order, and `override REASON…` last.
func parseStartOptions(kind Kind, args []string) (Command, error) {
	c := Command{Kind: kind}
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch strings.ToLower(a) {
		case "now", "anytime", "override":
			if kind != KindStart {
				return Command{}, usageErr("`%s` goes with `start`", strings.ToLower(a))
			}
		}
		switch strings.ToLower(a) {
		case "now":
			c.Now = true
			continue
		case "anytime":
			c.Anytime = true
			continue
		case "override":
			// The reason is the rest of the line: it comes last.
			c.Override = strings.TrimSpace(strings.Join(args[i+1:], " "))
			if c.Override == "" {
				return Command{}, usageErr("`start … override \"REASON\"` needs a reason: overriding a freeze is audited and announced")
			}
			if len(c.Override) > 500 {
				return Command{}, usageErr("keep the override reason under 500 characters")
			}
			i = len(args)
			continue
		case "gate", "gates":
			if c.Gate != "" {
				return Command{}, usageErr("`gate` is given twice")
			}
			c.Gate = "all"
			if i+1 < len(args) && percentList(args[i+1]) {
				c.Gate = args[i+1]
				i++
			}
			continue
		}
		words = append(words, a)
	}
	if len(words) > 1 {
		return Command{}, usageErr("`%s` takes one version, got %d words", kind, len(words))
	}
	if len(words) == 1 {
		if err := rollout.ValidateVersion(words[0]); err != nil {
			return Command{}, err
		}
		c.Version = words[0]
	}
	return c, nil
}

// percentList reports whether s looks like stage percents: "10", "10,50%".
func percentList(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r == ',' || r == '%') {
			return false
		}
	}
	return true
}

func parseSchedule(args []string) (Command, error) {
	if len(args) == 0 {
		return Command{Kind: KindScheduleList}, nil
	}
	switch strings.ToLower(args[0]) {
	case "list", "ls":
		if len(args) > 1 {
			return Command{}, usageErr("`schedule list` takes no arguments")
		}
		return Command{Kind: KindScheduleList}, nil
	case "remove", "rm", "delete":
		if len(args) != 2 {
			return Command{}, usageErr("`schedule remove ID` takes one schedule number")
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(args[1], "#"), 10, 64)
		if err != nil || id < 1 {
			return Command{}, usageErr("%q is not a schedule number", clip(args[1]))
		}
		return Command{Kind: KindScheduleRemove, Schedule: id}, nil
	case "add":
		rest := args[1:]
		if len(rest) == 0 {
			return Command{}, usageErr("`schedule add \"<cron>\" [VERSION] [TZ]` needs a cron spec in quotes, e.g. \"0 3 * * 1-5\"")
		}
		c := Command{Kind: KindScheduleAdd, Cron: rest[0]}
		if len(strings.Fields(c.Cron)) != 5 {
			return Command{}, usageErr("the cron spec %q must have five fields (minute hour day month weekday), in quotes", clip(c.Cron))
		}
		for _, a := range rest[1:] {
			switch {
			case strings.Contains(a, "/") || a == "UTC" || a == "Local":
				if c.TZ != "" {
					return Command{}, usageErr("two time zones: %q and %q", c.TZ, clip(a))
				}
				c.TZ = a
			case c.Version == "":
				if err := rollout.ValidateVersion(a); err != nil {
					return Command{}, err
				}
				c.Version = a
			default:
				return Command{}, usageErr("unexpected %q after the version", clip(a))
			}
		}
		return c, nil
	}
	return Command{}, usageErr("`schedule` takes add, list or remove, not %q", clip(args[0]))
}

// split breaks text into words; "double" or “smart” quotes group words.
func split(text string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, started := rune(0), false
	for _, r := range text {
		switch {
		case in != 0 && r == closing(in):
			in = 0
		case in != 0:
			cur.WriteRune(r)
		case r == '"' || r == '“' || r == '”':
			in, started = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\u00a0':
			if started || cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if in != 0 {
		return nil, usageErr("a quote is not closed")
	}
	if started || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

func closing(open rune) rune {
	if open == '“' {
		return '”'
	}
	return open
}

// plainWord is what a host id or address looks like.
func plainWord(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '-' || r == '_' || r == ':' || r == '[' || r == ']' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:39]) + "…"
	}
	return s
}
