package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const rolloutCols = `id, version, state, stages, concurrency, pause_ms, threshold, seed, host_count,
	stage, segment_start, started_by, source, reason, halted_by, halt_requested_by, halt_reason,
	owner, lease_until, channel, message_ts, created_at, updated_at, finished_at`

func scanRollout(sc interface{ Scan(...any) error }) (*rollout.Rollout, error) {
	var r rollout.Rollout
	var stages, source string
	var pauseMS int64
	var lease, finished sql.NullTime
	err := sc.Scan(&r.ID, &r.Version, &r.State, &stages, &r.Settings.Concurrency, &pauseMS,
		&r.Settings.Threshold, &r.Seed, &r.Hosts, &r.Stage, &r.SegmentStart, &r.StartedBy, &source,
		&r.Reason, &r.HaltedBy, &r.HaltRequestedBy, &r.HaltReason, &r.Owner, &lease, &r.Channel,
		&r.MessageTS, &r.CreatedAt, &r.UpdatedAt, &finished)
	if err != nil {
		return nil, err
	}
	if r.Settings.Stages, err = parseStages(stages); err != nil {
		return nil, err
	}
	r.Source = rollout.Source(source)
	r.Settings.Pause = time.Duration(pauseMS) * time.Millisecond
	r.LeaseUntil, r.FinishedAt = timeOf(lease), timeOf(finished)
	return &r, nil
}

// CreateRollout records a new active rollout and its host snapshot, all
// pending. A snapshot with two entries for one machine is refused.
func (db *DB) CreateRollout(ctx context.Context, r *rollout.Rollout, hosts []rollout.Host) error {
	if err := rollout.CheckDistinct(hosts); err != nil {
		return err
	}
	err := db.withTx(ctx, func(t tx) error {
		err := t.queryRow(ctx, `INSERT INTO rollouts (version, state, stages, concurrency, pause_ms, threshold,
			seed, host_count, stage, segment_start, started_by, source, owner, lease_until, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id`,
			r.Version, string(r.State), formatStages(r.Settings.Stages), r.Settings.Concurrency,
			r.Settings.Pause.Milliseconds(), r.Settings.Threshold, r.Seed, r.Hosts, r.Stage, r.SegmentStart,
			r.StartedBy, string(r.Source), r.Owner, nullTime(r.LeaseUntil), r.CreatedAt.UTC(), r.UpdatedAt.UTC(),
		).Scan(&r.ID)
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
	rs, err := db.b.query(ctx, `SELECT `+rolloutCols+` FROM rollouts ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*rollout.Rollout
	for rs.Next() {
		r, err := scanRollout(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// UpdateRollout writes the state, stage, segment, reason and times, while
// owner holds the rollout. Ending it clears any pending halt request.
func (db *DB) UpdateRollout(ctx context.Context, owner string, r *rollout.Rollout) error {
	n, err := db.b.exec(ctx, `UPDATE rollouts SET state = $3, stage = $4, segment_start = $5, reason = $6,
		halted_by = $7, finished_at = $8, updated_at = $9,
		halt_requested_by = CASE WHEN $10 THEN halt_requested_by ELSE '' END,
		halt_reason = CASE WHEN $10 THEN halt_reason ELSE '' END
		WHERE id = $1 AND owner = $2`,
		r.ID, owner, string(r.State), r.Stage, r.SegmentStart, storable(r.Reason), r.HaltedBy,
		nullTime(r.FinishedAt), r.UpdatedAt.UTC(), r.State.Active())
	if err != nil {
		if db.b.isUniqueViolation(err) {
			return db.activeError(ctx)
		}
		return err
	}
	if n == 0 {
		return db.missing(ctx, r.ID)
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

// ClaimRollout takes or renews the lease on an active rollout.
func (db *DB) ClaimRollout(ctx context.Context, id int64, owner string, now time.Time, ttl time.Duration) (*rollout.Rollout, error) {
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET owner = $2, lease_until = $3
		WHERE id = $1 AND active AND (owner = $2 OR owner = '' OR lease_until IS NULL OR lease_until < $4)
		RETURNING `+rolloutCols, id, owner, now.Add(ttl).UTC(), now.UTC()))
	if errors.Is(err, rollout.ErrNotFound) {
		cur, err := db.Rollout(ctx, id)
		switch {
		case err != nil:
			return nil, err
		case !cur.State.Active():
			return nil, fmt.Errorf("rollout #%d is %s: %w", id, cur.State, rollout.ErrNotRunning)
		default:
			return nil, rollout.ErrLeaseLost
		}
	}
	return r, err
}

// ReleaseRollout gives up owner's lease.
func (db *DB) ReleaseRollout(ctx context.Context, id int64, owner string) error {
	_, err := db.b.exec(ctx, `UPDATE rollouts SET owner = '', lease_until = NULL WHERE id = $1 AND owner = $2`, id, owner)
	return err
}

// RequestHalt records a halt request for the driver of an active rollout.
func (db *DB) RequestHalt(ctx context.Context, id int64, by, reason string) error {
	n, err := db.b.exec(ctx, `UPDATE rollouts SET halt_requested_by = $2, halt_reason = $3
		WHERE id = $1 AND active`, id, by, storable(reason))
	if err != nil {
		return err
	}
	if n == 0 {
		return rollout.ErrNotRunning
	}
	return nil
}

// ResumeRollout makes a halted rollout active again, leased to r.Owner.
func (db *DB) ResumeRollout(ctx context.Context, r *rollout.Rollout) error {
	n, err := db.b.exec(ctx, `UPDATE rollouts SET state = $2, stage = $3, segment_start = $4, reason = '',
		halted_by = '', halt_requested_by = '', halt_reason = '', owner = $5, lease_until = $6,
		finished_at = NULL, updated_at = $7
		WHERE id = $1 AND state = 'halted'`,
		r.ID, string(r.State), r.Stage, r.SegmentStart, r.Owner, nullTime(r.LeaseUntil), r.UpdatedAt.UTC())
	if err != nil {
		if db.b.isUniqueViolation(err) {
			return db.activeError(ctx)
		}
		return err
	}
	if n == 0 {
		return rollout.ErrNotHalted
	}
	return nil
}

// SetStatusMessage records where a rollout's Slack status message is.
func (db *DB) SetStatusMessage(ctx context.Context, id int64, channel, ts string) error {
	_, err := db.b.exec(ctx, `UPDATE rollouts SET channel = $2, message_ts = $3 WHERE id = $1`, id, channel, ts)
	return err
}

const hostResultCols = `rollout_id, idx, host_id, address, port, ssh_user, label, status, step,
	prev_version, new_version, error, output, started_at, finished_at`

func scanHostResult(sc interface{ Scan(...any) error }) (rollout.HostResult, error) {
	var hr rollout.HostResult
	var status, step string
	var started, finished sql.NullTime
	err := sc.Scan(&hr.RolloutID, &hr.Index, &hr.Host.ID, &hr.Host.Address, &hr.Host.Port, &hr.Host.User,
		&hr.Host.Label, &status, &step, &hr.PrevVersion, &hr.NewVersion, &hr.Error, &hr.Output, &started, &finished)
	hr.Status, hr.Step = rollout.Status(status), rollout.Step(step)
	hr.StartedAt, hr.FinishedAt = timeOf(started), timeOf(finished)
	return hr, err
}

// HostResults returns a rollout's hosts in index order.
func (db *DB) HostResults(ctx context.Context, rolloutID int64) ([]rollout.HostResult, error) {
	return db.hostResults(ctx, `SELECT `+hostResultCols+` FROM rollout_hosts WHERE rollout_id = $1 ORDER BY idx`, rolloutID)
}

// FindHostResult returns the result of the host whose id or address is name.
func (db *DB) FindHostResult(ctx context.Context, rolloutID int64, name string) (rollout.HostResult, error) {
	rs, err := db.hostResults(ctx, `SELECT `+hostResultCols+` FROM rollout_hosts
		WHERE rollout_id = $1 AND (host_id = $2 OR address = $2) ORDER BY idx LIMIT 1`, rolloutID, name)
	if err != nil {
		return rollout.HostResult{}, err
	}
	if len(rs) == 0 {
		return rollout.HostResult{}, rollout.ErrNotFound
	}
	return rs[0], nil
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
	ok, err := db.b.saveResults(ctx, owner, results)
	if err != nil {
		return err
	}
	if !ok {
		return rollout.ErrLeaseLost
	}
	return nil
}

// storable makes s storable as text: output and reasons come from hosts and
// people, and PostgreSQL refuses a NUL or invalid UTF-8 outright, which would
// leave a result that can never be written. Both become U+FFFD.
func storable(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// updateResultSQL writes one host result; the owner check fences it.
const updateResultSQL = `UPDATE rollout_hosts SET status = $3, step = $4, prev_version = $5, new_version = $6,
	error = $7, output = $8, started_at = $9, finished_at = $10
	WHERE rollout_id = $1 AND idx = $2`

func resultArgs(hr rollout.HostResult) []any {
	return []any{hr.RolloutID, hr.Index, string(hr.Status), string(hr.Step), hr.PrevVersion, hr.NewVersion,
		storable(hr.Error), storable(hr.Output), nullTime(hr.StartedAt), nullTime(hr.FinishedAt)}
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
	rs, err := db.b.query(ctx, `SELECT id, at, actor, source, action, rollout_id, allowed, detail
		FROM audit_log ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.AuditEntry
	for rs.Next() {
		var e rollout.AuditEntry
		var source string
		var rid sql.NullInt64
		if err := rs.Scan(&e.ID, &e.At, &e.Actor, &source, &e.Action, &rid, &e.Allowed, &e.Detail); err != nil {
			return nil, err
		}
		e.Source, e.RolloutID = rollout.Source(source), rid.Int64
		out = append(out, e)
	}
	return out, rs.Err()
}

// Counts tallies a rollout's hosts by status.
func (db *DB) Counts(ctx context.Context, rolloutID int64) (rollout.Counts, error) {
	rs, err := db.b.query(ctx, `SELECT status, count(*) FROM rollout_hosts WHERE rollout_id = $1 GROUP BY status`, rolloutID)
	if err != nil {
		return rollout.Counts{}, err
	}
	defer rs.Close()
	var c rollout.Counts
	for rs.Next() {
		var status string
		var n int
		if err := rs.Scan(&status, &n); err != nil {
			return rollout.Counts{}, err
		}
		c.Add(rollout.Status(status), n)
	}
	return c, rs.Err()
}
