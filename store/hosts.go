package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const hostCols = `id, address, port, ssh_user, label, disabled`

// ActiveHosts returns the enabled hosts of the managed inventory, by id.
func (db *DB) ActiveHosts(ctx context.Context) ([]rollout.Host, error) {
	return db.hosts(ctx, `SELECT `+hostCols+` FROM hosts WHERE NOT disabled ORDER BY id`)
}

// ListHosts returns every host of the managed inventory, by id.
func (db *DB) ListHosts(ctx context.Context) ([]rollout.Host, error) {
	return db.hosts(ctx, `SELECT `+hostCols+` FROM hosts ORDER BY id`)
}

func (db *DB) hosts(ctx context.Context, q string) ([]rollout.Host, error) {
	rs, err := db.b.query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []rollout.Host
	for rs.Next() {
		var h rollout.Host
		if err := rs.Scan(&h.ID, &h.Address, &h.Port, &h.User, &h.Label, &h.Disabled); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rs.Err()
}

// PutHosts adds hosts or replaces those with the same id, all or nothing.
func (db *DB) PutHosts(ctx context.Context, hosts []rollout.Host) error {
	for _, h := range hosts {
		if err := h.Validate(); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	return db.withTx(ctx, func(t tx) error {
		for _, h := range hosts {
			_, err := t.exec(ctx, `INSERT INTO hosts (id, address, port, ssh_user, label, disabled, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
				ON CONFLICT (id) DO UPDATE SET address = excluded.address, port = excluded.port,
					ssh_user = excluded.ssh_user, label = excluded.label, disabled = excluded.disabled,
					updated_at = excluded.updated_at`,
				h.ID, h.Address, h.SSHPort(), h.User, h.Label, h.Disabled, now)
			if err != nil {
				return fmt.Errorf("host %s: %w", h.ID, err)
			}
		}
		return nil
	})
}

// RemoveHost deletes a host from the inventory; rollouts keep their snapshot.
func (db *DB) RemoveHost(ctx context.Context, id string) error {
	n, err := db.b.exec(ctx, `DELETE FROM hosts WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("host %s: %w", id, rollout.ErrNotFound)
	}
	return nil
}

// SetHostDisabled leaves a host out of new rollouts, or puts it back.
func (db *DB) SetHostDisabled(ctx context.Context, id string, disabled bool) error {
	n, err := db.b.exec(ctx, `UPDATE hosts SET disabled = $2, updated_at = $3 WHERE id = $1`, id, disabled, time.Now().UTC())
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("host %s: %w", id, rollout.ErrNotFound)
	}
	return nil
}

// PinnedHostKey returns the host key pinned for addr (host:port) on first use,
// or "" when none is.
func (db *DB) PinnedHostKey(ctx context.Context, addr string) (string, error) {
	var key string
	err := db.b.queryRow(ctx, `SELECT key FROM host_keys WHERE host = $1`, addr).Scan(&key)
	if errors.Is(err, rollout.ErrNotFound) {
		return "", nil
	}
	return key, err
}

// PinHostKey pins key for addr unless a key is pinned already, and returns
// the key that is pinned now: when two connections race, the first wins.
func (db *DB) PinHostKey(ctx context.Context, addr, key string) (string, error) {
	if _, err := db.b.exec(ctx, `INSERT INTO host_keys (host, key, pinned_at) VALUES ($1, $2, $3)
		ON CONFLICT (host) DO NOTHING`, addr, key, time.Now().UTC()); err != nil {
		return "", err
	}
	return db.PinnedHostKey(ctx, addr)
}

// UnpinHostKey forgets addr's pinned key, after an operator checked a key change.
func (db *DB) UnpinHostKey(ctx context.Context, addr string) error {
	_, err := db.b.exec(ctx, `DELETE FROM host_keys WHERE host = $1`, addr)
	return err
}
