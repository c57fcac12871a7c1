package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// errNotStarted means the host was left untouched because its start could not
// be recorded (shutdown or a lost lease); it stays as the store has it.
var errNotStarted = errors.New("host not started")

// updateHost runs one host's update to its end:
//
//	connect → version → (target already: skipped)
//	       → record updating → update → health … → success
//	       → on failure: record rollback → rollback → health → rolled_back | failed
//
// A host found updating (its driver died) is re-checked by reading its version
// first. The returned result is final; the caller persists it. Only the start
// of the update is persisted here, because it must be durable before the host
// is touched: that is what keeps a crash from updating a host twice.
func (ru *run) updateHost(ctx context.Context, hr HostResult) (HostResult, error) {
	log := ru.e.log.With("rollout_id", ru.r.ID, "host", hr.Host.ID)
	target := ru.r.Version
	recheck := hr.Status == StatusUpdating
	if hr.StartedAt.IsZero() {
		hr.StartedAt = ru.e.clock.Now()
	}
	hr.Error, hr.Output = "", ""

	conn, err := ru.e.cfg.Updater.Connect(ctx, hr.Host)
	if err != nil {
		return ru.failed(hr, StepConnect, err, ""), nil
	}
	defer func() { conn.Close() }()

	cur, err := conn.Version(ctx)
	if err != nil {
		return ru.failed(hr, StepVersion, err, ""), nil
	}
	switch {
	case recheck && hr.Step == StepRollback:
		// It died rolling back: finish the rollback.
		log.InfoContext(ctx, "re-check: resuming rollback", "step", StepRollback, "version", cur, "previous", hr.PrevVersion)
		if cur != hr.PrevVersion {
			if out, err := conn.Rollback(ctx, hr.PrevVersion); err != nil {
				return ru.failed(hr, StepRollback, fmt.Errorf("%s; then rollback to %s failed: %w", hr.Error, hr.PrevVersion, err), out), nil
			}
		}
		return ru.afterRollback(ctx, conn, hr), nil
	case recheck && cur == target:
		// The update went through before the crash; its health decides.
		log.InfoContext(ctx, "re-check: update already applied, checking health", "step", StepHealth, "version", cur)
		return ru.checkHealth(ctx, conn, hr), nil
	case cur == target:
		hr.Status, hr.Step, hr.NewVersion = StatusSkipped, StepVersion, cur
		if !recheck {
			hr.PrevVersion = cur
		}
		hr.FinishedAt = ru.e.clock.Now()
		return hr, nil
	}
	if recheck {
		log.InfoContext(ctx, "re-check: update not applied, updating", "version", cur)
	}
	if err := ValidateVersion(cur); err != nil {
		return ru.failed(hr, StepVersion, fmt.Errorf("host reports version %q, which could not be rolled back to; not updating it", firstLine(cur)), ""), nil
	}
	hr.Status, hr.Step, hr.PrevVersion = StatusUpdating, StepUpdate, cur
	if err := ru.w.save(ctx, hr); err != nil {
		return hr, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	out, err := conn.Update(ctx, target)
	if err != nil {
		log.InfoContext(ctx, "update failed; rolling back", "step", StepUpdate, "err", err)
		return ru.rollback(ctx, conn, hr, StepUpdate, err, out), nil
	}
	return ru.checkHealth(ctx, conn, hr), nil
}

// checkHealth waits for the updated host to pass its health check, rolling it
// back when it does not.
func (ru *run) checkHealth(ctx context.Context, conn Conn, hr HostResult) HostResult {
	out, err := ru.waitHealthy(ctx, conn)
	if err != nil {
		ru.e.log.InfoContext(ctx, "health check failed; rolling back", "rollout_id", ru.r.ID, "host", hr.Host.ID, "step", StepHealth, "err", err)
		return ru.rollback(ctx, conn, hr, StepHealth, err, out)
	}
	hr.Status, hr.Step, hr.NewVersion = StatusSuccess, StepHealth, ru.r.Version
	hr.FinishedAt = ru.e.clock.Now()
	return hr
}

// rollback puts the previous version back after step failed with cause. The
// rollback is recorded first, so a crash during it finishes the rollback
// rather than updating again. A lost connection is reopened once.
func (ru *run) rollback(ctx context.Context, conn Conn, hr HostResult, step Step, cause error, out string) HostResult {
	hr.Status, hr.Step = StatusUpdating, StepRollback
	hr.Error = fmt.Sprintf("%s failed: %v", step, cause)
	hr.Output = out
	if hr.PrevVersion == "" {
		return ru.failed(hr, step, fmt.Errorf("%s failed (%w) and there is no previous version to roll back to", step, cause), out)
	}
	if err := ru.w.save(ctx, hr); err != nil {
		// Not recorded: a resume finds the host updating at step update and
		// re-checks it, which rolls it back there.
		return ru.failed(hr, step, fmt.Errorf("%s failed (%w); rollback not started: %w", step, cause, err), out)
	}
	rbOut, err := conn.Rollback(ctx, hr.PrevVersion)
	if errors.Is(err, ErrConnLost) && ctx.Err() == nil {
		var c2 Conn
		if c2, err = ru.e.cfg.Updater.Connect(ctx, hr.Host); err == nil {
			defer func() { c2.Close() }()
			conn = c2
			rbOut, err = conn.Rollback(ctx, hr.PrevVersion)
		}
	}
	if err != nil {
		return ru.failed(hr, StepRollback, fmt.Errorf("%s failed (%v), then rollback to %s failed: %w", step, cause, hr.PrevVersion, err), rbOut)
	}
	res := ru.afterRollback(ctx, conn, hr)
	if res.Status == StatusRolledBack {
		res.Step = step
		res.Output = out
	}
	return res
}

// afterRollback checks the health of a host just rolled back.
func (ru *run) afterRollback(ctx context.Context, conn Conn, hr HostResult) HostResult {
	if out, err := ru.waitHealthy(ctx, conn); err != nil {
		reason := hr.Error
		if reason != "" {
			reason += "; "
		}
		return ru.failed(hr, StepRollback, fmt.Errorf("%srolled back to %s but still unhealthy: %w", reason, hr.PrevVersion, err), out)
	}
	hr.Status, hr.NewVersion = StatusRolledBack, hr.PrevVersion
	hr.FinishedAt = ru.e.clock.Now()
	return hr
}

// waitHealthy runs the health check until it passes or the health timeout
// ends; an attempt that hangs is stopped when the timeout ends.
func (ru *run) waitHealthy(ctx context.Context, conn Conn) (string, error) {
	deadline := ru.e.clock.Now().Add(ru.e.cfg.HealthTimeout)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, deadline.Sub(ru.e.clock.Now()))
		out, err := conn.Health(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			return out, nil
		}
		if errors.Is(err, ErrConnLost) || ctx.Err() != nil {
			return out, err
		}
		if timedOut {
			return out, fmt.Errorf("attempt %d had no answer when the health timeout (%s) ended", attempt, ru.e.cfg.HealthTimeout)
		}
		if !ru.e.clock.Now().Add(ru.e.cfg.HealthInterval).Before(deadline) {
			if attempt == 1 {
				return out, err
			}
			return out, fmt.Errorf("still failing after %d attempts in %s: %w", attempt, ru.e.cfg.HealthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-ru.e.clock.After(ru.e.cfg.HealthInterval):
		}
	}
}

func (ru *run) failed(hr HostResult, step Step, err error, out string) HostResult {
	hr.Status, hr.Step = StatusFailed, step
	hr.Error = err.Error()
	if out != "" {
		hr.Output = out
	}
	hr.FinishedAt = ru.e.clock.Now()
	return hr
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
