package rollout

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// Checker runs one check against the fleet's own signals (a metric, an
// endpoint, a command) after a stage.
type Checker interface {
	Check(ctx context.Context, t CheckTarget) CheckResult
}

// CheckTarget is what a check is run for.
type CheckTarget struct {
	Version string
	Stage   int // the percent of the stage that just ended
}

// CheckOutcome is how a check came out.
type CheckOutcome string

// Check outcomes. Inconclusive means the check could not answer (its server
// unreachable, no data): it halts the rollout too, unless the check says to
// go on.
const (
	CheckPass         CheckOutcome = "pass"
	CheckFail         CheckOutcome = "fail"
	CheckInconclusive CheckOutcome = "inconclusive"
)

// CheckResult is one run of a check.
type CheckResult struct {
	Outcome CheckOutcome
	Value   string // what it saw, e.g. "0.034" or "HTTP 503"
	Want    string // the condition it wanted, e.g. "< 0.01"
	Err     string // why it could not answer, when inconclusive
}

// Check is a named check the rollout passes through between stages.
type Check struct {
	Name string
	// Description says what it checks, for plans: "prometheus: rate(…) < 0.01".
	Description string
	// ContinueOnError lets an inconclusive result go on instead of halting.
	ContinueOnError bool
	// Timeout bounds one run; 0 means 10 s.
	Timeout time.Duration
	Checker Checker
}

// Says is the check's result for people: "error_rate: saw 0.034, wanted < 0.01".
func (c Check) Says(res CheckResult) string {
	switch res.Outcome {
	case CheckPass:
		return fmt.Sprintf("%s: passed (%s, wanted %s)", c.Name, res.Value, res.Want)
	case CheckFail:
		return fmt.Sprintf("%s failed: saw %s, wanted %s", c.Name, res.Value, res.Want)
	}
	return fmt.Sprintf("%s could not answer: %s", c.Name, res.Err)
}

// runChecks runs every check once for stage st and halts the rollout on the
// first bad result: a failure, or an inconclusive one the check does not let
// go on. It reports whether the rollout may go on.
func (ru *run) runChecks(ctx context.Context, st Stage) bool {
	r := ru.snapshot()
	for _, c := range ru.e.cfg.Checks {
		cctx, cancel := context.WithTimeout(ctx, cmp.Or(c.Timeout, 10*time.Second))
		res := c.Checker.Check(cctx, CheckTarget{Version: r.Version, Stage: st.Percent})
		cancel()
		if ctx.Err() != nil {
			return false // shutdown: the next driver runs the checks again
		}
		log := ru.e.log.With("rollout_id", r.ID, "stage", st.Percent, "check", c.Name, "outcome", res.Outcome)
		switch {
		case res.Outcome == CheckPass:
			log.DebugContext(ctx, "check passed", "value", res.Value)
			continue
		case res.Outcome == CheckInconclusive && c.ContinueOnError:
			log.WarnContext(ctx, "check could not answer; going on (on_error: continue)", "err", res.Err)
			continue
		}
		log.WarnContext(ctx, "check halts the rollout", "value", res.Value, "want", res.Want, "err", res.Err)
		ru.mu.Lock()
		ru.haltLocked(Halt{By: AutoHalter, At: ru.e.clock.Now(), Reason: fmt.Sprintf("after stage %d%%: check %s", st.Percent, c.Says(res))})
		ru.mu.Unlock()
		return false
	}
	return true
}

// bake runs the checks again and again until the bake time ends, and halts
// at the first bad result.
func (ru *run) bake(ctx context.Context, r Rollout, st Stage) {
	interval := ru.e.cfg.CheckInterval
	for {
		if !ru.runChecks(ctx, st) {
			return
		}
		left := r.WaitUntil.Sub(ru.e.clock.Now())
		if left <= 0 {
			return
		}
		select {
		case <-ru.e.clock.After(min(interval, left)):
		case <-ru.haltCh:
			return
		case <-ctx.Done():
			return
		}
	}
}

// CheckNames are the names of the checks, for plans and status lines.
func CheckNames(cs []Check) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
