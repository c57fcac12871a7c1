package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const scheduleCols = `id, name, spec, timezone, version, created_by, source, created_at, checked_until`

// Schedules returns every schedule, by id.
func (db *DB) Schedules(ctx context.Context) ([]rollout.Schedule, error) {
	rs, err := db.b.query(ctx, `SELECT `+scheduleCols+` FROM schedules ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.Schedule
	for rs.Next() {
		var s rollout.Schedule
		var name sql.NullString
		var source string
		if err := rs.Scan(&s.ID, &name, &s.Spec, &s.TZ, &s.Version, &s.CreatedBy, &source, &s.CreatedAt, &s.CheckedUntil); err != nil {
			return nil, err
		}
		s.Name, s.Source = name.String, rollout.Source(source)
		out = append(out, s)
	}
	return out, rs.Err()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AddSchedule stores a new schedule; its due times count from its creation.
func (db *DB) AddSchedule(ctx context.Context, s *rollout.Schedule) error {
	return db.b.queryRow(ctx, `INSERT INTO schedules (name, spec, timezone, version, created_by, source, created_at, checked_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id`,
		nullString(s.Name), s.Spec, s.TZ, s.Version, s.CreatedBy, string(s.Source), s.CreatedAt.UTC()).Scan(&s.ID)
}

// RemoveSchedule deletes a schedule and its run records.
func (db *DB) RemoveSchedule(ctx context.Context, id int64) error {
	n, err := db.b.exec(ctx, `DELETE FROM schedules WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("schedule #%d: %w", id, rollout.ErrNotFound)
	}
	return nil
}

// SyncNamedSchedules makes the named schedules (from the configuration
// file) what want says: new ones added, changed ones updated, others removed.
// Schedules made from Slack are left alone.
func (db *DB) SyncNamedSchedules(ctx context.Context, want []rollout.Schedule, now time.Time) error {
	return db.withTx(ctx, func(t tx) error {
		keep := map[string]bool{}
		for _, s := range want {
			keep[s.Name] = true
			n, err := t.exec(ctx, `UPDATE schedules SET spec = $2, timezone = $3, version = $4 WHERE name = $1`,
				s.Name, s.Spec, s.TZ, s.Version)
			if err != nil {
				return err
			}
			if n == 0 {
				if _, err := t.exec(ctx, `INSERT INTO schedules (name, spec, timezone, version, created_by, source, created_at, checked_until)
					VALUES ($1, $2, $3, $4, 'config', $5, $6, $6)`, s.Name, s.Spec, s.TZ, s.Version, string(rollout.SourceSchedule), now.UTC()); err != nil {
					return err
				}
			}
		}
		rs, err := t.query(ctx, `SELECT name FROM schedules WHERE name IS NOT NULL`)
		if err != nil {
			return err
		}
		var drop []string
		for rs.Next() {
			var name string
			if err := rs.Scan(&name); err != nil {
				rs.Close()
				return err
			}
			if !keep[name] {
				drop = append(drop, name)
			}
		}
		rs.Close()
		for _, name := range drop {
			if _, err := t.exec(ctx, `DELETE FROM schedules WHERE name = $1`, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// ClaimScheduleRun records that owner handles schedule id's run due at due,
// and reports whether it won: across processes, exactly one claim per due
// time succeeds.
func (db *DB) ClaimScheduleRun(ctx context.Context, id int64, due time.Time, owner string, now time.Time) (bool, error) {
	n, err := db.b.exec(ctx, `INSERT INTO schedule_runs (schedule_id, due_at, outcome, owner, at) VALUES ($1, $2, 'claimed', $3, $4)
		ON CONFLICT (schedule_id, due_at) DO NOTHING`, id, due.UTC(), owner, now.UTC())
	return n == 1, err
}

// FinishScheduleRun records how a claimed run went.
func (db *DB) FinishScheduleRun(ctx context.Context, id int64, due time.Time, outcome string, rolloutID int64, detail string) error {
	var rid any
	if rolloutID != 0 {
		rid = rolloutID
	}
	_, err := db.b.exec(ctx, `UPDATE schedule_runs SET outcome = $3, rollout_id = $4, detail = $5 WHERE schedule_id = $1 AND due_at = $2`,
		id, due.UTC(), outcome, rid, detail)
	return err
}

// ScheduleRun is one due time of a schedule and what came of it.
type ScheduleRun struct {
	ScheduleID int64
	Due        time.Time
	Outcome    string
	RolloutID  int64
	Detail     string
	Owner      string
}

// ScheduleRuns returns a schedule's runs, oldest first.
func (db *DB) ScheduleRuns(ctx context.Context, id int64) ([]ScheduleRun, error) {
	rs, err := db.b.query(ctx, `SELECT schedule_id, due_at, outcome, rollout_id, detail, owner FROM schedule_runs
		WHERE schedule_id = $1 ORDER BY due_at`, id)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []ScheduleRun
	for rs.Next() {
		var r ScheduleRun
		var rid sql.NullInt64
		if err := rs.Scan(&r.ScheduleID, &r.Due, &r.Outcome, &rid, &r.Detail, &r.Owner); err != nil {
			return nil, err
		}
		r.RolloutID = rid.Int64
		out = append(out, r)
	}
	return out, rs.Err()
}

// SetScheduleChecked moves a schedule's handled-until mark forward, never back.
func (db *DB) SetScheduleChecked(ctx context.Context, id int64, until time.Time) error {
	_, err := db.b.exec(ctx, `UPDATE schedules SET checked_until = $2 WHERE id = $1 AND checked_until < $2`, id, until.UTC())
	return err
}
