package rollout

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// writer persists host results for many hosts at once, in group commits:
// what is queued is written when somebody waits for it, or after at most
// delay (Config.WriteDelay), whichever comes first, in one transaction.
// Most writes are waited for by nobody yet: a host's start is queued before
// the host is reached and needed only when its update is sent, and a host
// that ended well is stored while its worker goes on. So at concurrency 200
// one commit carries dozens of hosts, where writing at once gave two or
// three: on SQLite a commit costs about 20 times the CPU of a row.
type writer struct {
	store Store
	owner string
	log   *slog.Logger
	delay time.Duration

	mu      sync.Mutex
	queue   []pendingWrite
	stopped error         // why the writer stopped: what is queued then gets it at once
	kick    chan struct{} // something is queued
	need    chan struct{} // somebody waits for what is queued
}

type pendingWrite struct {
	hr   HostResult
	done chan error
}

func newWriter(store Store, owner string, delay time.Duration, log *slog.Logger) *writer {
	return &writer{store: store, owner: owner, log: log, delay: delay,
		kick: make(chan struct{}, 1), need: make(chan struct{}, 1)}
}

// save returns once hr is stored, or with the reason it never will be.
func (w *writer) save(ctx context.Context, hr HostResult) error {
	return w.wait(ctx, w.enqueue(hr))
}

// enqueue queues hr and returns at once; the channel gets nil once hr is
// stored, or the reason it never will be. Writes of one caller are stored in
// the order it queued them. hr is written within the writer's delay, or
// sooner once somebody waits for it (wait); receiving from the channel
// directly waits without hurrying the writer.
func (w *writer) enqueue(hr HostResult) <-chan error {
	done := make(chan error, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped != nil {
		done <- w.stopped
		return done
	}
	w.queue = append(w.queue, pendingWrite{hr: hr, done: done})
	signal(w.kick)
	return done
}

// wait returns once the write behind done is over, with its outcome, and has
// the writer write at once if it has not yet.
func (w *writer) wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	default:
	}
	signal(w.need)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush has the writer write what is queued now.
func (w *writer) flush() { signal(w.need) }

// signal sends on c, a channel of one, unless a send is pending already.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// loop writes batches until ctx ends; a store that is away is retried.
func (w *writer) loop(ctx context.Context) {
	var batch []HostResult
	for {
		select {
		case <-ctx.Done():
			w.fail(ctx.Err())
			return
		case <-w.kick:
		}
		t := time.NewTimer(w.delay)
		select {
		case <-w.need:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		w.mu.Lock()
		pending := w.queue
		w.queue = nil
		select {
		case <-w.need: // this batch is what was needed
		default:
		}
		w.mu.Unlock()
		if len(pending) == 0 {
			continue
		}
		batch = batch[:0]
		for _, p := range pending {
			batch = append(batch, p.hr)
		}
		err := retry(ctx, w.log, "save host results", func(ctx context.Context) error {
			return w.store.SaveHostResults(ctx, w.owner, batch)
		})
		for _, p := range pending {
			p.done <- err
		}
	}
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	pending := w.queue
	w.queue, w.stopped = nil, err
	w.mu.Unlock()
	for _, p := range pending {
		p.done <- err
	}
}

// retry calls f until it succeeds, ctx ends, or the store refuses for good
// (lost lease, a constraint). Failures are logged when they start and when
// they end, not once per attempt.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	wait := 50 * time.Millisecond
	var since time.Time
	for {
		err := f(ctx)
		switch {
		case err == nil:
			if !since.IsZero() {
				log.InfoContext(ctx, "store is back", "op", what, "after", time.Since(since).Round(time.Millisecond))
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrActive), errors.Is(err, ErrNotFound):
			return err
		}
		if since.IsZero() {
			since = time.Now()
			log.WarnContext(ctx, "store unavailable; retrying, no host starts until it is back", "op", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
