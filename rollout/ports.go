package rollout

import (
	"context"
	"time"
)

// Store persists rollouts. CreateRollout and ResumeRollout must refuse, with an
// *ActiveError, to make a second rollout active, in a way that holds across
// processes sharing the store. Writes that take an owner are fenced: they fail
// with ErrLeaseLost when another process has taken the rollout over.
type Store interface {
	CreateRollout(ctx context.Context, r *Rollout, hosts []Host) error
	Rollout(ctx context.Context, id int64) (*Rollout, error)
	// ActiveRollout returns the running rollout, or ErrNotFound.
	ActiveRollout(ctx context.Context) (*Rollout, error)
	// Rollouts returns the newest rollouts first.
	Rollouts(ctx context.Context, limit int) ([]*Rollout, error)
	// HostResults returns a rollout's hosts ordered by index.
	HostResults(ctx context.Context, rolloutID int64) ([]HostResult, error)
	// SaveHostResults writes several host results in one transaction.
	SaveHostResults(ctx context.Context, owner string, results []HostResult) error
	// UpdateRollout writes the state, stage, segment, reason and times.
	UpdateRollout(ctx context.Context, owner string, r *Rollout) error
	// ClaimRollout takes or renews the lease on an active rollout: it succeeds
	// when owner already holds it, nobody does, or the lease ran out by now.
	// It fails with ErrLeaseLost otherwise.
	ClaimRollout(ctx context.Context, id int64, owner string, now time.Time, ttl time.Duration) (*Rollout, error)
	ReleaseRollout(ctx context.Context, id int64, owner string) error
	// RequestHalt records a halt request on an active rollout for its driver to
	// act on; ErrNotRunning when it is not active.
	RequestHalt(ctx context.Context, id int64, by, reason string) error
	// ResumeRollout makes a halted rollout active again with r's state, stage,
	// segment and owner; ErrNotHalted when it is not halted.
	ResumeRollout(ctx context.Context, r *Rollout) error
	Audit(ctx context.Context, e AuditEntry) error
}

// Inventory lists the hosts a new rollout snapshots.
type Inventory interface {
	ActiveHosts(ctx context.Context) ([]Host, error)
}

// Updater opens a connection to a host for the steps of its update.
type Updater interface {
	Connect(ctx context.Context, h Host) (Conn, error)
}

// Conn runs the update recipe's commands on one host. Each returns the tail of
// the command's output; errors wrap ErrConnLost when the connection died, so the
// engine knows to reconnect before rolling back.
type Conn interface {
	// Version returns the version the host runs now.
	Version(ctx context.Context) (string, error)
	Update(ctx context.Context, version string) (string, error)
	Health(ctx context.Context) (string, error)
	Rollback(ctx context.Context, version string) (string, error)
	Close() error
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
