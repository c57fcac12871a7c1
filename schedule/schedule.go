// Package schedule starts rollouts from cron schedules: five-field specs, each
// in its own time zone, kept in the store so they survive restarts. A due
// time is claimed in the store before anything is done, so two bot processes
// never both start it; a due time found long past (the bot was down) is
// reported, not run late. It is the only package that imports robfig/cron.
package schedule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Store keeps schedules and their runs.
type Store interface {
	Schedules(ctx context.Context) ([]rollout.Schedule, error)
	AddSchedule(ctx context.Context, s *rollout.Schedule) error
	RemoveSchedule(ctx context.Context, id int64) error
	SyncNamedSchedules(ctx context.Context, want []rollout.Schedule, now time.Time) error
	ClaimScheduleRun(ctx context.Context, id int64, due time.Time, owner string, now time.Time) (bool, error)
	FinishScheduleRun(ctx context.Context, id int64, due time.Time, outcome string, rolloutID int64, detail string) error
	SetScheduleChecked(ctx context.Context, id int64, until time.Time) error
}

// Engine starts rollouts and keeps the audit log.
type Engine interface {
	Start(ctx context.Context, req rollout.StartRequest) (*rollout.Rollout, error)
	Audit(ctx context.Context, e rollout.AuditEntry)
}

// Announcer tells the channel what a schedule did.
type Announcer interface {
	Announce(ctx context.Context, text string)
}

// Config wires a Scheduler.
type Config struct {
	Store     Store
	Engine    Engine
	Announcer Announcer
	Clock     rollout.Clock // nil: real time
	Logger    *slog.Logger
	Owner     string // this process, in run claims
	// MissAfter is how late a due time may be handled and still run; later
	// it is reported as missed (default 2m).
	MissAfter time.Duration
	// Calendar is the rollout windows and recurring freezes: a schedule
	// that always falls in a freeze is refused, one that falls outside the
	// windows is warned about.
	Calendar rollout.Calendar
}

// Scheduler runs the schedules.
type Scheduler struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}
}

// New returns a scheduler; call Run.
func New(cfg Config) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.MissAfter = cmp.Or(cfg.MissAfter, 2*time.Minute)
	return &Scheduler{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1)}
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// InvalidError is a schedule that cannot be accepted; its message says why.
type InvalidError struct{ msg string }

func (e *InvalidError) Error() string { return e.msg }

// Invalid marks the error as the user's to fix.
func (e *InvalidError) Invalid() bool { return true }

// Parse checks a five-field cron spec and a time zone (empty means UTC) and
// returns the schedule and the location.
func Parse(spec, tz string) (cron.Schedule, *time.Location, error) {
	if strings.Contains(spec, "TZ=") {
		return nil, nil, &InvalidError{"give the time zone separately, not as TZ= in the cron spec"}
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, nil, &InvalidError{fmt.Sprintf("cron spec %q: %v", spec, err)}
	}
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return nil, nil, &InvalidError{fmt.Sprintf("unknown time zone %q: use an IANA name such as Europe/Berlin or UTC", tz)}
	}
	return sched, loc, nil
}

// Next is when s next comes due after t.
func Next(s rollout.Schedule, after time.Time) (time.Time, error) {
	sched, loc, err := Parse(s.Spec, s.TZ)
	if err != nil {
		return time.Time{}, err
	}
	return sched.Next(after.In(loc)), nil
}

// Sync makes the configuration file's schedules the named ones in the store.
func (s *Scheduler) Sync(ctx context.Context, configured []rollout.Schedule) error {
	for i := range configured {
		c := &configured[i]
		if c.TZ == "" {
			c.TZ = "UTC"
		}
		if _, _, err := Parse(c.Spec, c.TZ); err != nil {
			return fmt.Errorf("schedules.%s: %w", c.Name, err)
		}
		if c.Version != "" {
			if err := rollout.ValidateVersion(c.Version); err != nil {
				return fmt.Errorf("schedules.%s: %w", c.Name, err)
			}
		}
	}
	if err := s.cfg.Store.SyncNamedSchedules(ctx, configured, s.cfg.Clock.Now()); err != nil {
		return fmt.Errorf("store schedules: %w", err)
	}
	s.Kick()
	return nil
}

// AddSchedule validates and stores a schedule, counting its due times from now.
func (s *Scheduler) AddSchedule(ctx context.Context, sch rollout.Schedule) (rollout.Schedule, error) {
	sch.TZ = cmp.Or(sch.TZ, "UTC")
	_, _, err := Parse(sch.Spec, sch.TZ)
	if err == nil && sch.Version != "" {
		if verr := rollout.ValidateVersion(sch.Version); verr != nil {
			err = &InvalidError{verr.Error()}
		}
	}
	if err == nil {
		err = s.fitsCalendar(sch)
	}
	entry := rollout.AuditEntry{Actor: sch.CreatedBy, Source: sch.Source, Action: "schedule.add", Allowed: err == nil,
		Detail: fmt.Sprintf("%q %s %s", sch.Spec, sch.TZ, cmp.Or(sch.Version, "latest"))}
	if err != nil {
		entry.Detail += " refused: " + err.Error()
		s.cfg.Engine.Audit(ctx, entry)
		return sch, err
	}
	sch.CreatedAt = s.cfg.Clock.Now()
	sch.CheckedUntil = sch.CreatedAt
	if err := s.cfg.Store.AddSchedule(ctx, &sch); err != nil {
		return sch, fmt.Errorf("store schedule: %w", err)
	}
	s.cfg.Engine.Audit(ctx, entry)
	sch.Next, _ = Next(sch, sch.CreatedAt)
	s.Kick()
	return sch, nil
}

// Schedules lists the schedules with their next due time.
func (s *Scheduler) Schedules(ctx context.Context) ([]rollout.Schedule, error) {
	list, err := s.cfg.Store.Schedules(ctx)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	for i := range list {
		from := now
		if list[i].CheckedUntil.After(now) {
			from = list[i].CheckedUntil
		}
		list[i].Next, _ = Next(list[i], from)
	}
	return list, nil
}

// RemoveSchedule deletes a schedule.
func (s *Scheduler) RemoveSchedule(ctx context.Context, id int64, actor string) error {
	err := s.cfg.Store.RemoveSchedule(ctx, id)
	if err == nil || errors.Is(err, rollout.ErrNotFound) {
		s.cfg.Engine.Audit(ctx, rollout.AuditEntry{Actor: actor, Source: rollout.SourceSlack, Action: "schedule.remove",
			Allowed: err == nil, Detail: fmt.Sprintf("schedule #%d", id)})
	}
	return err
}

// Kick makes Run look at the schedules now.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run handles due times until ctx ends. It looks again at least once a
// minute, so schedules added by another process are seen.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		wait, err := s.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "scheduler", "err", err)
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-s.cfg.Clock.After(wait):
		}
	}
}

// maxCatchUp bounds the due times handled one by one after a long outage.
const maxCatchUp = 100

// Tick handles every due time up to now and returns how long until the next.
func (s *Scheduler) Tick(ctx context.Context) (time.Duration, error) {
	now := s.cfg.Clock.Now()
	list, err := s.cfg.Store.Schedules(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schedules: %w", err)
	}
	wake := now.Add(time.Minute)
	for _, sch := range list {
		sched, loc, err := Parse(sch.Spec, sch.TZ)
		if err != nil {
			s.log.WarnContext(ctx, "skipping invalid schedule", "schedule_id", sch.ID, "err", err)
			continue
		}
		due := sched.Next(sch.CheckedUntil.In(loc))
		var missed []time.Time
		for n := 0; !due.After(now); n++ {
			if n == maxCatchUp {
				// A long outage: report the rest in one go and jump to now.
				missed = append(missed, now)
				due = sched.Next(now.In(loc))
				if err := s.cfg.Store.SetScheduleChecked(ctx, sch.ID, now); err != nil {
					return 0, err
				}
				break
			}
			if now.Sub(due) > s.cfg.MissAfter {
				ok, err := s.cfg.Store.ClaimScheduleRun(ctx, sch.ID, due, s.cfg.Owner, now)
				if err != nil {
					return 0, err
				}
				if ok {
					missed = append(missed, due)
					_ = s.cfg.Store.FinishScheduleRun(ctx, sch.ID, due, "missed", 0, "the bot was not running")
				}
			} else if err := s.fire(ctx, sch, due); err != nil {
				return 0, err
			}
			if err := s.cfg.Store.SetScheduleChecked(ctx, sch.ID, due); err != nil {
				return 0, err
			}
			due = sched.Next(due)
		}
		if len(missed) > 0 {
			s.reportMissed(ctx, sch, missed, due)
		}
		if due.Before(wake) {
			wake = due
		}
	}
	return max(wake.Sub(now), 0), nil
}

// fire starts the rollout due at due, unless another process claimed it.
func (s *Scheduler) fire(ctx context.Context, sch rollout.Schedule, due time.Time) error {
	ok, err := s.cfg.Store.ClaimScheduleRun(ctx, sch.ID, due, s.cfg.Owner, s.cfg.Clock.Now())
	if err != nil || !ok {
		return err
	}
	log := s.log.With("schedule_id", sch.ID, "due", due)
	r, err := s.cfg.Engine.Start(ctx, rollout.StartRequest{Version: sch.Version, Actor: actor(sch), Source: rollout.SourceSchedule,
		Starter: sch.CreatedBy})
	var ae *rollout.ActiveError
	var fe *rollout.FrozenError
	var outcome, detail, text string
	var rid int64
	switch {
	case errors.As(err, &fe):
		outcome, detail = "skipped", err.Error()
		text = fmt.Sprintf("🗓 %s came due during the %s (%s), so it was skipped.", describe(sch), fe.Freeze, fe.Text)
	case errors.As(err, &ae) && ae.Rollout != nil:
		outcome, rid = "skipped", ae.Rollout.ID
		detail = fmt.Sprintf("rollout #%d was running", ae.Rollout.ID)
		text = fmt.Sprintf("🗓 %s came due, but rollout #%d of %s is running, so it was skipped.", describe(sch), ae.Rollout.ID, ae.Rollout.Version)
	case err != nil:
		outcome, detail = "failed", err.Error()
		text = fmt.Sprintf("🗓 %s came due, but the rollout could not start: %s", describe(sch), err)
	default:
		outcome, rid = "started", r.ID
		detail = r.Version
		text = fmt.Sprintf("🗓 %s started rollout #%d of %s on %d hosts.", describe(sch), r.ID, r.Version, r.Hosts)
	}
	log.InfoContext(ctx, "schedule came due", "outcome", outcome, "rollout_id", rid, "detail", detail)
	if err := s.cfg.Store.FinishScheduleRun(ctx, sch.ID, due, outcome, rid, detail); err != nil {
		log.WarnContext(ctx, "record schedule run", "err", err)
	}
	s.cfg.Announcer.Announce(ctx, text)
	return nil
}

func (s *Scheduler) reportMissed(ctx context.Context, sch rollout.Schedule, missed []time.Time, next time.Time) {
	loc, _ := time.LoadLocation(sch.TZ)
	when := missed[0].In(loc).Format("Mon 2006-01-02 15:04 MST")
	if len(missed) > 1 {
		when = fmt.Sprintf("%d times, from %s", len(missed), when)
	}
	text := fmt.Sprintf("🗓 %s missed its run (%s) while rolloutbot was not running; missed runs are not run late. Next run: %s.",
		describe(sch), when, next.In(loc).Format("Mon 2006-01-02 15:04 MST"))
	s.log.WarnContext(ctx, "missed schedule runs", "schedule_id", sch.ID, "missed", len(missed))
	s.cfg.Announcer.Announce(ctx, text)
}

func actor(sch rollout.Schedule) string {
	if sch.Name != "" {
		return "schedule " + sch.Name
	}
	return fmt.Sprintf("schedule #%d", sch.ID)
}

func describe(sch rollout.Schedule) string {
	return fmt.Sprintf("Schedule #%d (`%s` %s)", sch.ID, sch.Spec, sch.TZ)
}
