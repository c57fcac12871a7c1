package rollout

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// lease is a driver's own view of how long it holds its rollout: from when it
// asked the store for the lease, not from when the store answered, so it
// never believes it holds the lease longer than the store does (the store's
// clock sets the expiry; this process's clock only measures a duration).
// Every host command waits on it, so a driver whose lease ran out, or that
// was stopped past it, starts no command anywhere.
type lease struct {
	ttl    time.Duration
	margin time.Duration // a command needs at least this much lease left to start

	mu      sync.Mutex
	until   time.Time     // monotonic
	gone    bool          // lost for good
	changed chan struct{} // closed and replaced at each renewal or loss
}

func newLease(claimed time.Time, ttl time.Duration) *lease {
	return &lease{ttl: ttl, margin: ttl / 4, until: claimed.Add(ttl), changed: make(chan struct{})}
}

// renewed records a renewal asked for at sent.
func (l *lease) renewed(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return
	}
	if u := sent.Add(l.ttl); u.After(l.until) {
		l.until = u
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// lost ends the lease for good.
func (l *lease) lost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.gone {
		l.gone = true
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// hold returns nil when a command may start now: the lease has more than its
// margin left. Close to the end it waits for the renewal; once the lease
// ran out it fails with ErrLeaseLost, even if a renewal comes later, since
// another process may have taken the rollout over in between.
func (l *lease) hold(ctx context.Context) error {
	for {
		l.mu.Lock()
		until, gone, changed := l.until, l.gone, l.changed
		l.mu.Unlock()
		left := time.Until(until)
		switch {
		case gone:
			return ErrLeaseLost
		case left <= 0:
			l.lost()
			return fmt.Errorf("%w (its lease ran out %s ago, on this driver's clock, without a renewal)", ErrLeaseLost, (-left).Round(time.Millisecond))
		}
		if left > l.margin {
			return nil
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}
