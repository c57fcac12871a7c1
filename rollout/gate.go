package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Promote is a request to open a rollout's manual gate: who asked, and the
// stage whose gate it opens. It names the stage so that a promote meant for
// one gate never opens a later one.
type Promote struct {
	By    string
	Stage int // index into Settings.Stages of the stage that ended in the gate
	At    time.Time
}

// Errors of promotion.
var (
	// ErrNotGated means the rollout does not wait at the gate the promote
	// was meant for (it waits at none, or at another one).
	ErrNotGated = errors.New("the rollout is not waiting for this promotion")
	// ErrOwnRollout is the two-person rule's refusal: the admin who started
	// a rollout cannot promote it.
	ErrOwnRollout = errors.New("under the two-person rule the admin who started the rollout cannot promote it")
	// ErrPromoted means the gate was promoted already.
	ErrPromoted = errors.New("the rollout was promoted already")
)

// validateGates checks the gate settings against the stages.
func (s Settings) validateGates() error {
	for _, g := range s.Gates {
		switch {
		case !slices.Contains(s.Stages, g):
			return fmt.Errorf("gates: %d%% is not one of the stages %v", g, s.Stages)
		case g == s.Stages[len(s.Stages)-1]:
			return fmt.Errorf("gates: %d%% is the last stage; a gate stands before a next stage", g)
		}
	}
	if s.GateTimeout < 0 {
		return fmt.Errorf("gate_timeout: %s must not be negative", s.GateTimeout)
	}
	if s.Bake < 0 {
		return fmt.Errorf("bake: %s must not be negative", s.Bake)
	}
	return nil
}

// GatedAt reports whether the stage of percent p ends in a manual gate.
func (s Settings) GatedAt(p int) bool { return slices.Contains(s.Gates, p) }

// NextStage is the index of the next stage with hosts after the current
// one, or -1 when there is none.
func (r *Rollout) NextStage() int {
	stages := r.StageList()
	for j := r.Stage + 1; j < len(stages); j++ {
		if stages[j].Size() > 0 {
			return j
		}
	}
	return -1
}

// PromoteRequest asks to open the gate a rollout waits at.
type PromoteRequest struct {
	Actor  string
	Source Source
	// ID and Stage name the gate the request is meant for, as a button drew
	// it; ID 0 means the active rollout, and Stage -1 the gate it waits at now.
	ID    int64
	Stage int
}

// Promote asks the driver of the active rollout to go on past the gate it
// waits at. Like a halt it is a request, stored first: the driver (here or in
// another process) acts on it. It fails with ErrNotGated (wrapped with the
// rollout's state) when the rollout does not wait at that gate, and with
// ErrOwnRollout under the two-person rule.
//
// A rollout held by a freeze or outside the rollout windows (Phase.Holding)
// is moved on the same way: the promote is an override of what holds it,
// audited and loud like `start … override`. The returned rollout is then
// still in its holding phase; its driver ends the wait.
func (e *Engine) Promote(ctx context.Context, req PromoteRequest) (*Rollout, error) {
	if r, err := e.cfg.Store.ActiveRollout(ctx); err == nil && r.Phase.Holding() && r.Halt == nil && (req.ID == 0 || req.ID == r.ID) {
		kind := OverrideFreeze
		if r.Phase == PhaseWindow {
			kind = OverrideWindow
		}
		return e.Override(ctx, OverrideRequest{Actor: req.Actor, Source: req.Source, Kind: kind,
			Reason: "promoted while " + r.Waiting(e.clock.Now())})
	}
	r, err := e.promote(ctx, req)
	detail := ""
	if r != nil && r.Stage < len(r.Settings.Stages) {
		detail = fmt.Sprintf("gate after stage %d%%", r.Settings.Stages[r.Stage])
	}
	e.auditRequest(ctx, AuditEntry{Actor: req.Actor, Source: req.Source, Action: "promote", Detail: detail}, r, err)
	return r, err
}

func (e *Engine) promote(ctx context.Context, req PromoteRequest) (*Rollout, error) {
	r, err := e.cfg.Store.ActiveRollout(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotRunning
	} else if err != nil {
		return nil, fmt.Errorf("look for the running rollout: %w", err)
	}
	stage := req.Stage
	if stage < 0 {
		stage = r.Stage
	}
	switch {
	case req.ID != 0 && req.ID != r.ID:
		return r, fmt.Errorf("rollout #%d is over; #%d is %s: %w", req.ID, r.ID, r.Label(), ErrNotGated)
	case r.Phase != PhaseGated || r.Stage != stage || r.Halt != nil:
		return r, fmt.Errorf("rollout #%d is %s: %w", r.ID, r.Label(), ErrNotGated)
	case r.Settings.PromoteByOther && req.Actor == r.Starter:
		return r, ErrOwnRollout
	}
	r, err = e.cfg.Store.RequestPromote(ctx, r.ID, Promote{By: req.Actor, Stage: stage, At: e.clock.Now()})
	switch {
	case errors.Is(err, ErrPromoted):
		return r, fmt.Errorf("rollout #%d: %w by %s", r.ID, ErrPromoted, r.Promote.By)
	case errors.Is(err, ErrNotGated) && r != nil:
		return r, fmt.Errorf("rollout #%d is %s: %w", r.ID, r.Label(), ErrNotGated)
	case err != nil:
		return r, fmt.Errorf("record promotion: %w", err)
	}
	e.log.InfoContext(ctx, "promotion requested", "rollout_id", r.ID, "actor", req.Actor, "stage", r.Settings.Stages[stage])
	if !e.tellLocal(r) {
		e.Kick()
	}
	return r, nil
}

// takePromote keeps a promotion of the gate the run waits at, and wakes the
// drive; mu is held.
func (ru *run) takePromote(p *Promote) {
	if p == nil || ru.r.Phase != PhaseGated || p.Stage != ru.r.Stage {
		return
	}
	if ru.r.Promote != nil && ru.r.Promote.Stage == p.Stage {
		return
	}
	cp := *p
	ru.r.Promote = &cp
	signal(ru.promoteCh)
}

// promoted reports whether the gate the rollout waits at was promoted.
func promoted(r Rollout) bool { return r.Promote != nil && r.Promote.Stage == r.Stage }

// waitAtGate waits at a manual gate until a promote for it, a halt, the end
// of ctx, or the gate's timeout, which halts the rollout.
func (ru *run) waitAtGate(ctx context.Context, r Rollout) {
	if promoted(r) {
		return
	}
	var timeout <-chan time.Time
	if !r.WaitUntil.IsZero() {
		timeout = ru.e.clock.After(r.WaitUntil.Sub(ru.e.clock.Now()))
	}
	select {
	case <-ru.promoteCh:
	case <-ru.haltCh:
	case <-ctx.Done():
	case <-timeout:
		ru.mu.Lock()
		defer ru.mu.Unlock()
		if promoted(ru.r) {
			return
		}
		to := "the next stage"
		if k := ru.r.NextStage(); k >= 0 {
			to = fmt.Sprintf("%d%%", ru.stages[k].Percent)
		}
		ru.haltLocked(Halt{By: AutoHalter, At: ru.e.clock.Now(), Reason: fmt.Sprintf(
			"nobody promoted it to %s within the gate timeout (%s)", to, r.Settings.GateTimeout)})
	}
}

// enterGate makes the rollout wait at the gate after stage k.
func (ru *run) enterGate(ctx context.Context, r Rollout, st Stage) error {
	var until time.Time
	if t := r.Settings.GateTimeout; t > 0 {
		until = ru.e.clock.Now().Add(t)
	}
	if err := ru.setPhase(ctx, PhaseGated, r.Stage, until); err != nil {
		return err
	}
	ru.e.log.InfoContext(ctx, "waiting for promotion", "rollout_id", r.ID, "stage", st.Percent)
	ru.notify(EventGated, nil, st, r.Settings.GateTimeout)
	return nil
}

// After says what stands between stage st and the next in the plan, or
// the rollout's end after its last stage with hosts: its checks (and bake),
// and, before a next stage, its manual gate. Empty when nothing does.
func (p Plan) After(st Stage) string {
	if st.Size() == 0 {
		return ""
	}
	last := true
	for _, next := range p.Stages[st.Index+1:] {
		if next.Size() > 0 {
			last = false
			break
		}
	}
	var parts []string
	if len(p.Checks) > 0 {
		what := "checks " + strings.Join(CheckNames(p.Checks), ", ")
		if p.Settings.Bake > 0 {
			what += fmt.Sprintf(" (again and again for a %s bake)", p.Settings.Bake)
		}
		if last {
			what += " before it completes"
		}
		parts = append(parts, what)
	}
	if !last && p.Settings.GatedAt(st.Percent) {
		what := "waits for an admin to promote it"
		if p.Settings.PromoteByOther {
			what += " (not the one who started it)"
		}
		if t := p.Settings.GateTimeout; t > 0 {
			what += fmt.Sprintf(", halts if nobody does within %s", t)
		}
		parts = append(parts, what)
	}
	return strings.Join(parts, "; then ")
}

// ParseGates reads a start's gates: "all" (or "") for a gate after every
// stage but the last, "none" for no gate, or percents such as "10,50"
// (a % sign allowed). Whether they are stages is checked by Settings.Validate.
func ParseGates(s string, stages []int) ([]int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "all":
		if len(stages) < 2 {
			return nil, nil
		}
		return slices.Clone(stages[:len(stages)-1]), nil
	case "none":
		return nil, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(f), "%"))
		if err != nil || p < 1 || p > 100 {
			return nil, fmt.Errorf("gates: %q is not a list of stage percents such as 10,50", s)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}
