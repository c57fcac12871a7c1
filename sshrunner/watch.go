package sshrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// watchedFile is a file the runner re-reads when it changes on disk, so a key
// the operator adds, rotates or revokes while serve runs counts from the next
// connection on. Every get stats the file, a microsecond beside a handshake's
// milliseconds; only a changed file is read and parsed, by one goroutine
// while the others wait for its result.
type watchedFile[T any] struct {
	name     string // in logs and errors: "known_hosts", "key file"
	path     string
	parse    func(data []byte) (T, error)
	describe func(T) []any // log attributes of a reloaded value
	log      *slog.Logger

	// failClosed makes a file that is gone or unreadable refuse: get returns
	// an error instead of the last good value, until the file is back. For
	// known_hosts: a rename over it leaves no moment without the file, and
	// a writer that deletes, then creates, is waited for (goneGrace); a file
	// gone longer was most likely removed on purpose, and trusting keys that
	// are no longer on disk (the ones just revoked, perhaps) is worse than a
	// halted rollout whose hosts fail with a reason naming the file.
	failClosed bool
	// goneGrace is how long a missing file may take to come back before it
	// counts as gone: the gap of a writer that deletes, then creates.
	goneGrace time.Duration
	// racyWindow is the coarsest mtime granularity expected (FAT's 2 s): a
	// file read within it of its mtime may be rewritten with the same stamp.
	racyWindow time.Duration
	stamp      func(os.FileInfo) fileStamp // stampOf; tests stand in a coarser one

	mu  sync.Mutex // held by the goroutine that reloads
	cur atomic.Pointer[fileVersion[T]]
}

// fileVersion is what the runner knows of the file at one time.
type fileVersion[T any] struct {
	val   T         // the last good value
	read  time.Time // when the file was read
	stamp fileStamp // of the file read, whether it parsed or not
	data  []byte    // that file's content, kept while racy
	// racy says the file was read so soon after its mtime that a rewrite
	// within the same clock tick would leave stamp as it is: until a read
	// after racyWindow confirms it, the content is compared too.
	racy     bool
	compared atomic.Int64 // when the content was last compared, in Unix nanoseconds
	gone     bool         // the file could not be opened
	err      error        // non-nil: refuse, with this reason, instead of using val
}

// fileStamp tells versions of a file apart without reading it. Size and
// mtime alone miss a rename of another file with the same size and a
// preserved mtime (rsync -a, cp -p), hence the inode; ctime moves on every
// write and cannot be set back, unlike mtime.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// stampOf is fi's stamp.
func stampOf(fi os.FileInfo) fileStamp {
	dev, ino, ctime := fileIdentity(fi)
	return fileStamp{dev: dev, ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano(), ctime: ctime}
}

const (
	defaultGoneGrace  = time.Second
	defaultRacyWindow = 2 * time.Second
	goneProbe         = 10 * time.Millisecond // how often a missing file is looked for
	// racyCheckEvery spaces the content comparisons of a racy file: one
	// connection compares while the others take what they have, or a
	// rollout at full concurrency would read a 10,000-host file per host
	// for the window's two seconds.
	racyCheckEvery = 10 * time.Millisecond
)

// watchFile watches path, read and parsed once now, for New to refuse a bad file.
func watchFile[T any](name, path string, parse func([]byte) (T, error), describe func(T) []any, failClosed bool, log *slog.Logger) (*watchedFile[T], error) {
	w := &watchedFile[T]{name: name, path: path, parse: parse, describe: describe, log: log, failClosed: failClosed,
		goneGrace: defaultGoneGrace, racyWindow: defaultRacyWindow, stamp: stampOf}
	if err := w.init(); err != nil {
		return nil, err
	}
	return w, nil
}

// init reads and parses the file for the first time.
func (w *watchedFile[T]) init() error {
	start := time.Now()
	data, fi, err := readFile(w.path)
	if err != nil {
		return err
	}
	val, err := w.parse(data)
	if err != nil {
		return err
	}
	w.cur.Store(w.version(val, data, fi, start))
	return nil
}

// version is a good or bad read of the file: data, as fi was, read at start.
func (w *watchedFile[T]) version(val T, data []byte, fi os.FileInfo, start time.Time) *fileVersion[T] {
	v := &fileVersion[T]{val: val, read: start, stamp: w.stamp(fi)}
	if start.Before(fi.ModTime().Add(w.racyWindow)) {
		v.racy, v.data = true, data
	}
	return v
}

// get returns the value the file holds now, or the last good one while it
// does not parse, or the reason to refuse.
func (w *watchedFile[T]) get(ctx context.Context) (T, error) {
	began := time.Now()
	if v := w.cur.Load(); w.fresh(v, false) {
		return v.val, v.err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// A connection that held the lock read the file after this one found
	// it changed: that read is as new as another would be.
	v := w.cur.Load()
	if v.read.Before(began) && !w.fresh(v, true) {
		var keep bool
		if v, keep = w.reload(ctx, v); keep {
			w.cur.Store(v)
		}
	}
	return v.val, v.err
}

// fresh reports whether v still describes the file. The content of a racy
// v is compared too: always if force, else every racyCheckEvery.
func (w *watchedFile[T]) fresh(v *fileVersion[T], force bool) bool {
	checked := time.Now()
	fi, err := os.Stat(w.path)
	switch {
	case err != nil || v.gone:
		return err != nil && v.gone
	case w.stamp(fi) != v.stamp:
		return false
	case !v.racy:
		return true
	}
	last := v.compared.Load()
	if !force && (checked.UnixNano()-last < int64(racyCheckEvery) || !v.compared.CompareAndSwap(last, checked.UnixNano())) {
		return true
	}
	if !sameContent(w.path, v.data) {
		return false
	}
	// Confirmed racyWindow after the mtime: a later write moves the mtime
	// past the stamp's, so the stamp alone tells from now on.
	if !checked.Before(time.Unix(0, v.stamp.mtime).Add(w.racyWindow)) {
		w.cur.CompareAndSwap(v, &fileVersion[T]{val: v.val, read: v.read, stamp: v.stamp, err: v.err})
	}
	return true
}

// reload reads the changed file and returns the version to use; keep is
// false for one not to store (ctx ended while waiting for the file).
func (w *watchedFile[T]) reload(ctx context.Context, old *fileVersion[T]) (v *fileVersion[T], keep bool) {
	start := time.Now()
	data, fi, err := readFile(w.path)
	if errors.Is(err, fs.ErrNotExist) && !old.gone && w.failClosed {
		w.log.DebugContext(ctx, w.name+" is missing; waiting for it to come back", "path", w.path, "grace", w.goneGrace)
		if err := w.awaitFile(ctx); err != nil {
			return &fileVersion[T]{val: old.val, read: start, err: fmt.Errorf("%s %s: %w", w.name, w.path, err)}, false
		}
		start = time.Now()
		data, fi, err = readFile(w.path)
	}
	if err != nil {
		v := &fileVersion[T]{val: old.val, read: start, gone: true}
		if w.failClosed {
			v.err = fmt.Errorf("%s: %w: every host is refused until the file is back", w.name, err)
			w.log.ErrorContext(ctx, w.name+" is gone or unreadable; refusing every host until it is back", "path", w.path, "err", err)
		} else {
			w.log.WarnContext(ctx, w.name+" is gone or unreadable; keeping the last good one", "path", w.path, "err", err)
		}
		return v, true
	}
	val, err := w.parse(data)
	if err != nil {
		// Most likely caught mid-write: its next write changes it again.
		v := w.version(old.val, data, fi, start)
		if old.err != nil {
			// Refusing already (the file was gone): stale keys are no better now.
			v.err = fmt.Errorf("%s %s: %w: every host is refused until it parses", w.name, w.path, err)
			w.log.ErrorContext(ctx, w.name+" does not parse; refusing every host until it does", "path", w.path, "err", err)
			return v, true
		}
		w.log.WarnContext(ctx, w.name+" does not parse; keeping the last good one until it changes", "path", w.path, "err", err)
		return v, true
	}
	w.log.InfoContext(ctx, w.name+" reloaded", append([]any{"path", w.path}, w.describe(val)...)...)
	return w.version(val, data, fi, start), true
}

// awaitFile polls until the file exists again, for goneGrace at most.
func (w *watchedFile[T]) awaitFile(ctx context.Context) error {
	grace := time.NewTimer(w.goneGrace)
	defer grace.Stop()
	tick := time.NewTicker(goneProbe)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grace.C:
			return nil // still gone: the read after this says so
		case <-tick.C:
			if _, err := os.Stat(w.path); !errors.Is(err, fs.ErrNotExist) {
				return nil
			}
		}
	}
}

// readFile reads path and stats the file it read, before reading: a write
// during the read moves the stamp on, and the next get reads it again.
func readFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return data, fi, nil
}

// sameContent reports whether path holds want, reading it in pieces so that
// many connections checking at once hold little memory.
func sameContent(path string, want []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := io.ReadFull(f, buf)
		if n > len(want) || !bytes.Equal(buf[:n], want[:n]) {
			return false
		}
		want = want[n:]
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return len(want) == 0
		case err != nil:
			return false
		}
	}
}
