// Package rollout owns rolloutbot's domain: a staged rollout of one version to a
// snapshot of the fleet, the per-host update state machine, and the small
// interfaces it needs from the outside (a store, an inventory, a host updater and
// a progress notifier). Other packages implement or drive these; this one imports
// none of them.
package rollout

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Host is one VPS of the inventory.
type Host struct {
	ID       string // the operator's name for it, unique
	Address  string
	Port     int
	User     string // SSH user; empty means the runner's default
	Label    string // free text, e.g. the customer
	Disabled bool   // disabled hosts are left out of new rollouts
}

// SSHPort is the host's SSH port: 22 when none is set.
func (h Host) SSHPort() int {
	if h.Port == 0 {
		return 22
	}
	return h.Port
}

// Addr is host:port, the SSH dial address.
func (h Host) Addr() string { return net.JoinHostPort(h.Address, strconv.Itoa(h.SSHPort())) }

// Validate reports what is wrong with a host entry, naming the field. Port 0
// is refused: readers of an inventory turn a port left out into 22 before
// validating, so a 0 here was written down, and is not taken to mean 22.
func (h Host) Validate() error {
	switch {
	case strings.TrimSpace(h.ID) == "":
		return errors.New("host id is empty")
	case strings.TrimSpace(h.Address) == "":
		return fmt.Errorf("host %s: address is empty", h.ID)
	case strings.ContainsAny(h.Address, " \t/"):
		return fmt.Errorf("host %s: address %q is not a host name or IP", h.ID, h.Address)
	case h.Port == 0:
		return fmt.Errorf("host %s: port 0 is not a port (leave the port out for 22)", h.ID)
	case h.Port < 0 || h.Port > 65535:
		return fmt.Errorf("host %s: port %d is out of range", h.ID, h.Port)
	}
	return nil
}

// Status is where one host is in its update.
type Status string

// Host statuses.
const (
	StatusPending    Status = "pending"
	StatusUpdating   Status = "updating"
	StatusSuccess    Status = "success"
	StatusFailed     Status = "failed"      // needs attention: unreachable, or rollback did not restore health
	StatusRolledBack Status = "rolled_back" // update or health failed, previous version restored and healthy
	StatusSkipped    Status = "skipped"     // already ran the target version
)

// Done reports whether the host's update has ended.
func (s Status) Done() bool {
	return s == StatusSuccess || s == StatusFailed || s == StatusRolledBack || s == StatusSkipped
}

// Failure reports whether the status counts toward a stage's failure threshold.
func (s Status) Failure() bool { return s == StatusFailed || s == StatusRolledBack }

// Step is the part of a host's update that was running, recorded with a failure.
type Step string

// Steps of one host's update.
const (
	StepConnect  Step = "connect"
	StepVersion  Step = "version"
	StepUpdate   Step = "update"
	StepHealth   Step = "health"
	StepRollback Step = "rollback"
)

// Phase is where a rollout is in its life. A rollout has one phase at a time,
// set in one place by the one process that drives it; other processes only
// ask (a halt request), and the driver turns the request into the phase.
// Waiting phases (a pause today; gates, freezes, windows later) are phases
// too, with WaitUntil, so a takeover reads one state and goes on from it.
type Phase string

// Rollout phases.
const (
	PhaseRunning   Phase = "running"   // updating the hosts of Stage
	PhasePaused    Phase = "paused"    // Stage is done; the next starts at WaitUntil
	PhaseHalted    Phase = "halted"    // stopped by Halt, with every host settled; resumable
	PhaseCompleted Phase = "completed" // every stage ran
	PhaseFailed    Phase = "failed"    // an internal error stopped it (Error), not host failures
	// PhaseRollingBack puts every host the rollout changed back on its own
	// previous version, newest first (Undo says who asked and why).
	PhaseRollingBack Phase = "rolling_back"
	PhaseRolledBack  Phase = "rolled_back" // the rollback ran to its end
	// PhaseFrozen waits for a freeze to end (WaitUntil; zero: until someone
	// unfreezes) before Stage begins; WaitFor says which freeze.
	PhaseFrozen Phase = "frozen"
	// PhaseWindow waits for a rollout window to open (WaitUntil) before
	// Stage begins or goes on.
	PhaseWindow Phase = "window"
	// PhaseGated: Stage is done and ends in a manual gate; the next stage
	// waits for a promote (Promote), or until WaitUntil (the gate's timeout,
	// when one is set) halts it.
	PhaseGated Phase = "gated"
	// PhaseBaking: Stage is done; its checks run again and again until
	// WaitUntil, and a bad result halts the rollout at once.
	PhaseBaking Phase = "baking"
)

// Ended reports whether the phase is an end: nothing drives the rollout any more.
func (p Phase) Ended() bool {
	return p == PhaseHalted || p == PhaseCompleted || p == PhaseFailed || p == PhaseRolledBack
}

// Holding reports whether the phase waits for the calendar (a freeze or a
// window) before Stage begins or goes on.
func (p Phase) Holding() bool { return p == PhaseFrozen || p == PhaseWindow }

// Active reports whether a driver has work ahead: the phase is not an end.
// At most one rollout is active at a time.
func (p Phase) Active() bool { return !p.Ended() }

// Halt is a request to stop a rollout, and once the rollout is halted, the
// record of who stopped it and why. The first halt asked for is the one kept.
type Halt struct {
	By     string // a Slack user ID, a CLI user, or AutoHalter
	Reason string
	At     time.Time
}

// Undo is a request to put back every host a rollout changed.
type Undo struct {
	By     string
	Reason string
	At     time.Time
	// Epoch is the lease epoch the rollback began under: a host's record of
	// a rollback under it or later is the rollback's own, not the per-host
	// rollback of a failed update.
	Epoch int64
}

// AutoHalter is Halt.By when a stage crossed its failure threshold.
const AutoHalter = "rolloutbot"

// Auto reports whether the rollout halted itself on its failure threshold.
func (h *Halt) Auto() bool { return h.By == AutoHalter }

// String says who halted and why, e.g. "halted by U0ADMIN: bad metrics" or
// "halted: stage 10%: 3 of 5 hosts failed, more than the 30% threshold".
func (h *Halt) String() string {
	switch {
	case h.Auto():
		return "halted: " + h.Reason
	case h.Reason == "":
		return "halted by " + h.By
	}
	return "halted by " + h.By + ": " + h.Reason
}

// Source says where a request came from, for the audit log.
type Source string

// Request sources.
const (
	SourceSlack    Source = "slack"
	SourceCLI      Source = "cli"
	SourceSchedule Source = "schedule"
)

// Settings are the knobs of one rollout, recorded with it so a resume uses the same.
type Settings struct {
	Stages      []int         // cumulative percents, strictly increasing, ending at 100
	Concurrency int           // hosts updated at once
	Pause       time.Duration // between stages
	Threshold   int           // percent of a stage's hosts that may fail; more halts the rollout
	// Gates are the percents of the stages that end in a manual gate: the
	// next stage waits until an admin promotes the rollout.
	Gates []int
	// GateTimeout halts a rollout whose gate nobody answered in time; 0: none.
	GateTimeout time.Duration
	// PromoteByOther is the two-person rule: whoever started the rollout
	// cannot promote it past a gate.
	PromoteByOther bool
	// Bake is how long the checks keep running after a stage, before the next.
	Bake time.Duration
}

// DefaultSettings are the spec's defaults: 10/50/100 %, 5 at once, 10 s pause, 30 %.
func DefaultSettings() Settings {
	return Settings{Stages: []int{10, 50, 100}, Concurrency: 5, Pause: 10 * time.Second, Threshold: 30}
}

// Validate names the setting that is wrong.
func (s Settings) Validate() error {
	if p := s.Problems(); len(p) > 0 {
		return p[0]
	}
	return nil
}

// Problems is every invalid setting, each error starting with the
// setting's name ("concurrency: …"), so all can be reported at once.
func (s Settings) Problems() []error {
	var errs []error
	prev := 0
	for _, p := range s.Stages {
		if p <= prev || p > 100 {
			errs = append(errs, fmt.Errorf("stages: %v must be strictly increasing percents between 1 and 100", s.Stages))
			break
		}
		prev = p
	}
	switch {
	case len(s.Stages) == 0:
		errs = append(errs, errors.New("stages: at least one stage is needed"))
	case len(errs) == 0 && prev != 100:
		errs = append(errs, fmt.Errorf("stages: %v must end at 100", s.Stages))
	}
	if s.Concurrency < 1 || s.Concurrency > 10000 {
		errs = append(errs, fmt.Errorf("concurrency: %d must be between 1 and 10000", s.Concurrency))
	}
	if s.Pause < 0 {
		errs = append(errs, fmt.Errorf("pause: %s must not be negative", s.Pause))
	}
	if s.Threshold < 0 || s.Threshold > 100 {
		errs = append(errs, fmt.Errorf("threshold: %d must be a percent between 0 and 100", s.Threshold))
	}
	if err := s.validateGates(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Rollout is one staged rollout of a version to a snapshot of the fleet. Its
// state is Phase, Stage and Segment, with Halt and Error saying why it stopped;
// labels for people are derived from them, never stored.
type Rollout struct {
	ID       int64
	Version  string
	Settings Settings
	Seed     int64 // the shuffle seed, so the host order can be reproduced
	Hosts    int   // size of the snapshot

	Phase   Phase
	Stage   int     // index into Settings.Stages of the stage running, or the last one run
	Segment Segment // the part of Stage its failure threshold counts
	// WaitUntil is when a waiting phase ends (the pause before the next
	// stage, a freeze's end, a window's opening); zero for a freeze with no end.
	WaitUntil time.Time
	// WaitFor says what a frozen or window phase waits for, for people.
	WaitFor string
	// FreezeOverride, when set, lets the rollout run through the freezes
	// that began before it (start … override); Anytime lets it start hosts
	// outside the windows.
	FreezeOverride *Override
	Anytime        *Override
	// Halt is set when a halt was asked for: the driver lets the hosts in
	// flight finish, then the phase becomes PhaseHalted and Halt says why.
	Halt *Halt
	// Undo is set once a rollback of the rollout was asked for: a running
	// rollout halts first, then rolls back.
	Undo  *Undo
	Error string // why it failed, in PhaseFailed
	// Promote is the latest promotion asked for; it opens only the gate of
	// the stage it names.
	Promote *Promote

	StartedBy string // who asked for it: a Slack user ID, a CLI user, a schedule
	// Starter is who counts as having started it for the two-person rule:
	// StartedBy, or the creator of the schedule that started it.
	Starter string
	Source  Source

	Owner string // the process driving it; empty when none
	// LeaseUntil is when the owner's lease ends unless renewed, on the
	// store's clock: no process's own clock decides who drives.
	LeaseUntil time.Time
	// Epoch grows each time a process takes the rollout over. Host commands
	// carry it (Fence), so a host refuses the commands of a driver that was
	// replaced.
	Epoch int64

	// Channel and MessageTS locate the Slack status message, so a restarted bot
	// edits the same message.
	Channel   string
	MessageTS string

	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
}

// Segment is the part of the current stage its failure threshold counts: the
// whole stage, or after a resume the hosts that had not ended then, so the
// failures that halted the stage are not counted a second time.
type Segment struct {
	Done     int // hosts of the stage that had ended when it resumed
	Failures int // failures among them
}

// Fence is a driver's claim on the hosts it commands: the rollout and the
// lease epoch it drives under. A host runs a command only when its fence is
// no older than the newest the host has seen, so a driver that was replaced
// and wakes up late cannot run anything there.
type Fence struct {
	// Store names the store the rollout is kept in: rollouts of another
	// store (one set up anew counts from 1 again) are not comparable.
	Store   string
	Rollout int64
	Epoch   int64
}

// SegmentSize is the number of hosts of stage st that its threshold counts.
func (r *Rollout) SegmentSize(st Stage) int {
	if st.Index == r.Stage {
		return st.Size() - r.Segment.Done
	}
	return st.Size()
}

// Fence is the fence of the rollout's current driver.
func (r *Rollout) Fence(store string) Fence {
	return Fence{Store: store, Rollout: r.ID, Epoch: r.Epoch}
}

// Label names where the rollout is for people: "stage 50%", "paused after
// stage 10%", "halting", "halted", "completed", "failed".
func (r *Rollout) Label() string {
	stages := r.Settings.Stages
	switch {
	case r.Phase.Active() && r.Halt != nil:
		return "halting"
	case r.Phase == PhaseRollingBack:
		return "rolling back"
	case r.Phase == PhaseRolledBack:
		return "rolled back"
	case r.Phase == PhaseHalted && r.Undo != nil:
		return "rollback halted"
	case r.Phase == PhaseRunning && r.Stage < len(stages):
		return fmt.Sprintf("stage %d%%", stages[r.Stage])
	case r.Phase == PhasePaused && r.Stage < len(stages):
		return fmt.Sprintf("paused after stage %d%%", stages[r.Stage])
	case r.Phase == PhaseFrozen && r.Stage < len(stages):
		return fmt.Sprintf("frozen before stage %d%%", stages[r.Stage])
	case r.Phase == PhaseWindow && r.Stage < len(stages):
		return fmt.Sprintf("waiting for the window (stage %d%%)", stages[r.Stage])
	case r.Phase == PhaseGated && r.NextStage() >= 0:
		return fmt.Sprintf("waiting for promotion to %d%%", stages[r.NextStage()])
	case r.Phase == PhaseBaking && r.Stage < len(stages):
		return fmt.Sprintf("baking stage %d%%", stages[r.Stage])
	}
	return string(r.Phase)
}

// Stalled reports how long the driver of an active rollout has let its lease
// run out, at now on the store's clock: it died, froze, or lost the store,
// and nothing moves until it comes back or another process takes over. It
// is 0 while a driver holds a live lease, and for a rollout nobody holds.
func (r *Rollout) Stalled(now time.Time) time.Duration {
	if !r.Phase.Active() || r.Owner == "" || r.LeaseUntil.IsZero() || !now.After(r.LeaseUntil) {
		return 0
	}
	return now.Sub(r.LeaseUntil)
}

// Waiting says what a waiting rollout waits for and until when, e.g.
// "waiting for the window (Mon-Thu 02:00-05:00 Europe/Berlin): opens Tue 1
// Dec 02:00 CET, in 19 h"; empty when it does not wait.
func (r *Rollout) Waiting(now time.Time) string {
	switch {
	case r.Phase.Holding() && !r.WaitUntil.IsZero():
		return "waiting for " + r.WaitFor + ", " + In(now, r.WaitUntil)
	case r.Phase.Holding():
		return "waiting for " + r.WaitFor
	case r.Phase == PhasePaused && !r.WaitUntil.IsZero():
		return "pausing before the next stage, " + In(now, r.WaitUntil)
	case r.Phase == PhaseGated && !r.WaitUntil.IsZero():
		return r.Label() + "; the gate's timeout halts it " + In(now, r.WaitUntil)
	case r.Phase == PhaseGated:
		return r.Label()
	case r.Phase == PhaseBaking && !r.WaitUntil.IsZero():
		return r.Label() + ": the checks run until the bake ends, " + In(now, r.WaitUntil)
	}
	return ""
}

// StageList returns the rollout's stage boundaries.
func (r *Rollout) StageList() []Stage { return Stages(r.Hosts, r.Settings.Stages) }

// HostResult is one host's part of a rollout.
type HostResult struct {
	RolloutID   int64
	Index       int // position in the shuffled snapshot; stages are index ranges
	Host        Host
	Status      Status
	Step        Step // the step running, or the one that failed
	PrevVersion string
	NewVersion  string
	Error       string
	Output      string // tail of the failing command's output
	StartedAt   time.Time
	FinishedAt  time.Time
	Undo        UndoResult // its part of a rollback of the rollout, if any
}

// UndoStatus is where one host is in its rollout's rollback.
type UndoStatus string

// Undo statuses. A host the rollback does not concern has none.
const (
	UndoNone      UndoStatus = ""
	UndoPending   UndoStatus = "pending"    // to be put back
	UndoRunning   UndoStatus = "restoring"  // its rollback is recorded as started
	UndoRestored  UndoStatus = "restored"   // back on its previous version, healthy
	UndoFailed    UndoStatus = "failed"     // could not be put back: Error says why
	UndoLeft      UndoStatus = "left"       // runs neither version: changed by hand, left alone
	UndoNotNeeded UndoStatus = "not_needed" // already on its previous version
)

// Done reports whether the host's rollback has ended.
func (s UndoStatus) Done() bool {
	return s == UndoRestored || s == UndoFailed || s == UndoLeft || s == UndoNotNeeded
}

// UndoResult is one host's part of its rollout's rollback.
type UndoResult struct {
	Status     UndoStatus
	Error      string
	Output     string // tail of the failing command's output
	StartedAt  time.Time
	FinishedAt time.Time
}

// AuditEntry records who did or tried what.
type AuditEntry struct {
	ID        int64
	At        time.Time
	Actor     string
	Source    Source
	Action    string // start, halt, resume, schedule.add, ...
	RolloutID int64  // 0 when none
	Allowed   bool
	Detail    string
}

// Errors callers decide on.
var (
	ErrActive         = errors.New("a rollout is already running")
	ErrNotFound       = errors.New("not found")
	ErrLeaseLost      = errors.New("another process drives this rollout")
	ErrInvalidVersion = errors.New("invalid version")
	ErrNoHosts        = errors.New("the inventory has no active hosts")
	ErrNotHalted      = errors.New("no halted rollout to resume")
	ErrNotRunning     = errors.New("no rollout is running")
	// ErrFenced means a host refused a command because a newer driver has
	// commanded it since: this driver was replaced.
	ErrFenced = errors.New("host is driven by a newer driver")
	// ErrRolledBack means a rollback of the rollout was asked for already.
	ErrRolledBack = errors.New("the rollout is rolled back already")
	ErrConnLost   = errors.New("connection lost")
)

// ActiveError names the rollout that blocks another start.
type ActiveError struct{ Rollout *Rollout }

func (e *ActiveError) Error() string {
	if e.Rollout == nil {
		return ErrActive.Error()
	}
	return fmt.Sprintf("rollout #%d of %s is already running (%s, started by %s)",
		e.Rollout.ID, e.Rollout.Version, e.Rollout.Label(), e.Rollout.StartedBy)
}

// Unwrap makes errors.Is(err, ErrActive) true.
func (e *ActiveError) Unwrap() error { return ErrActive }

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// ValidateVersion refuses anything but a plain version string, before it goes
// near a shell.
func ValidateVersion(v string) error {
	if !versionRE.MatchString(v) {
		shown := v
		if len(shown) > 40 {
			shown = shown[:40] + "…"
		}
		return fmt.Errorf("%w %q: use letters, digits and . _ + - (starting with a letter or digit, at most 128)", ErrInvalidVersion, shown)
	}
	return nil
}
