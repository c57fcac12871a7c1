package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// hostOrder is the SQL order of each host sort; the index ends every order
// so that pages neither overlap nor skip. Hosts without the sorted time go
// last on both backends, whichever the direction.
var hostOrder = map[rollout.HostSort]string{
	rollout.SortIndex: "idx",
	rollout.SortHost:  "host_id",
	rollout.SortStatus: `CASE status WHEN 'failed' THEN 0 WHEN 'rolled_back' THEN 1 WHEN 'updating' THEN 2
		WHEN 'pending' THEN 3 WHEN 'success' THEN 4 ELSE 5 END`,
	rollout.SortDuration: "(finished_at - started_at)",
	rollout.SortFinished: "finished_at",
}

// nullable are the sorts whose value may be missing.
var nullable = map[rollout.HostSort]bool{rollout.SortDuration: true, rollout.SortFinished: true}

// HostPage returns one page of a rollout's hosts as q selects them, with the
// number of hosts that match. Filtering, sorting and paging happen in the
// database: a page reads its own rows, not the fleet.
func (db *DB) HostPage(ctx context.Context, rolloutID int64, q rollout.HostQuery) (rollout.HostPage, error) {
	if err := q.Validate(); err != nil {
		return rollout.HostPage{}, fmt.Errorf("host page: %w", err)
	}
	where := []string{"rollout_id = $1"}
	args := []any{rolloutID}
	if len(q.Statuses) > 0 {
		ph := make([]string, len(q.Statuses))
		for i, s := range q.Statuses {
			args = append(args, string(s))
			ph[i] = fmt.Sprintf("$%d", len(args))
		}
		where = append(where, "status IN ("+strings.Join(ph, ", ")+")")
	}
	if s := strings.TrimSpace(q.Search); s != "" {
		args = append(args, "%"+likeEscaper.Replace(strings.ToLower(s))+"%")
		n := len(args)
		where = append(where, fmt.Sprintf(`(lower(host_id) LIKE $%d ESCAPE '\' OR lower(address) LIKE $%d ESCAPE '\')`, n, n))
	}
	cond := strings.Join(where, " AND ")
	var page rollout.HostPage
	if err := db.b.queryRow(ctx, `SELECT count(*) FROM rollout_hosts WHERE `+cond, args...).Scan(&page.Total); err != nil {
		return rollout.HostPage{}, err
	}
	sort := q.Sort
	if sort == "" {
		sort = rollout.SortIndex
	}
	dir := " ASC"
	if q.Desc {
		dir = " DESC"
	}
	order := hostOrder[sort] + dir
	if nullable[sort] {
		order = "(" + hostOrder[sort] + " IS NULL), " + order
	}
	if sort != rollout.SortIndex {
		order += ", idx" + dir
	}
	args = append(args, q.Limit, q.Offset)
	hosts, err := db.hostResults(ctx, fmt.Sprintf(`SELECT `+hostResultCols+` FROM rollout_hosts WHERE `+cond+
		` ORDER BY `+order+` LIMIT $%d OFFSET $%d`, len(args)-1, len(args)), args...)
	if err != nil {
		return rollout.HostPage{}, err
	}
	page.Hosts = hosts
	return page, nil
}

// likeEscaper makes a search text match itself in a LIKE pattern.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// HostResult returns the host at index idx of a rollout, or rollout.ErrNotFound.
func (db *DB) HostResult(ctx context.Context, rolloutID int64, idx int) (rollout.HostResult, error) {
	rs, err := db.hostResults(ctx, `SELECT `+hostResultCols+` FROM rollout_hosts WHERE rollout_id = $1 AND idx = $2`, rolloutID, idx)
	if err != nil {
		return rollout.HostResult{}, err
	}
	if len(rs) == 0 {
		return rollout.HostResult{}, rollout.ErrNotFound
	}
	return rs[0], nil
}

// HostTimings returns when each ended host of a rollout ran, in the order
// they ended: three columns a host, for charts.
func (db *DB) HostTimings(ctx context.Context, rolloutID int64) ([]rollout.HostTiming, error) {
	rs, err := db.b.query(ctx, `SELECT status, started_at, finished_at FROM rollout_hosts
		WHERE rollout_id = $1 AND finished_at IS NOT NULL ORDER BY finished_at, idx`, rolloutID)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.HostTiming
	for rs.Next() {
		var status string
		var started, finished sql.NullTime
		if err := rs.Scan(&status, &started, &finished); err != nil {
			return nil, err
		}
		out = append(out, rollout.HostTiming{Status: rollout.Status(status), StartedAt: timeOf(started), FinishedAt: timeOf(finished)})
	}
	return out, rs.Err()
}

// RolloutsBefore returns up to limit rollouts older than the rollout before
// (every rollout when before is 0), newest first: the pages of a history.
func (db *DB) RolloutsBefore(ctx context.Context, before int64, limit int) ([]*rollout.Rollout, error) {
	where, args := "", []any{limit}
	if before > 0 {
		where, args = "WHERE id < $2", append(args, before)
	}
	rs, err := db.b.query(ctx, `SELECT `+rolloutCols+` FROM rollouts `+where+` ORDER BY id DESC LIMIT $1`, args...)
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

// AuditBefore returns up to limit audit entries older than the entry before
// (the newest when before is 0), newest first.
func (db *DB) AuditBefore(ctx context.Context, before int64, limit int) ([]rollout.AuditEntry, error) {
	where, args := "", []any{limit}
	if before > 0 {
		where, args = "WHERE id < $2", append(args, before)
	}
	rs, err := db.b.query(ctx, `SELECT id, at, actor, source, action, rollout_id, allowed, detail
		FROM audit_log `+where+` ORDER BY id DESC LIMIT $1`, args...)
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
