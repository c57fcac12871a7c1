package rollout

import (
	"context"
	"sync"
	"time"
)

// lease is a driver's own view of how long it holds its rollout: from when it
// asked the store for the lease, not from when the store answered, so it
// never believes it holds the lease longer than the store does (the store's
// clock sets the expiry; this process's clock only measures a duration).
// Every host command waits on it, so a driver whose lease ran out, or that
// was stopped past it, starts no command anywhere until a renewal shows that
// nobody took the rollout over in between.
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

// renewed records a renewal asked for at sent. The store renews only a lease
// this driver still holds, so a renewal that comes after the lease ran out
// shows that nobody took the rollout over in between.
func (l *lease) renewed(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return
	}
	if u := sent.Add(l.ttl); u.After(l.until) {
		l.until = u
	}
	l.signalLocked()
}

// ranOut reports whether the lease ran out before t.
func (l *lease) ranOut(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !t.Before(l.until)
}

// lost ends the lease for good.
func (l *lease) lost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.gone {
		l.gone = true
		l.signalLocked()
	}
}

// signalLocked wakes whoever waits on the lease; mu is held.
func (l *lease) signalLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// hold returns nil when a command may start now: the lease has more than its
// margin left. Close to the end, or after it, it waits for the renewal; it
// fails with ErrLeaseLost once the lease is lost for good.
func (l *lease) hold(ctx context.Context) error {
	for {
		l.mu.Lock()
		until, gone, changed := l.until, l.gone, l.changed
		l.mu.Unlock()
		if gone {
			return ErrLeaseLost
		}
		left := time.Until(until)
		if left > l.margin {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
