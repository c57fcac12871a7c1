package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// QueryInventory reads the host list from the operator's own application
// database with a query in a read-only transaction, as the system rolloutbot
// grew out of read its VPS list from its users and subscriptions tables. The
// query returns id, address, port, user and label, in that order; NULL port
// means 22 (a port of 0 is refused), NULL user the runner's default. Two rows
// for one machine (see rollout.MachineKey) fail the query.
type QueryInventory struct {
	URL     string
	Query   string
	Timeout time.Duration // default 30s
}

var _ rollout.Inventory = QueryInventory{}

// ActiveHosts runs the query.
func (q QueryInventory) ActiveHosts(ctx context.Context) ([]rollout.Host, error) {
	timeout := q.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Parse first: pgx's parse errors and Redact can both show a password
	// (keyword/value strings, ?password=); name only the host and port.
	cfg, err := pgx.ParseConfig(q.URL)
	if err != nil {
		return nil, errors.New("inventory database: the URL does not parse as a PostgreSQL connection string")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("inventory database %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("inventory query: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Every column in text format, as PostgreSQL prints it: a uuid id or an
	// inet address then reads as it shows in psql, not as Go's binary value.
	rows, err := tx.Query(ctx, q.Query, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return nil, fmt.Errorf("inventory query: %w", err)
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 5 {
		rows.Close() // a query that failed has no columns: report why
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("inventory query: %w", err)
		}
		return nil, fmt.Errorf("inventory query returns %d columns; it must return id, address, port, user, label", n)
	}
	var out []rollout.Host
	for rows.Next() {
		vals := rows.RawValues()
		h := rollout.Host{ID: text(vals[0]), Address: text(vals[1]), User: text(vals[3]), Label: text(vals[4]), Port: 22}
		if p := text(vals[2]); p != "" {
			if h.Port, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("inventory query: host %s: port %q is not a number", h.ID, p)
			}
		}
		if err := h.Validate(); err != nil {
			return nil, fmt.Errorf("inventory query: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inventory query: %w", err)
	}
	if err := rollout.CheckDistinct(out); err != nil {
		return nil, fmt.Errorf("inventory query: %w", err)
	}
	return out, nil
}

func text(v []byte) string {
	return strings.TrimSpace(string(v)) // NULL is nil: ""
}
