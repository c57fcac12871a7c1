package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

const hostCols = `id, address, port, ssh_user, label, disabled`

// ActiveHosts returns the enabled hosts of the managed inventory, by id. Two
// entries for one machine, stored before PutHosts refused them, fail it.
func (db *DB) ActiveHosts(ctx context.Context) ([]rollout.Host, error) {
	hosts, err := db.hosts(ctx, db.b, `SELECT `+hostCols+` FROM hosts WHERE NOT disabled ORDER BY id`)
	if err != nil {
		return nil, err
	}
	if err := rollout.CheckDistinct(hosts); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return hosts, nil
}

// ListHosts returns every host of the managed inventory, by id.
func (db *DB) ListHosts(ctx context.Context) ([]rollout.Host, error) {
	return db.hosts(ctx, db.b, `SELECT `+hostCols+` FROM hosts ORDER BY id`)
}

func (db *DB) hosts(ctx context.Context, q querier, stmt string) ([]rollout.Host, error) {
	rs, err := q.query(ctx, stmt)
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
// The inventory it leaves must have one entry per machine (disabled ones
// included, as enabling one must not make a pair): a host whose address and
// port another id has already is refused, naming both.
func (db *DB) PutHosts(ctx context.Context, hosts []rollout.Host) error {
	for _, h := range hosts {
		if err := h.Validate(); err != nil {
			return err
		}
	}
	if err := rollout.CheckDistinct(hosts); err != nil {
		return err
	}
	now := time.Now().UTC()
	return db.withTx(ctx, func(t tx) error {
		if db.b.kind() == "postgres" {
			// Two imports at once would each check the inventory without
			// the other's hosts. SQLite's write transactions are serial.
			if _, err := t.exec(ctx, `LOCK TABLE hosts IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
		}
		stored, err := db.hosts(ctx, t, `SELECT `+hostCols+` FROM hosts ORDER BY id`)
		if err != nil {
			return err
		}
		if err := rollout.CheckDistinct(merge(stored, hosts)); err != nil {
			return err
		}
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

// merge returns stored with each of hosts in the place of the stored host
// with its id, or after them when it is new.
func merge(stored, hosts []rollout.Host) []rollout.Host {
	at := make(map[string]int, len(stored))
	for i, h := range stored {
		at[h.ID] = i
	}
	out := append([]rollout.Host(nil), stored...)
	for _, h := range hosts {
		if i, ok := at[h.ID]; ok {
			out[i] = h
		} else {
			out = append(out, h)
		}
	}
	return out
}

// RemoveHosts deletes hosts from the inventory, all or none: an id that is
// not there fails it with rollout.ErrNotFound, naming every such id.
// Rollouts keep their snapshot.
func (db *DB) RemoveHosts(ctx context.Context, ids []string) error {
	return db.withTx(ctx, func(t tx) error {
		var missing []string
		for _, id := range ids {
			n, err := t.exec(ctx, `DELETE FROM hosts WHERE id = $1`, id)
			if err != nil {
				return fmt.Errorf("host %s: %w", id, err)
			}
			if n == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no host %s: %w", strings.Join(missing, ", "), rollout.ErrNotFound)
		}
		return nil
	})
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

// UnpinHostKey forgets addr's pinned key, after an operator checked a key
// change; rollout.ErrNotFound when none is pinned for addr.
func (db *DB) UnpinHostKey(ctx context.Context, addr string) error {
	n, err := db.b.exec(ctx, `DELETE FROM host_keys WHERE host = $1`, addr)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no host key is pinned for %s: %w", addr, rollout.ErrNotFound)
	}
	return nil
}
