package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FreezeRequest asks to freeze rollouts from From (zero: now) until Until
// (zero: until someone unfreezes).
type FreezeRequest struct {
	Actor  string
	Source Source
	Reason string
	From   time.Time
	Until  time.Time
}

// ErrInvalidFreeze marks a freeze request that cannot be set as asked; its
// message says why.
var ErrInvalidFreeze = errors.New("invalid freeze")

// ErrNoFreezeStore means the engine was wired without a store for freezes.
var ErrNoFreezeStore = errors.New("freezes are not kept by this store")

// Freeze records a freeze set ad hoc, audited. Starts are refused while it
// holds, schedules that come due are skipped, and running rollouts wait at
// their next stage boundary.
func (e *Engine) Freeze(ctx context.Context, req FreezeRequest) (*Freeze, error) {
	f, err := e.freeze(ctx, req)
	entry := AuditEntry{Actor: req.Actor, Source: req.Source, Action: "freeze", Allowed: err == nil}
	if err != nil {
		entry.Detail = fmt.Sprintf("refused: %v", err)
	} else {
		entry.Detail = fmt.Sprintf("freeze #%d %s: %s", f.ID, e.Span(*f), f.Reason)
	}
	e.Audit(ctx, entry)
	if err == nil {
		e.log.InfoContext(ctx, "freeze set", "freeze", f.ID, "actor", req.Actor, "from", f.From, "until", f.Until, "reason", f.Reason)
	}
	return f, err
}

func (e *Engine) freeze(ctx context.Context, req FreezeRequest) (*Freeze, error) {
	if e.cfg.Freezes == nil {
		return nil, ErrNoFreezeStore
	}
	now := e.clock.Now()
	f := &Freeze{By: req.Actor, Reason: strings.TrimSpace(req.Reason), From: req.From, Until: req.Until, CreatedAt: now}
	if f.From.IsZero() {
		f.From = now
	}
	switch {
	case f.Reason == "":
		return nil, fmt.Errorf("%w: say why: a freeze needs a reason", ErrInvalidFreeze)
	case !f.Until.IsZero() && !f.Until.After(now):
		return nil, fmt.Errorf("%w: it would end %s, which is not in the future", ErrInvalidFreeze, e.cfg.Calendar.When(f.Until))
	case !f.Until.IsZero() && !f.Until.After(f.From):
		return nil, fmt.Errorf("%w: it would end before it begins", ErrInvalidFreeze)
	}
	if err := e.cfg.Freezes.AddFreeze(ctx, f); err != nil {
		return nil, fmt.Errorf("record freeze: %w", err)
	}
	return f, nil
}

// UnfreezeRequest asks to end freeze ID, or with ID 0 the freezes set ad hoc
// in effect now.
type UnfreezeRequest struct {
	Actor  string
	Source Source
	ID     int64
}

// Unfreeze ends freezes set ad hoc, audited; recurring freezes of the
// configuration are not ended this way (an override lets one rollout through).
// Waiting rollouts notice within their poll interval.
func (e *Engine) Unfreeze(ctx context.Context, req UnfreezeRequest) ([]Freeze, error) {
	var ended []Freeze
	err := ErrNoFreezeStore
	if e.cfg.Freezes != nil {
		ended, err = e.cfg.Freezes.Unfreeze(ctx, req.ID, req.Actor, e.clock.Now())
	}
	entry := AuditEntry{Actor: req.Actor, Source: req.Source, Action: "unfreeze", Allowed: err == nil}
	if err != nil {
		entry.Detail = fmt.Sprintf("refused: %v", err)
	} else {
		var ids []string
		for _, f := range ended {
			ids = append(ids, fmt.Sprintf("#%d", f.ID))
		}
		entry.Detail = "ended " + strings.Join(ids, ", ")
	}
	e.Audit(ctx, entry)
	return ended, err
}

// Freezes returns the freezes in effect now and those to come within 30
// days, ad hoc and recurring, by start.
func (e *Engine) Freezes(ctx context.Context) ([]Freeze, error) {
	now := e.clock.Now()
	adhoc, err := e.adhocFreezes(ctx, now)
	if err != nil {
		return nil, err
	}
	return e.cfg.Calendar.Upcoming(now, now.AddDate(0, 0, 30), adhoc), nil
}

func (e *Engine) adhocFreezes(ctx context.Context, now time.Time) ([]Freeze, error) {
	if e.cfg.Freezes == nil {
		return nil, nil
	}
	fs, err := e.cfg.Freezes.Freezes(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("read freezes: %w", err)
	}
	return fs, nil
}

// Calendar is the windows and recurring freezes the engine holds rollouts to.
func (e *Engine) Calendar() Calendar { return e.cfg.Calendar }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.clock.Now() }

// Span says when a freeze holds, for people: "from Tue 1 Dec 10:00 UTC
// until Tue 1 Dec 12:00 UTC", "until someone unfreezes".
func (e *Engine) Span(f Freeze) string {
	c := e.cfg.Calendar
	s := c.untilText(f.Until)
	if f.From.After(e.clock.Now()) {
		s = "from " + c.When(f.From) + " " + s
	}
	return s
}

// Hold is what would hold r (a rollout about to start hosts at a stage
// boundary when boundary) at the engine's now: nil when nothing does, with
// until when hosts may start.
func (e *Engine) Hold(ctx context.Context, r *Rollout, boundary bool) (*Hold, time.Time, error) {
	now := e.clock.Now()
	if e.cfg.Calendar.Empty() && e.cfg.Freezes == nil {
		return nil, time.Time{}, nil
	}
	adhoc, err := e.adhocFreezes(ctx, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	h, until := e.cfg.Calendar.Gate(now, adhoc, r, boundary)
	return h, until, nil
}

// checkFreeze refuses a start during a freeze unless the request overrides
// it, and records the overrides on r.
func (e *Engine) checkFreeze(ctx context.Context, req *StartRequest, r *Rollout) error {
	now := e.clock.Now()
	if req.Anytime {
		r.Anytime = &Override{By: req.Actor, Reason: "start … anytime", At: now}
	}
	if req.Override != "" {
		r.FreezeOverride = &Override{By: req.Actor, Reason: req.Override, At: now}
	}
	h, _, err := e.Hold(ctx, r, true)
	switch {
	case err != nil:
		return err
	case h != nil && h.Phase == PhaseFrozen:
		return &FrozenError{Freeze: *h.Freeze, Until: h.Until, Text: e.cfg.Calendar.untilText(h.Until)}
	}
	return nil
}

// auditOverrides records the overrides a start carried, each as its own entry.
func (e *Engine) auditOverrides(ctx context.Context, req StartRequest, r *Rollout, frozen []Freeze) {
	if r.FreezeOverride != nil && len(frozen) > 0 {
		var names []string
		for _, f := range frozen {
			names = append(names, f.String())
		}
		e.Audit(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "freeze.override", RolloutID: r.ID, Allowed: true,
			Detail: fmt.Sprintf("started %s during %s: %s", r.Version, strings.Join(names, "; "), req.Override)})
	}
	if r.Anytime != nil && len(e.cfg.Calendar.Windows) > 0 {
		e.Audit(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "window.override", RolloutID: r.ID, Allowed: true,
			Detail: fmt.Sprintf("%s may start hosts outside the windows (%s)", r.Version, e.cfg.Calendar.Windows)})
	}
}

// FrozenNow returns the freezes in effect now that a start would meet.
func (e *Engine) FrozenNow(ctx context.Context) ([]Freeze, error) {
	now := e.clock.Now()
	adhoc, err := e.adhocFreezes(ctx, now)
	if err != nil {
		return nil, err
	}
	return e.cfg.Calendar.Freezes(now, adhoc), nil
}

// OverrideRequest lifts a hold for the running rollout: Kind OverrideFreeze
// lets it through the freezes in effect now, OverrideWindow lets it start
// hosts outside the windows for the rest of its run. A promote of a waiting
// rollout is one.
type OverrideRequest struct {
	Actor  string
	Source Source
	Kind   OverrideKind
	Reason string
}

// Override records an override on the running rollout, audited; its driver
// takes it up at once when it runs here, else within its poll interval, and
// a wait it holds ends. ErrNotRunning when no rollout runs.
func (e *Engine) Override(ctx context.Context, req OverrideRequest) (*Rollout, error) {
	r, err := e.override(ctx, req)
	action := "freeze.override"
	if req.Kind == OverrideWindow {
		action = "window.override"
	}
	e.auditRequest(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: action, Detail: req.Reason}, r, err)
	return r, err
}

func (e *Engine) override(ctx context.Context, req OverrideRequest) (*Rollout, error) {
	if e.cfg.Freezes == nil {
		return nil, ErrNoFreezeStore
	}
	if req.Kind != OverrideFreeze && req.Kind != OverrideWindow {
		return nil, fmt.Errorf("override %q: not freeze or window", req.Kind)
	}
	r, err := e.cfg.Store.ActiveRollout(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotRunning
	} else if err != nil {
		return nil, fmt.Errorf("look for the running rollout: %w", err)
	}
	r, err = e.cfg.Freezes.SetOverride(ctx, r.ID, req.Kind, Override{By: req.Actor, Reason: req.Reason, At: e.clock.Now()})
	if err != nil {
		return r, fmt.Errorf("record override: %w", err)
	}
	e.log.InfoContext(ctx, "override recorded", "rollout_id", r.ID, "kind", req.Kind, "actor", req.Actor, "reason", req.Reason)
	e.tellLocal(r)
	return r, nil
}
