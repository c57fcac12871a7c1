package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const freezeCols = `id, created_by, reason, from_at, until_at, ended_by, created_at`

// AddFreeze records a freeze set ad hoc and sets f.ID. Every process reads
// freezes from here, so one set anywhere holds everywhere at once.
func (db *DB) AddFreeze(ctx context.Context, f *rollout.Freeze) error {
	if f.By == "" {
		return fmt.Errorf("freeze: who sets it is empty")
	}
	if !f.Until.IsZero() && !f.Until.After(f.From) {
		return fmt.Errorf("freeze: it ends (%s) before it begins (%s)", f.Until.UTC(), f.From.UTC())
	}
	return db.b.queryRow(ctx, `INSERT INTO freezes (created_by, reason, from_at, until_at, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		f.By, storable(f.Reason), f.From.UTC(), nullTime(f.Until), f.CreatedAt.UTC()).Scan(&f.ID)
}

// Freezes returns the freezes set ad hoc that are in effect at t or begin
// after it, by start.
func (db *DB) Freezes(ctx context.Context, t time.Time) ([]rollout.Freeze, error) {
	return db.freezes(ctx, `SELECT `+freezeCols+` FROM freezes
		WHERE until_at IS NULL OR (until_at > $1 AND until_at > from_at) ORDER BY from_at, id`, t.UTC())
}

// Unfreeze ends, at t, by whom, the freeze id, or when id is 0 every freeze
// in effect at t. A freeze that has not begun is ended before it begins.
// It returns the freezes it ended; rollout.ErrNotFound when there was none.
func (db *DB) Unfreeze(ctx context.Context, id int64, by string, t time.Time) ([]rollout.Freeze, error) {
	out, err := db.freezes(ctx, `UPDATE freezes SET ended_by = $1,
		until_at = CASE WHEN from_at > $2 THEN from_at ELSE $2 END
		WHERE (until_at IS NULL OR until_at > $2) AND (until_at IS NULL OR until_at > from_at)
			AND (($3 = 0 AND from_at <= $2) OR id = $3) RETURNING `+freezeCols, by, t.UTC(), id)
	if err == nil && len(out) == 0 {
		if id != 0 {
			return nil, fmt.Errorf("no freeze #%d in effect or to come: %w", id, rollout.ErrNotFound)
		}
		return nil, fmt.Errorf("no freeze set with /rollout freeze is in effect: %w", rollout.ErrNotFound)
	}
	return out, err
}

func (db *DB) freezes(ctx context.Context, q string, args ...any) ([]rollout.Freeze, error) {
	rs, err := db.b.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.Freeze
	for rs.Next() {
		var f rollout.Freeze
		var until sql.NullTime
		if err := rs.Scan(&f.ID, &f.By, &f.Reason, &f.From, &until, &f.EndedBy, &f.CreatedAt); err != nil {
			return nil, err
		}
		f.Until = timeOf(until)
		out = append(out, f)
	}
	return out, rs.Err()
}

// SetOverride records an override on an active rollout: kind
// rollout.OverrideFreeze lets it through the freezes that began before
// o.At, rollout.OverrideWindow (anytime) outside the windows. The driver
// takes it up at its next look at the store. rollout.ErrNotRunning when the
// rollout is not active.
func (db *DB) SetOverride(ctx context.Context, id int64, kind rollout.OverrideKind, o rollout.Override) (*rollout.Rollout, error) {
	col := "freeze_override"
	if kind == rollout.OverrideWindow {
		col = "anytime"
	}
	r, err := scanRollout(db.b.queryRow(ctx, `UPDATE rollouts SET `+col+`_by = $2, `+col+`_reason = $3, `+col+`_at = $4
		WHERE id = $1 AND active RETURNING `+rolloutCols, id, o.By, storable(o.Reason), o.At.UTC()))
	if errors.Is(err, rollout.ErrNotFound) {
		return nil, rollout.ErrNotRunning
	}
	return r, err
}

// overrideArgs are an override's by, reason and at, or empty ones for none.
func overrideArgs(o *rollout.Override) (string, string, any) {
	if o == nil {
		return "", "", nil
	}
	return o.By, storable(o.Reason), o.At.UTC()
}

func overrideOf(by, reason string, at sql.NullTime) *rollout.Override {
	if !at.Valid {
		return nil
	}
	return &rollout.Override{By: by, Reason: reason, At: at.Time}
}

// overridesArgs are a new rollout's freeze override and anytime columns.
func overridesArgs(r *rollout.Rollout) []any {
	fb, fr, fa := overrideArgs(r.FreezeOverride)
	ab, ar, aa := overrideArgs(r.Anytime)
	return []any{fb, fr, fa, ab, ar, aa}
}
