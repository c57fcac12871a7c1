package rollout

import (
	"context"
	"time"
)

// Store persists rollouts. CreateRollout and ResumeRollout must refuse, with an
// *ActiveError, to make a second rollout active, in a way that holds across
// processes sharing the store. Writes that take an owner are fenced: they fail
// with ErrLeaseLost when another process has taken the rollout over. Lease
// times are the store's own clock, never a caller's.
type Store interface {
	// ID names the store, for the fences of host commands: it is made once,
	// when the store is set up.
	ID() string
	// CreateRollout records a new active rollout leased to r.Owner for ttl,
	// at epoch 1, and sets r's ID, lease and epoch.
	CreateRollout(ctx context.Context, r *Rollout, hosts []Host, ttl time.Duration) error
	Rollout(ctx context.Context, id int64) (*Rollout, error)
	// ActiveRollout returns the rollout whose phase is active, or ErrNotFound.
	ActiveRollout(ctx context.Context) (*Rollout, error)
	// Rollouts returns the newest rollouts first.
	Rollouts(ctx context.Context, limit int) ([]*Rollout, error)
	// HostResults returns a rollout's hosts ordered by index.
	HostResults(ctx context.Context, rolloutID int64) ([]HostResult, error)
	// SaveHostResults writes several host results in one transaction, durable
	// when it returns.
	SaveHostResults(ctx context.Context, owner string, results []HostResult) error
	// UpdateRollout writes the phase, stage, segment, wait, error and times
	// while owner holds the rollout. A halt already stored is kept: r.Halt is
	// written only where none is, and r.Halt is set to the stored one.
	UpdateRollout(ctx context.Context, owner string, r *Rollout) error
	// ClaimRollout takes or renews the lease on an active rollout for ttl
	// from now on the store's clock: it succeeds when owner already holds it,
	// nobody does, or the lease ran out; else it fails with ErrLeaseLost.
	// Taking it from another owner or from nobody increments the epoch.
	ClaimRollout(ctx context.Context, id int64, owner string, ttl time.Duration) (*Rollout, error)
	// RenewRollout extends owner's lease on an active rollout for ttl from
	// now on the store's clock, as long as owner holds it: after its lease
	// ran out, only while nobody claimed it since. Else it fails with
	// ErrLeaseLost, or ErrNotRunning when the rollout is no longer active.
	RenewRollout(ctx context.Context, id int64, owner string, ttl time.Duration) (*Rollout, error)
	ReleaseRollout(ctx context.Context, id int64, owner string) error
	// RequestHalt asks the driver of an active rollout to halt, keeping a
	// halt asked for earlier; it returns the rollout as stored, and
	// ErrNotRunning when it is not active.
	RequestHalt(ctx context.Context, id int64, h Halt) (*Rollout, error)
	// ResumeRollout makes a halted rollout active again with r's phase,
	// stage and segment, leased to r.Owner for ttl (a new epoch);
	// ErrNotHalted when it is not halted.
	ResumeRollout(ctx context.Context, r *Rollout, ttl time.Duration) error
	// StartUndo turns rollout id into a rollback requested by u: an ended
	// rollout, then leased to owner for ttl, or an active one owner drives.
	// It marks the hosts the rollback concerns pending, clears the halt and
	// begins a new epoch, recorded in Undo.Epoch. ErrRolledBack when one was
	// begun already; *ActiveError when another rollout is active. A request
	// stored before (RequestUndo) and never begun is kept, and begun.
	StartUndo(ctx context.Context, id int64, u Undo, owner string, ttl time.Duration) (*Rollout, error)
	// RequestUndo asks the driver of an active rollout to halt it, then roll
	// it back. ErrNotRunning when it is not active.
	RequestUndo(ctx context.Context, id int64, u Undo) (*Rollout, error)
	Audit(ctx context.Context, e AuditEntry) error
	// RequestPromote asks the driver of a rollout waiting at the gate after
	// stage p.Stage to go on. It returns the rollout as stored; ErrNotGated
	// when the rollout is not active, halting, or waits at no gate or at
	// another stage's; ErrPromoted when that gate was promoted already (the
	// first promote is kept).
	RequestPromote(ctx context.Context, id int64, p Promote) (*Rollout, error)
}

// Inventory lists the hosts a new rollout snapshots.
type Inventory interface {
	ActiveHosts(ctx context.Context) ([]Host, error)
}

// Updater opens a connection to a host for the steps of its update, under a
// driver's fence.
type Updater interface {
	Connect(ctx context.Context, h Host, f Fence) (Conn, error)
}

// Conn runs the update recipe's commands on one host, one at a time on that
// host whoever sends them, under the fence it was opened with. Each returns the
// tail of the command's output. Errors wrap ErrConnLost when the connection
// died, so the engine knows to reconnect before rolling back, and ErrFenced
// when the host has been commanded under a newer fence.
type Conn interface {
	// Version returns the version the host runs now, and what the host
	// recorded of the last update or rollback run on it. It waits for a
	// command still running there (a replaced driver's) to end first.
	Version(ctx context.Context) (HostState, error)
	Update(ctx context.Context, version string) (string, error)
	Health(ctx context.Context) (string, error)
	Rollback(ctx context.Context, version string) (string, error)
	Close() error
}

// HostState is what a host says before it is touched.
type HostState struct {
	Version string
	Last    LastCommand // zero when the host recorded none
}

// LastCommand is the host's own record of the last update or rollback that
// ran on it: a re-check after a crash reads it to learn whether the update it
// finds recorded ran, and how it ended, instead of guessing from the version.
type LastCommand struct {
	Fence    Fence
	Step     Step // StepUpdate or StepRollback
	Finished bool // false: it was cut off (its process killed, the host rebooted)
	Exit     int  // its exit status, when Finished
	// From is the version the host ran when the update began, as the driver
	// read it on the same connection: a re-check learns from the host what
	// to roll back to, even when the driver died before storing it.
	From string
}

// Of reports whether the record is of an update or rollback of the rollout f
// fences.
func (l LastCommand) Of(f Fence) bool {
	return l.Step != "" && l.Fence.Store == f.Store && l.Fence.Rollout == f.Rollout
}

// Notifier hears about a rollout's progress. Notify is called in order, from
// the engine's goroutines, with the engine's lock held: it must return at once
// (record and signal) and must not call back into the engine.
type Notifier interface {
	Notify(Event)
}

// Notifiers sends each event to several notifiers in order.
type Notifiers []Notifier

// Notify implements Notifier.
func (ns Notifiers) Notify(ev Event) {
	for _, n := range ns {
		if n != nil {
			n.Notify(ev)
		}
	}
}

// Clock is time, injectable so pauses and health retries are testable.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// FreezeStore keeps the freezes set ad hoc, and the overrides recorded on a
// running rollout, where every process sees them.
type FreezeStore interface {
	// AddFreeze records a freeze and sets its ID.
	AddFreeze(ctx context.Context, f *Freeze) error
	// Freezes returns the freezes in effect at t or beginning after it, by start.
	Freezes(ctx context.Context, t time.Time) ([]Freeze, error)
	// Unfreeze ends freeze id, or with id 0 those in effect at t; ErrNotFound
	// when there is none.
	Unfreeze(ctx context.Context, id int64, by string, t time.Time) ([]Freeze, error)
	// SetOverride records an override on an active rollout; ErrNotRunning
	// when it is not active.
	SetOverride(ctx context.Context, id int64, kind OverrideKind, o Override) (*Rollout, error)
}
