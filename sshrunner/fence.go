package sshrunner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// fenceScript runs one recipe command on a host, under the host's lock and
// the driver's fence. It asks of the host a POSIX sh and flock(1), which
// util-linux and BusyBox both ship. Its arguments: the host directory
// (relative to $HOME unless absolute), the store, the rollout, the epoch, the
// step, the seconds to wait for the lock, the command, and for an update the
// version the host ran before it ("-" otherwise).
//
//   - The lock (DIR/lock, held on fd 9) is taken for the whole run and
//     inherited by the command's processes, so a command its driver
//     abandoned (killed, frozen, cut off) holds the host until it really
//     ends, and the next command waits for it. A daemon the command starts
//     inherits it too: when the lock is still held though the last update
//     or rollback recorded its end, the refusal says so and how to start it.
//   - DIR/fence holds the newest fence that ran a command here; an older one
//     of the same store is refused, so a replaced driver that wakes up late
//     runs nothing. Another store's fence (a store set up anew, whose rollouts
//     count from 1 again) is not comparable, and replaces it.
//   - DIR/last records the last update or rollback, "running" while it runs,
//     then its exit status, and the version an update started from; a
//     version read prints it first: a re-check after a crash learns whether
//     the update ran, how it ended, and what to roll back to.
//
// The command runs in the login shell, as sshd would have run it. Exit
// statuses 120 (fenced), 121 (lock still held) and 122 (host not set up)
// come with a "rolloutbot:" line on stderr.
const fenceScript = `d=$1 k=$2 r=$3 e=$4 s=$5 w=$6
case $d in /*) ;; *) d=$HOME/$d ;; esac
command -v flock >/dev/null 2>&1 || { echo "rolloutbot: flock(1) is not installed on this host (it comes with util-linux or BusyBox)" >&2; exit 122; }
[ -d "$d" ] || mkdir -p "$d" || { echo "rolloutbot: cannot create $d" >&2; exit 122; }
exec 9>>"$d/lock" || { echo "rolloutbot: cannot open $d/lock" >&2; exit 122; }
if ! flock -w "$w" 9; then
	l=; [ -s "$d/last" ] && read -r l <"$d/last"
	set -- $l
	case ${5:-running} in
	running) echo "rolloutbot: $d/lock is still held after ${w}s by an earlier command (last recorded: ${l:-none})" >&2 ;;
	*) echo "rolloutbot: $d/lock is still held after ${w}s, though the last $4 recorded here ended (status $5): most likely a process it started is still running and keeps the lock; start long-lived processes through the service manager (systemctl), or close fd 9 for them (mydaemon 9>&-)" >&2 ;;
	esac
	exit 121
fi
fk= fr=0 fe=0; [ -s "$d/fence" ] && read -r fk fr fe <"$d/fence"
if [ "$fk" = "$k" ] && { [ "$fr" -gt "$r" ] || { [ "$fr" -eq "$r" ] && [ "$fe" -gt "$e" ]; }; }; then
	echo "rolloutbot: fenced: this host was since commanded by rollout $fr epoch $fe, not $r epoch $e" >&2; exit 120
fi
[ "$fk $fr $fe" = "$k $r $e" ] || echo "$k $r $e" >"$d/fence" || { echo "rolloutbot: cannot write $d/fence" >&2; exit 122; }
case $s in
version) l=; [ -s "$d/last" ] && read -r l <"$d/last"; echo "rolloutbot-last: $l" ;;
update|rollback) echo "$k $r $e $s running $8" >"$d/last" || { echo "rolloutbot: cannot write $d/last" >&2; exit 122; } ;;
esac
"${SHELL:-/bin/sh}" -c "$7"
c=$?
case $s in update|rollback) echo "$k $r $e $s $c $8" >"$d/last" ;; esac
exit $c`

// Exit statuses of fenceScript's own refusals.
const (
	exitFenced   = 120
	exitLockHeld = 121
	exitNoSetup  = 122
)

// lastPrefix starts the line a version read prints before the version.
const lastPrefix = "rolloutbot-last: "

// Fenced is a recipe command as the runner sends it: the command inside the
// host-side wrapper, with the wrapper's arguments.
type Fenced struct {
	Dir      string // the host directory of the lock, fence and last files
	Fence    rollout.Fence
	Step     rollout.Step
	LockWait int // seconds to wait for the lock
	Command  string
	From     string // for an update, the version the host ran before it
}

// String is the exec request for f: sh runs the wrapper with f's arguments.
func (f Fenced) String() string {
	return "sh -c " + shellQuote(fenceScript) + " rolloutbot " + shellQuote(f.Dir) + " " + shellQuote(storeWord(f.Fence.Store)) + " " +
		strconv.FormatInt(f.Fence.Rollout, 10) + " " + strconv.FormatInt(f.Fence.Epoch, 10) + " " +
		string(f.Step) + " " + strconv.Itoa(f.LockWait) + " " + shellQuote(f.Command) + " " + shellQuote(storeWord(f.From))
}

// ParseFenced reads back an exec request made by Fenced.String; the fleet
// simulator uses it to play the host's side of the wrapper.
func ParseFenced(cmd string) (Fenced, bool) {
	rest, ok := strings.CutPrefix(cmd, "sh -c "+shellQuote(fenceScript)+" rolloutbot ")
	if !ok {
		return Fenced{}, false
	}
	words, ok := shellWords(rest)
	if !ok || len(words) != 8 {
		return Fenced{}, false
	}
	var f Fenced
	var err1, err2, err3 error
	f.Dir, f.Fence.Store, f.Step, f.Command = words[0], strings.TrimPrefix(words[1], "-"), rollout.Step(words[4]), words[6]
	f.From = strings.TrimPrefix(words[7], "-")
	f.Fence.Rollout, err1 = strconv.ParseInt(words[2], 10, 64)
	f.Fence.Epoch, err2 = strconv.ParseInt(words[3], 10, 64)
	f.LockWait, err3 = strconv.Atoi(words[5])
	return f, errors.Join(err1, err2, err3) == nil
}

// storeWord is a store's name (or a version) as one word on the host: "-"
// for none. Neither begins with "-" otherwise.
func storeWord(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shellQuote makes s one single-quoted shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellWords splits words made by shellQuote or plain words, separated by
// single spaces.
func shellWords(s string) ([]string, bool) {
	var words []string
	for s != "" {
		var w strings.Builder
		for s != "" && s[0] != ' ' {
			if s[0] != '\'' {
				w.WriteByte(s[0])
				s = s[1:]
				continue
			}
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, false
			}
			w.WriteString(s[1 : end+1])
			s = s[end+2:]
			if strings.HasPrefix(s, `\'`) {
				w.WriteByte('\'')
				s = s[2:]
			}
		}
		words = append(words, w.String())
		s = strings.TrimPrefix(s, " ")
	}
	return words, true
}

// ParseLast reads a host's record of its last update or rollback, as the
// wrapper prints it: "STORE ROLLOUT EPOCH STEP running|STATUS FROM", or
// nothing. A record in an older form (without the store) is another store's;
// one without FROM, or with "-", names no version.
func ParseLast(line string) (rollout.LastCommand, error) {
	f := strings.Fields(line)
	if len(f) == 4 {
		f = append([]string{"-"}, f...)
	}
	if len(f) == 0 {
		return rollout.LastCommand{}, nil
	}
	var l rollout.LastCommand
	var err error
	if len(f) == 6 {
		l.From, f = strings.TrimPrefix(f[5], "-"), f[:5]
	}
	if len(f) != 5 {
		return l, fmt.Errorf("the host's record of its last command %q does not read as STORE ROLLOUT EPOCH STEP STATUS FROM", line)
	}
	l.Fence.Store, f = strings.TrimPrefix(f[0], "-"), f[1:]
	if l.Fence.Rollout, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return l, fmt.Errorf("the host's record of its last command %q: %w", line, err)
	}
	if l.Fence.Epoch, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return l, fmt.Errorf("the host's record of its last command %q: %w", line, err)
	}
	l.Step = rollout.Step(f[2])
	if f[3] != "running" {
		l.Finished = true
		if l.Exit, err = strconv.Atoi(f[3]); err != nil {
			return l, fmt.Errorf("the host's record of its last command %q: %w", line, err)
		}
	}
	return l, nil
}

// FormatLast is ParseLast's inverse, for the simulator.
func FormatLast(l rollout.LastCommand) string {
	if l.Step == "" {
		return ""
	}
	status := "running"
	if l.Finished {
		status = strconv.Itoa(l.Exit)
	}
	return fmt.Sprintf("%s %d %d %s %s %s", storeWord(l.Fence.Store), l.Fence.Rollout, l.Fence.Epoch, l.Step, status, storeWord(l.From))
}
