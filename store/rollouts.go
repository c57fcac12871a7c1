package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const rolloutCols = `id, version, stages, concurrency, pause_ms, threshold, seed, host_count,
	phase, stage, segment_done, segment_failures, wait_until, halt_by, halt_reason, halt_at, error,
	undo_by, undo_reason, undo_at, undo_epoch,
	started_by, source, owner, lease_until, epoch, channel, message_ts, created_at, updated_at, finished_at,
	wait_for, freeze_override_by, freeze_override_reason, freeze_override_at, anytime_by, anytime_reason, anytime_at,
	gates, gate_timeout_ms, promote_by_other, bake_ms, starter, promote_by, promote_stage, promote_at`

func scanRollout(sc interface{ Scan(...any) error }) (*rollout.Rollout, error) {
	var r rollout.Rollout
	var stages, source, phase string
	var pauseMS int64
	var wait, haltAt, undoAt, lease, finished sql.NullTime
	var h rollout.Halt
	var u rollout.Undo
	var fo, anytime rollout.Override
	var foAt, anyAt sql.NullTime
	var gates string
	var gateTimeoutMS, bakeMS int64
	var p rollout.Promote
	var promoteAt sql.NullTime
	err := sc.Scan(&r.ID, &r.Version, &stages, &r.Settings.Concurrency, &pauseMS, &r.Settings.Threshold, &r.Seed, &r.Hosts,
		&phase, &r.Stage, &r.Segment.Done, &r.Segment.Failures, &wait, &h.By, &h.Reason, &haltAt, &r.Error,
		&u.By, &u.Reason, &undoAt, &u.Epoch,
		&r.StartedBy, &source, &r.Owner, &lease, &r.Epoch, &r.Channel, &r.MessageTS, &r.CreatedAt, &r.UpdatedAt, &finished,
		&r.WaitFor, &fo.By, &fo.Reason, &foAt, &anytime.By, &anytime.Reason, &anyAt,
		&gates, &gateTimeoutMS, &r.Settings.PromoteByOther, &bakeMS, &r.Starter, &p.By, &p.Stage, &promoteAt)
	if err != nil {
		return nil, err
	}
	if r.Settings.Stages, err = parseStages(stages); err != nil {
		return nil, err
	}
	r.Phase, r.Source = rollout.Phase(phase), rollout.Source(source)
	r.Settings.Pause = time.Duration(pauseMS) * time.Millisecond
	if gates != "" {
		if r.Settings.Gates, err = parseStages(gates); err != nil {
			return nil, err
		}
	}
	r.Settings.GateTimeout = time.Duration(gateTimeoutMS) * time.Millisecond
	r.Settings.Bake = time.Duration(bakeMS) * time.Millisecond
	if promoteAt.Valid {
		p.At = promoteAt.Time
		r.Promote = &p
	}
	r.WaitUntil, r.LeaseUntil, r.FinishedAt = timeOf(wait), timeOf(lease), timeOf(finished)
	if haltAt.Valid {
		h.At = haltAt.Time
		r.Halt = &h
	}
	if undoAt.Valid {
		u.At = undoAt.Time
		r.Undo = &u
	}
	r.FreezeOverride, r.Anytime = overrideOf(fo.By, fo.Reason, foAt), overrideOf(anytime.By, anytime.Reason, anyAt)
	return &r, nil
}

// haltArgs are a halt's by, reason and at, or empty ones for none.
func haltArgs(h *rollout.Halt) (string, string, any) {
	if h == nil {
		return "", "", nil
	}
	return h.By, storable(h.Reason), h.At.UTC()
}

// CreateRollout records a new active rollout and its host snapshot, all
// pending, leased to r.Owner for ttl on the store's clock, at epoch 1. A
// snapshot with two entries for one machine is refused.
func (db *DB) CreateRollout(ctx context.Context, r *rollout.Rollout, hosts []rollout.Host, ttl time.Duration) error {
	if err := rollout.CheckDistinct(hosts); err != nil {
		return err
	}
	err := db.withTx(ctx, func(t tx) error {
		err := t.queryRow(ctx, `INSERT INTO rollouts (version, stages, concurrency, pause_ms, threshold, seed, host_count,
			phase, stage, started_by, source, owner, lease_until, epoch, created_at, updated_at,
			freeze_override_by, freeze_override_reason, freeze_override_at, anytime_by, anytime_reason, anytime_at,
			gates, gate_timeout_ms, promote_by_other, bake_ms, starter)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, `+db.b.after("$13")+`, 1, $14, $15,
			$16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
			RETURNING id, lease_until, epoch`,
			append(append([]any{r.Version, formatStages(r.Settings.Stages), r.Settings.Concurrency, r.Settings.Pause.Milliseconds(),
				r.Settings.Threshold, r.Seed, r.Hosts, string(r.Phase), r.Stage, r.StartedBy, string(r.Source), r.Owner,
				ttl.Microseconds(), r.CreatedAt.UTC(), r.UpdatedAt.UTC()}, overridesArgs(r)...),
				formatStages(r.Settings.Gates), r.Settings.GateTimeout.Milliseconds(), r.Settings.PromoteByOther,
				r.Settings.Bake.Milliseconds(), r.Starter)...,
		).Scan(&r.ID, &r.LeaseUntil, &r.Epoch)
		if err != nil {
			return err
		}
		return db.b.insertRolloutHosts(ctx, t, r.ID, hosts)
	})
	if err != nil && db.b.isUniqueViolation(err) {
		return db.activeError(ctx)
	}
	return err
}

// activeError names the active rollout that made a write fail.
func (db *DB) activeError(ctx context.Context) error {
	cur, err := db.ActiveRollout(ctx)
	if err != nil {
		return &rollout.ActiveError{}
	}
	return &rollout.ActiveError{Rollout: cur}
}

// Rollout returns one rollout, or rollout.ErrNotFound.
func (db *DB) Rollout(ctx context.Context, id int64) (*rollout.Rollout, error) {
	return scanRollout(db.b.queryRow(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1`, id))
}

// ActiveRollout returns the running rollout, or rollout.ErrNotFound.
func (db *DB) ActiveRollout(ctx context.Context) (*rollout.Rollout, error) {
	return scanRollout(db.b.queryRow(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE active`))
}

// Rollouts returns up to limit rollouts, newest first.
func (db *DB) Rollouts(ctx context.Context, limit int) ([]*rollout.Rollout, error) {
	return db.RolloutsBefore(ctx, 0, limit)
}

// UpdateRollout writes the phase, stage, segment, wait, error and times while
// owner holds the rollout. A halt already stored stays, whatever r says: a
// halt another process asked for between the driver's read and this write is
// never lost. r.Halt is set to the stored one.
func (db *DB) UpdateRollout(ctx context.Context, owner string, r *rollout.Rollout) error {
	haltBy, haltReason, haltAt := haltArgs(r.Halt)
	var by, reason string
	var at sql.NullTime
	err := db.b.queryRow(ctx, `UPDATE rollouts SET phase = $3, stage = $4, segment_done = $5, segment_failures = $6,
		wait_until = $7, error = $8, finished_at = $9, updated_at = $10,
		halt_by = CASE WHEN halt_at IS NULL THEN $11 ELSE halt_by END,
		halt_reason = CASE WHEN halt_at IS NULL THEN $12 ELSE halt_reason END,
		halt_at = COALESCE(halt_at, $13), wait_for = $14
		WHERE id = $1 AND owner = $2
		RETURNING halt_by, halt_reason, halt_at`,
		r.ID, owner, string(r.Phase), r.Stage, r.Segment.Done, r.Segment.Failures, nullTime(r.WaitUntil),
		storable(r.Error), nullTime(r.FinishedAt), r.UpdatedAt.UTC(), haltBy, haltReason, haltAt, storable(r.WaitFor),
	).Scan(&by, &reason, &at)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return db.missing(ctx, r.ID)
	case err != nil && db.b.isUniqueViolation(err):
		return db.activeError(ctx)
	case err != nil:
		return err
	}
	r.Halt = nil
	if at.Valid {
		r.Halt = &rollout.Halt{By: by, Reason: reason, At: at.Time}
	}
	return nil
}

// missing explains a fenced write that matched no row.
func (db *DB) missing(ctx context.Context, id int64) error {
	if _, err := db.Rollout(ctx, id); err != nil {
		return err
	}
	return rollout.ErrLeaseLost
}

// ClaimRollout takes or renews the lease on an active rollout, for ttl from
// now on the store's clock: two bot machines whose clocks disagree still
// agree on who drives. Taking it over (from another owner, or from nobody)
// increments the epoch that fences the hosts' commands.
func (db *DB) ClaimRollout(ctx context.Context, id int64, owner string, ttl time.Duration) (*rollout.Rollout, error) {
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET owner = $2, lease_until = `+db.b.after("$3")+`,
		epoch = CASE WHEN owner = $2 THEN epoch ELSE epoch + 1 END
		WHERE id = $1 AND active AND (owner = $2 OR owner = '' OR lease_until IS NULL OR lease_until < `+db.b.now()+`)
		RETURNING `+rolloutCols, id, owner, ttl.Microseconds()))
	if errors.Is(err, rollout.ErrNotFound) {
		return nil, db.notClaimable(ctx, id)
	}
	return r, err
}

// RenewRollout extends owner's lease on an active rollout for ttl from now
// on the store's clock, while owner holds it: a lease that ran out is
// renewed only if nobody claimed the rollout since, so the epoch stays.
func (db *DB) RenewRollout(ctx context.Context, id int64, owner string, ttl time.Duration) (*rollout.Rollout, error) {
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET lease_until = `+db.b.after("$3")+`
		WHERE id = $1 AND active AND owner = $2
		RETURNING `+rolloutCols, id, owner, ttl.Microseconds()))
	if errors.Is(err, rollout.ErrNotFound) {
		return nil, db.notClaimable(ctx, id)
	}
	return r, err
}

// notClaimable explains a claim or renewal that matched no row: the
// rollout is gone or ended, or another process holds it.
func (db *DB) notClaimable(ctx context.Context, id int64) error {
	cur, err := db.Rollout(ctx, id)
	switch {
	case err != nil:
		return err
	case !cur.Phase.Active():
		return fmt.Errorf("rollout #%d is %s: %w", id, cur.Phase, rollout.ErrNotRunning)
	}
	return rollout.ErrLeaseLost
}

// ReleaseRollout gives up owner's lease.
func (db *DB) ReleaseRollout(ctx context.Context, id int64, owner string) error {
	_, err := db.b.exec(ctx, `UPDATE rollouts SET owner = '', lease_until = NULL WHERE id = $1 AND owner = $2`, id, owner)
	return err
}

// Now is the store's clock, which leases are measured on.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	if db.b.kind() == "sqlite" {
		var us int64
		err := db.b.queryRow(ctx, `SELECT `+db.b.now()).Scan(&us)
		return time.UnixMicro(us), err
	}
	var now time.Time
	err := db.b.queryRow(ctx, `SELECT `+db.b.now()).Scan(&now)
	return now, err
}

// RequestHalt records a halt for the driver of an active rollout to act on.
// A halt asked for earlier stays, and the answer is then rollout.ErrHalting
// with the rollout as stored.
func (db *DB) RequestHalt(ctx context.Context, id int64, h rollout.Halt) (*rollout.Rollout, error) {
	by, reason, at := haltArgs(&h)
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET halt_by = $2, halt_reason = $3, halt_at = $4
		WHERE id = $1 AND active AND halt_at IS NULL RETURNING `+rolloutCols, id, by, reason, at))
	if !errors.Is(err, rollout.ErrNotFound) {
		return r, err
	}
	cur, err := db.Rollout(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case !cur.Phase.Active():
		return cur, rollout.ErrNotRunning
	}
	return cur, rollout.ErrHalting
}

// ResumeRollout makes a halted rollout active again with r's phase, stage and
// segment, leased to r.Owner for ttl under a new epoch. A halted rollback
// keeps its request and goes on rolling back.
func (db *DB) ResumeRollout(ctx context.Context, r *rollout.Rollout, ttl time.Duration) error {
	err := db.b.queryRow(ctx, `UPDATE rollouts SET phase = CASE WHEN undo_at IS NULL THEN $2 ELSE 'rolling_back' END,
		stage = $3, segment_done = $4, segment_failures = $5,
		wait_until = NULL, wait_for = '', halt_by = '', halt_reason = '', halt_at = NULL, error = '', finished_at = NULL, updated_at = $6,
		owner = $7, lease_until = `+db.b.after("$8")+`, epoch = epoch + 1
		WHERE id = $1 AND phase = 'halted'
		RETURNING lease_until, epoch`,
		r.ID, string(r.Phase), r.Stage, r.Segment.Done, r.Segment.Failures, r.UpdatedAt.UTC(), r.Owner, ttl.Microseconds(),
	).Scan(&r.LeaseUntil, &r.Epoch)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return rollout.ErrNotHalted
	case err != nil && db.b.isUniqueViolation(err):
		return db.activeError(ctx)
	}
	return err
}

// undoTargets is the condition on a rollout's hosts that its rollback
// concerns: every host whose update may be applied. A host that failed before
// its update ran (unreachable, refused, changed key) or skipped it is not.
const undoTargets = `(status IN ('success', 'rolled_back', 'updating') OR (status = 'failed' AND step IN ('update', 'health', 'rollback')))`

// StartUndo turns rollout id into a rollback, with u as its request: an
// ended rollout (not rolled back already, or whose rollback was asked for as
// it ended, too late for its driver), which then becomes the active one
// leased to owner for ttl, or an active one owner drives. It marks the hosts
// the rollback concerns pending, clears any halt, and begins a new epoch,
// recorded as the rollback's. A second active rollout is refused with an
// *rollout.ActiveError.
func (db *DB) StartUndo(ctx context.Context, id int64, u rollout.Undo, owner string, ttl time.Duration) (*rollout.Rollout, error) {
	var r *rollout.Rollout
	err := db.withTx(ctx, func(t tx) error {
		var err error
		// A request stored before (RequestUndo) is kept.
		r, err = scanRollout(t.queryRow(ctx, `UPDATE rollouts SET phase = 'rolling_back',
			undo_by = CASE WHEN undo_at IS NULL THEN $2 ELSE undo_by END,
			undo_reason = CASE WHEN undo_at IS NULL THEN $3 ELSE undo_reason END,
			undo_at = COALESCE(undo_at, $4), undo_epoch = epoch + 1, epoch = epoch + 1,
			halt_by = '', halt_reason = '', halt_at = NULL, error = '',
			wait_until = NULL, wait_for = '', finished_at = NULL, owner = $5, lease_until = `+db.b.after("$6")+`, updated_at = $4
			WHERE id = $1 AND ((undo_epoch = 0 AND phase IN ('halted', 'completed', 'failed'))
				OR (active AND owner = $5 AND phase <> 'rolling_back'))
			RETURNING `+rolloutCols, id, u.By, storable(u.Reason), u.At.UTC(), owner, ttl.Microseconds()))
		if err != nil {
			return err
		}
		_, err = t.exec(ctx, `UPDATE rollout_hosts SET undo_status = 'pending' WHERE rollout_id = $1 AND `+undoTargets, id)
		return err
	})
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		cur, err := db.Rollout(ctx, id)
		switch {
		case err != nil:
			return nil, err
		case cur.Undo != nil:
			return cur, rollout.ErrRolledBack
		}
		return cur, rollout.ErrLeaseLost
	case err != nil && db.b.isUniqueViolation(err):
		return nil, db.activeError(ctx)
	}
	return r, err
}

// RequestUndo asks the driver of an active rollout to halt it and then roll
// it back; an earlier halt request stays, as the halt that comes first. It
// returns the rollout as stored; rollout.ErrNotRunning when it is not active,
// rollout.ErrRolledBack when a rollback was asked for already.
func (db *DB) RequestUndo(ctx context.Context, id int64, u rollout.Undo) (*rollout.Rollout, error) {
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET undo_by = $2, undo_reason = $3, undo_at = $4,
		halt_by = CASE WHEN halt_at IS NULL THEN $2 ELSE halt_by END,
		halt_reason = CASE WHEN halt_at IS NULL THEN $5 ELSE halt_reason END,
		halt_at = COALESCE(halt_at, $4)
		WHERE id = $1 AND active AND undo_at IS NULL RETURNING `+rolloutCols,
		id, u.By, storable(u.Reason), u.At.UTC(), storable(prefixed("to roll back", u.Reason))))
	if !errors.Is(err, rollout.ErrNotFound) {
		return r, err
	}
	cur, err := db.Rollout(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case cur.Undo != nil:
		return cur, rollout.ErrRolledBack
	}
	return cur, rollout.ErrNotRunning
}

// prefixed is what, then ": " and s when s is not empty.
func prefixed(what, s string) string {
	if s == "" {
		return what
	}
	return what + ": " + s
}

// SetStatusMessage records where a rollout's Slack status message is.
func (db *DB) SetStatusMessage(ctx context.Context, id int64, channel, ts string) error {
	_, err := db.b.exec(ctx, `UPDATE rollouts SET channel = $2, message_ts = $3 WHERE id = $1`, id, channel, ts)
	return err
}

const hostResultCols = `rollout_id, idx, host_id, address, port, ssh_user, label, status, step,
	prev_version, new_version, error, output, started_at, finished_at,
	undo_status, undo_error, undo_output, undo_started_at, undo_finished_at`

func scanHostResult(sc interface{ Scan(...any) error }) (rollout.HostResult, error) {
	var hr rollout.HostResult
	var status, step, undo string
	var started, finished, undoStarted, undoFinished sql.NullTime
	err := sc.Scan(&hr.RolloutID, &hr.Index, &hr.Host.ID, &hr.Host.Address, &hr.Host.Port, &hr.Host.User,
		&hr.Host.Label, &status, &step, &hr.PrevVersion, &hr.NewVersion, &hr.Error, &hr.Output, &started, &finished,
		&undo, &hr.Undo.Error, &hr.Undo.Output, &undoStarted, &undoFinished)
	hr.Status, hr.Step, hr.Undo.Status = rollout.Status(status), rollout.Step(step), rollout.UndoStatus(undo)
	hr.StartedAt, hr.FinishedAt = timeOf(started), timeOf(finished)
	hr.Undo.StartedAt, hr.Undo.FinishedAt = timeOf(undoStarted), timeOf(undoFinished)
	return hr, err
}

// HostResults returns a rollout's hosts in index order.
func (db *DB) HostResults(ctx context.Context, rolloutID int64) ([]rollout.HostResult, error) {
	return db.hostResults(ctx, `SELECT `+hostResultCols+` FROM rollout_hosts WHERE rollout_id = $1 ORDER BY idx`, rolloutID)
}

// FindHostResult returns the result of the rollout's host named by name: its
// id, its ADDRESS:PORT, or its address when no other host of the rollout has
// that address. An address several hosts share is an
// *rollout.AmbiguousHostError naming them.
func (db *DB) FindHostResult(ctx context.Context, rolloutID int64, name string) (rollout.HostResult, error) {
	address, port := name, 0
	if h, p, err := net.SplitHostPort(name); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			address, port = h, n
		}
	}
	const most = 5
	found, err := db.hostResults(ctx, `SELECT `+hostResultCols+` FROM rollout_hosts
		WHERE rollout_id = $1 AND (host_id = $2 OR (address = $3 AND ($4 = 0 OR port = $4)))
		ORDER BY host_id <> $2, idx LIMIT `+strconv.Itoa(most+1), rolloutID, name, address, port)
	switch {
	case err != nil:
		return rollout.HostResult{}, err
	case len(found) == 0:
		return rollout.HostResult{}, rollout.ErrNotFound
	case len(found) == 1 || found[0].Host.ID == name:
		return found[0], nil
	}
	e := &rollout.AmbiguousHostError{Name: name, More: len(found) > most}
	for _, hr := range found[:min(len(found), most)] {
		e.IDs = append(e.IDs, hr.Host.ID)
	}
	return rollout.HostResult{}, e
}

func (db *DB) hostResults(ctx context.Context, q string, args ...any) ([]rollout.HostResult, error) {
	rs, err := db.b.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.HostResult
	for rs.Next() {
		hr, err := scanHostResult(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, hr)
	}
	return out, rs.Err()
}

// SaveHostResults writes results in one transaction while owner holds their
// rollout; otherwise nothing is written and it returns rollout.ErrLeaseLost.
func (db *DB) SaveHostResults(ctx context.Context, owner string, results []rollout.HostResult) error {
	if len(results) == 0 {
		return nil
	}
	ok, err := db.b.saveResults(ctx, owner, lastOfEach(results))
	if err != nil {
		return err
	}
	if !ok {
		return rollout.ErrLeaseLost
	}
	return nil
}

// lastOfEach returns results with only the last result of each host: in one
// batch a host's later result supersedes its earlier one. SQLite writes the
// rows in order, but PostgreSQL's UPDATE … FROM would take one of a host's
// rows, which one unsaid.
func lastOfEach(results []rollout.HostResult) []rollout.HostResult {
	last := make(map[int]int, len(results))
	for i, hr := range results {
		last[hr.Index] = i
	}
	if len(last) == len(results) {
		return results
	}
	out := make([]rollout.HostResult, 0, len(last))
	for i, hr := range results {
		if last[hr.Index] == i {
			out = append(out, hr)
		}
	}
	return out
}

// storable makes s storable as text: output and reasons come from hosts and
// people, and PostgreSQL refuses a NUL or invalid UTF-8 outright, which would
// leave a result that can never be written. Both become U+FFFD.
func storable(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// updateResultSQL writes one host result; the owner check fences it.
const updateResultSQL = `UPDATE rollout_hosts SET status = $3, step = $4, prev_version = $5, new_version = $6,
	error = $7, output = $8, started_at = $9, finished_at = $10,
	undo_status = $11, undo_error = $12, undo_output = $13, undo_started_at = $14, undo_finished_at = $15
	WHERE rollout_id = $1 AND idx = $2`

func resultArgs(hr rollout.HostResult) []any {
	return []any{hr.RolloutID, hr.Index, string(hr.Status), string(hr.Step), hr.PrevVersion, hr.NewVersion,
		storable(hr.Error), storable(hr.Output), nullTime(hr.StartedAt), nullTime(hr.FinishedAt),
		string(hr.Undo.Status), storable(hr.Undo.Error), storable(hr.Undo.Output), nullTime(hr.Undo.StartedAt), nullTime(hr.Undo.FinishedAt)}
}

// Audit appends to the audit log.
func (db *DB) Audit(ctx context.Context, e rollout.AuditEntry) error {
	var rid any
	if e.RolloutID != 0 {
		rid = e.RolloutID
	}
	_, err := db.b.exec(ctx, `INSERT INTO audit_log (at, actor, source, action, rollout_id, allowed, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.At.UTC(), e.Actor, string(e.Source), e.Action, rid, e.Allowed, storable(e.Detail))
	return err
}

// AuditLog returns up to limit entries, newest first.
func (db *DB) AuditLog(ctx context.Context, limit int) ([]rollout.AuditEntry, error) {
	return db.AuditBefore(ctx, 0, limit)
}

// Counts tallies a rollout's hosts by status, and by their part in its
// rollback, as rollout.CountResults does.
func (db *DB) Counts(ctx context.Context, rolloutID int64) (rollout.Counts, error) {
	rs, err := db.b.query(ctx, `SELECT status, undo_status, count(*) FROM rollout_hosts WHERE rollout_id = $1
		GROUP BY status, undo_status`, rolloutID)
	if err != nil {
		return rollout.Counts{}, err
	}
	defer rs.Close()
	var c rollout.Counts
	for rs.Next() {
		var status, undo string
		var n int
		if err := rs.Scan(&status, &undo, &n); err != nil {
			return rollout.Counts{}, err
		}
		c.Add(rollout.Status(status), n)
		c.Undo.Add(rollout.UndoStatus(undo), n)
	}
	return c, rs.Err()
}

// RequestPromote records a promotion for the driver of a rollout waiting at
// the gate after stage p.Stage to act on. The first promotion of a gate is
// kept: a second one is answered rollout.ErrPromoted with the rollout as
// stored. A rollout that does not wait at that gate (ended, halting, running,
// at another gate) is answered rollout.ErrNotGated, so a stale promote
// never opens a later gate.
func (db *DB) RequestPromote(ctx context.Context, id int64, p rollout.Promote) (*rollout.Rollout, error) {
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET promote_by = $2, promote_stage = $3, promote_at = $4
		WHERE id = $1 AND active AND phase = 'gated' AND stage = $3 AND halt_at IS NULL
			AND (promote_at IS NULL OR promote_stage <> $3)
		RETURNING `+rolloutCols, id, p.By, p.Stage, p.At.UTC()))
	if !errors.Is(err, rollout.ErrNotFound) {
		return r, err
	}
	cur, err := db.Rollout(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case cur.Phase == rollout.PhaseGated && cur.Stage == p.Stage && cur.Halt == nil && cur.Promote != nil && cur.Promote.Stage == p.Stage:
		return cur, rollout.ErrPromoted
	}
	return cur, rollout.ErrNotGated
}
