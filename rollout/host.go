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

// errCutOff means the host's update was cut off part way, by a shutdown whose
// grace ran out or a lost lease: it is not a failure of the host, and the host
// stays updating in the store for the next driver to re-check.
var errCutOff = errors.New("cut off")

// updateHost runs one host's update to its end:
//
//	record updating ┐
//	connect → version ┴→ (target already: skipped)
//	                   → update → health … → success
//	                   → on failure: record rollback → rollback → health → rolled_back | failed
//
// A host found updating (its driver died) is re-checked: see recheckHost. The
// returned result is final; the caller persists it. Only the starts of the
// update and of a rollback are persisted here, because they must be durable
// before the host is touched: that is what keeps a crash from updating a host
// twice. The start is written while the host is reached and its version read,
// and waited for before the update is sent, so its commit costs the host no
// time of its own. The version the update starts from is not in that record:
// the host records it with the update (LastCommand.From), and a re-check
// takes it from there. An error means the host was not settled and stays as
// stored.
func (ru *run) updateHost(ctx context.Context, hr HostResult) (HostResult, error) {
	if hr.StartedAt.IsZero() {
		hr.StartedAt = ru.e.clock.Now()
	}
	if hr.Status == StatusUpdating {
		return ru.recheckFrom(ctx, hr)
	}
	before := hr
	hr.Error, hr.Output, hr.PrevVersion = "", "", ""
	hr.Status, hr.Step = StatusUpdating, StepConnect
	stored := ru.w.enqueue(hr)
	started := func() error {
		if err := ru.w.wait(ctx, stored); err != nil {
			return fmt.Errorf("%w: %w", errNotStarted, err)
		}
		return nil
	}
	res, conn, err := ru.reach(ctx, hr)
	if conn != nil {
		defer func() { conn.Close() }()
	}
	// Nothing of this host is reported before its start is: the store's
	// order is the host's.
	if err := started(); err != nil {
		return before, err
	}
	if err != nil || conn == nil {
		return res, err
	}
	if ru.halting() {
		// Reached, but not sent: a halt starts no host.
		ru.e.log.InfoContext(ctx, "halting; host left pending", "rollout_id", ru.r.ID, "host", hr.Host.ID)
		return HostResult{RolloutID: hr.RolloutID, Index: hr.Index, Host: hr.Host, Status: StatusPending}, nil
	}
	return ru.update(ctx, conn, res)
}

// reach connects to a host whose start is being recorded and reads its
// version. It returns the open connection when the update is to be sent,
// else the host's result (skipped, failed) or the error that cut it off.
func (ru *run) reach(ctx context.Context, hr HostResult) (HostResult, Conn, error) {
	conn, hs, res, err := ru.open(ctx, hr)
	if conn == nil {
		return res, nil, err
	}
	if cur := hs.Version; cur == ru.r.Version {
		conn.Close()
		hr.Status, hr.Step, hr.PrevVersion, hr.NewVersion = StatusSkipped, StepVersion, cur, cur
		hr.FinishedAt = ru.e.clock.Now()
		return hr, nil, nil
	}
	res, ok := ru.updateFrom(hr, hs.Version)
	if !ok {
		conn.Close()
		return res, nil, nil
	}
	return res, conn, nil
}

// recheckFrom connects to a host a previous driver left updating, and
// settles it: see recheckHost.
func (ru *run) recheckFrom(ctx context.Context, hr HostResult) (HostResult, error) {
	conn, hs, res, err := ru.open(ctx, hr)
	if conn == nil {
		return res, err
	}
	defer func() { conn.Close() }()
	return ru.recheckHost(ctx, conn, hr, hs)
}

// open connects to a host and reads its state. When either fails it returns
// no connection, and the host's result (failed at connect or version) or the
// error that cut it off.
func (ru *run) open(ctx context.Context, hr HostResult) (Conn, HostState, HostResult, error) {
	return ru.openAs(ctx, hr, func(hr HostResult, step Step, err error) HostResult { return ru.failed(hr, step, err, "") })
}

// openAs is open with the host's failure at connect or version read made by
// fail: the update's, or a rollback's.
func (ru *run) openAs(ctx context.Context, hr HostResult, fail func(HostResult, Step, error) HostResult) (Conn, HostState, HostResult, error) {
	conn, err := ru.connect(ctx, hr.Host)
	if err != nil {
		if cut := ru.cutOff(ctx, err); cut != nil {
			return nil, HostState{}, hr, cut
		}
		return nil, HostState{}, fail(hr, StepConnect, err), nil
	}
	hs, err := ru.version(ctx, conn)
	if err != nil {
		conn.Close()
		if cut := ru.cutOff(ctx, err); cut != nil {
			return nil, HostState{}, hr, cut
		}
		return nil, HostState{}, fail(hr, StepVersion, err), nil
	}
	return conn, hs, hr, nil
}

// updateFrom readies hr for its update from version cur, the version a
// rollback would go back to; it fails the host instead when cur is not a
// version that could be rolled back to.
func (ru *run) updateFrom(hr HostResult, cur string) (HostResult, bool) {
	if err := ValidateVersion(cur); err != nil {
		return ru.failed(hr, StepVersion, fmt.Errorf("host reports version %q, which could not be rolled back to; not updating it", firstLine(cur)), ""), false
	}
	hr.Step, hr.PrevVersion = StepUpdate, cur
	return hr, true
}

// update runs the update command on a host whose start is recorded, then
// its health check.
func (ru *run) update(ctx context.Context, conn Conn, hr HostResult) (HostResult, error) {
	out, err := ru.command(ctx, func() (string, error) { return conn.Update(ctx, ru.r.Version) })
	if cut := ru.cutOff(ctx, err); cut != nil {
		hr.Output = out
		return hr, cut
	}
	if err != nil {
		ru.e.log.InfoContext(ctx, "update failed; rolling back", "rollout_id", ru.r.ID, "host", hr.Host.ID, "step", StepUpdate, "err", err)
		return ru.rollback(ctx, conn, hr, StepUpdate, err, out)
	}
	return ru.checkHealth(ctx, conn, hr)
}

// recheckHost settles a host a previous driver left updating. The version
// read that got here waited for whatever that driver left running on the
// host, and the host's record of its last update or rollback says whether
// the recorded step ran and how it ended, so nothing is done twice:
//
//   - a rollback was recorded: finish it (run it if it never ran or was cut
//     off; else check health, or report its failure);
//   - the update ran to its end: its exit status decides (health, or roll back);
//   - the update was cut off: the version decides (health, or roll back);
//   - the update never ran: run it now, once; or, when the rollout is
//     halting, leave the host pending, as it was never really in flight.
//
// The failure reason and output recorded before are kept, and the version to
// roll back to is the one recorded before the host's first update.
func (ru *run) recheckHost(ctx context.Context, conn Conn, hr HostResult, hs HostState) (HostResult, error) {
	log := ru.e.log.With("rollout_id", ru.r.ID, "host", hr.Host.ID)
	last := hs.Last
	ours := last.Of(ru.fence())
	if hr.PrevVersion == "" && ours && last.Step == StepUpdate {
		// The driver died before it stored what the update started from;
		// the host recorded it.
		hr.PrevVersion = last.From
	}
	switch {
	case hr.Step == StepRollback && ours && last.Step == StepRollback && last.Finished && last.Exit == 0:
		log.InfoContext(ctx, "re-check: the rollback ran; checking health", "step", StepRollback, "version", hs.Version)
		return ru.afterRollback(ctx, conn, hr)
	case hr.Step == StepRollback && ours && last.Step == StepRollback && last.Finished:
		return ru.failed(hr, StepRollback, fmt.Errorf("%s; then rollback to %s failed (exit status %d, under the previous driver)",
			hr.Error, hr.PrevVersion, last.Exit), hr.Output), nil
	case hr.Step == StepRollback:
		log.InfoContext(ctx, "re-check: the rollback did not run to its end; rolling back", "step", StepRollback, "version", hs.Version)
		return ru.rollbackNow(ctx, conn, hr, hr.Error, hr.Output)
	case ours && last.Step == StepUpdate && last.Finished && last.Exit == 0:
		log.InfoContext(ctx, "re-check: the update ran; checking health", "step", StepHealth, "version", hs.Version)
		return ru.checkHealth(ctx, conn, hr)
	case ours && last.Step == StepUpdate && last.Finished:
		log.InfoContext(ctx, "re-check: the update had failed; rolling back", "step", StepUpdate, "exit", last.Exit)
		return ru.rollback(ctx, conn, hr, StepUpdate, fmt.Errorf("exited with status %d (under the previous driver)", last.Exit), hr.Output)
	case ours && last.Step == StepUpdate && hs.Version == ru.r.Version:
		log.InfoContext(ctx, "re-check: the update was cut off after it switched versions; checking health", "step", StepHealth)
		return ru.checkHealth(ctx, conn, hr)
	case ours && last.Step == StepUpdate:
		log.InfoContext(ctx, "re-check: the update was cut off; rolling back", "step", StepUpdate, "version", hs.Version)
		return ru.rollback(ctx, conn, hr, StepUpdate, errors.New("it was cut off before it ended (its process was killed or the host restarted)"), hr.Output)
	case hs.Version == ru.r.Version:
		// Recorded, never run here, and on the target all the same (by
		// hand, or by a recipe outside rolloutbot): nothing to do.
		log.InfoContext(ctx, "re-check: the update never ran and the host is on the target", "version", hs.Version)
		hr.Status, hr.Step, hr.NewVersion = StatusSkipped, StepVersion, hs.Version
		if hr.PrevVersion == "" {
			hr.PrevVersion = hs.Version
		}
		hr.FinishedAt = ru.e.clock.Now()
		return hr, nil
	}
	if ru.halting() {
		// Recorded but never sent: not in flight. A halt starts no host.
		log.InfoContext(ctx, "re-check: the update never ran; left pending, the rollout is halting", "version", hs.Version)
		return HostResult{RolloutID: hr.RolloutID, Index: hr.Index, Host: hr.Host, Status: StatusPending}, nil
	}
	if hr.Step != StepUpdate || hr.PrevVersion == "" {
		// Its start was recorded while the host was being reached.
		var ok bool
		if hr, ok = ru.updateFrom(hr, hs.Version); !ok {
			return hr, nil
		}
	}
	log.InfoContext(ctx, "re-check: the update never ran; updating", "version", hs.Version)
	return ru.update(ctx, conn, hr)
}

func (ru *run) halting() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.r.Halt != nil
}

// checkHealth waits for the updated host to pass its health check, rolling it
// back when it does not.
func (ru *run) checkHealth(ctx context.Context, conn Conn, hr HostResult) (HostResult, error) {
	out, err := ru.waitHealthy(ctx, conn)
	if cut := ru.cutOff(ctx, err); cut != nil {
		return hr, cut
	}
	if err != nil {
		ru.e.log.InfoContext(ctx, "health check failed; rolling back", "rollout_id", ru.r.ID, "host", hr.Host.ID, "step", StepHealth, "err", err)
		return ru.rollback(ctx, conn, hr, StepHealth, err, out)
	}
	hr.Status, hr.Step, hr.NewVersion = StatusSuccess, StepHealth, ru.r.Version
	hr.Error, hr.Output = "", ""
	hr.FinishedAt = ru.e.clock.Now()
	return hr, nil
}

// rollback puts the previous version back after step failed with cause. The
// rollback is recorded first, so a crash during it finishes the rollback
// rather than updating again.
func (ru *run) rollback(ctx context.Context, conn Conn, hr HostResult, step Step, cause error, out string) (HostResult, error) {
	reason := fmt.Sprintf("%s failed: %v", step, cause)
	if hr.PrevVersion == "" {
		return ru.failed(hr, step, fmt.Errorf("%s failed (%w) and there is no previous version to roll back to", step, cause), out), nil
	}
	hr.Status, hr.Step, hr.Error, hr.Output = StatusUpdating, StepRollback, reason, out
	if err := ru.w.save(ctx, hr); err != nil {
		// Not recorded: the next driver finds the host updating at its
		// update step and re-checks it, which rolls it back there.
		return hr, fmt.Errorf("%w: rollback not recorded: %w", errCutOff, err)
	}
	return ru.rollbackNow(ctx, conn, hr, reason, out)
}

// rollbackNow runs the recorded rollback of hr, reason being why. A lost
// connection is reopened once.
func (ru *run) rollbackNow(ctx context.Context, conn Conn, hr HostResult, reason, out string) (HostResult, error) {
	rbOut, err := ru.command(ctx, func() (string, error) { return conn.Rollback(ctx, hr.PrevVersion) })
	if errors.Is(err, ErrConnLost) && ctx.Err() == nil {
		var c2 Conn
		if c2, err = ru.connect(ctx, hr.Host); err == nil {
			defer func() { c2.Close() }()
			conn = c2
			rbOut, err = ru.command(ctx, func() (string, error) { return conn.Rollback(ctx, hr.PrevVersion) })
		}
	}
	if cut := ru.cutOff(ctx, err); cut != nil {
		return hr, cut
	}
	if err != nil {
		return ru.failed(hr, StepRollback, fmt.Errorf("%s, then rollback to %s failed: %w", reason, hr.PrevVersion, err), rbOut), nil
	}
	res, cut := ru.afterRollback(ctx, conn, hr)
	if cut == nil && res.Status == StatusRolledBack {
		res.Output = out
	}
	return res, cut
}

// afterRollback checks the health of a host just rolled back. A rolled-back
// host keeps the step that failed, its reason and its output.
func (ru *run) afterRollback(ctx context.Context, conn Conn, hr HostResult) (HostResult, error) {
	out, err := ru.waitHealthy(ctx, conn)
	if cut := ru.cutOff(ctx, err); cut != nil {
		return hr, cut
	}
	if err != nil {
		reason := hr.Error
		if reason != "" {
			reason += "; "
		}
		return ru.failed(hr, StepRollback, fmt.Errorf("%srolled back to %s but still unhealthy: %w", reason, hr.PrevVersion, err), out), nil
	}
	hr.Status, hr.NewVersion = StatusRolledBack, hr.PrevVersion
	if step, _, ok := strings.Cut(hr.Error, " failed: "); ok {
		hr.Step = Step(step)
	}
	hr.FinishedAt = ru.e.clock.Now()
	return hr, nil
}

// waitHealthy runs the health check until it passes or the health timeout
// ends; an attempt that hangs is stopped when the timeout ends. The error
// carries the last attempt's output, so an unhealthy host's answer is shown.
func (ru *run) waitHealthy(ctx context.Context, conn Conn) (string, error) {
	deadline := ru.e.clock.Now().Add(ru.e.cfg.HealthTimeout)
	var lastOut string // of the last attempt that answered
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := ru.lease.hold(ctx); err != nil {
			return "", err
		}
		actx, cancel := context.WithTimeout(ctx, deadline.Sub(ru.e.clock.Now()))
		out, err := conn.Health(actx)
		timedOut := actx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
		cancel()
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, ErrConnLost), errors.Is(err, ErrFenced), ctx.Err() != nil:
			return out, err
		case timedOut && lastErr != nil:
			// An unhealthy host whose last check ran into the timeout is
			// unhealthy, with the answer it gave last.
			return lastOut, fmt.Errorf("still unhealthy after %d attempts in %s (the last did not end in time): %w",
				attempt-1, ru.e.cfg.HealthTimeout, lastErr)
		case timedOut:
			return out, fmt.Errorf("attempt %d had no answer when the health timeout (%s) ended", attempt, ru.e.cfg.HealthTimeout)
		}
		lastOut, lastErr = out, err
		if !ru.e.clock.Now().Add(ru.e.cfg.HealthInterval).Before(deadline) {
			if attempt == 1 {
				return out, err
			}
			return out, fmt.Errorf("still unhealthy after %d attempts in %s: %w", attempt, ru.e.cfg.HealthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-ru.e.clock.After(ru.e.cfg.HealthInterval):
		}
	}
}

// fence is this driver's fence on the hosts.
func (ru *run) fence() Fence {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.r.Fence(ru.e.cfg.Store.ID())
}

// connect opens a connection under this driver's fence, once the lease allows.
func (ru *run) connect(ctx context.Context, h Host) (Conn, error) {
	if err := ru.lease.hold(ctx); err != nil {
		return nil, err
	}
	return ru.e.cfg.Updater.Connect(ctx, h, ru.fence())
}

// version reads the host's state, once the lease allows.
func (ru *run) version(ctx context.Context, conn Conn) (HostState, error) {
	if err := ru.lease.hold(ctx); err != nil {
		return HostState{}, err
	}
	return conn.Version(ctx)
}

// command runs one recipe command, once the lease allows: a driver whose
// lease ran out starts no command on any host.
func (ru *run) command(ctx context.Context, f func() (string, error)) (string, error) {
	if err := ru.lease.hold(ctx); err != nil {
		return "", err
	}
	return f()
}

// cutOff says whether err ended the host's update without an outcome: the
// driver's shutdown grace ran out, its lease ran out, or the host has been
// taken over by a newer driver. It returns the error to report, or nil.
func (ru *run) cutOff(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrFenced):
		return fmt.Errorf("%w: %w", errCutOff, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w by shutdown: %w", errCutOff, err)
	}
	return nil
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
