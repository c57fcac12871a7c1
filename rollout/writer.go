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
//
// Writes a host waits on before it can go on (a start, a failure) go first:
// when any are queued, the next transaction holds only those, and results
// stored while their worker went on (bulk) wait for the one after.
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
	bulk bool
	done chan error
}

func newWriter(store Store, owner string, log *slog.Logger) *writer {
	return &writer{store: store, owner: owner, log: log, kick: make(chan struct{}, 1)}
}

// save returns once hr is stored, or with the reason it never will be.
func (w *writer) save(ctx context.Context, hr HostResult) error {
	return w.wait(ctx, w.enqueue(hr))
}

// saveBulk is save for a result nothing waits on but its report: it goes
// after the starts and failures queued with it.
func (w *writer) saveBulk(ctx context.Context, hr HostResult) error {
	return w.wait(ctx, w.queued(pendingWrite{hr: hr, bulk: true}))
}

func (w *writer) wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue queues hr for the next write and returns at once; the channel
// gets nil once hr is stored, or the reason it never will be. Writes are
// stored in the order they were queued, except that bulk ones go last: a
// host's result is never saved in bulk before a write of its own that waits.
func (w *writer) enqueue(hr HostResult) <-chan error {
	return w.queued(pendingWrite{hr: hr})
}

func (w *writer) queued(p pendingWrite) <-chan error {
	p.done = make(chan error, 1)
	w.mu.Lock()
	w.queue = append(w.queue, p)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return p.done
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
		pending, rest := urgentFirst(w.queue)
		w.queue = rest
		if len(rest) > 0 {
			select {
			case w.kick <- struct{}{}:
			default:
			}
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

// urgentFirst splits the queue into what the next transaction writes (the
// writes someone waits on, when there are any; else all) and what is left.
func urgentFirst(queue []pendingWrite) (next, rest []pendingWrite) {
	for _, p := range queue {
		if p.bulk {
			rest = append(rest, p)
		} else {
			next = append(next, p)
		}
	}
	if len(next) == 0 {
		return rest, nil
	}
	return next, rest
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
