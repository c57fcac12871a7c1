package rollout

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// writer persists host results for many hosts at once: each caller waits for
// its own result to be durable, and results that arrive while a write is under
// way go together in the next transaction. At concurrency 200 that is one
// commit for dozens of hosts instead of one each.
type writer struct {
	store Store
	owner string
	log   *slog.Logger

	mu    sync.Mutex
	queue []pendingWrite
	kick  chan struct{}
}

type pendingWrite struct {
	hr   HostResult
	done chan error
}

func newWriter(store Store, owner string, log *slog.Logger) *writer {
	return &writer{store: store, owner: owner, log: log, kick: make(chan struct{}, 1)}
}

// save returns once hr is stored, or with the reason it never will be.
func (w *writer) save(ctx context.Context, hr HostResult) error {
	done := w.enqueue(hr)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue queues hr for the next write and returns at once; the channel
// gets nil once hr is stored, or the reason it never will be. Writes of one
// caller are stored in the order it queued them.
func (w *writer) enqueue(hr HostResult) <-chan error {
	done := make(chan error, 1)
	w.mu.Lock()
	w.queue = append(w.queue, pendingWrite{hr: hr, done: done})
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return done
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
		w.mu.Lock()
		pending := w.queue
		w.queue = nil
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
	w.queue = nil
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
