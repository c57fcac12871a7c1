package sshrunner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSameContent(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // over the 32 KiB piece
	changedEnd := bytes.Clone(big)
	changedEnd[len(changedEnd)-1] = 'x'
	for _, tt := range []struct {
		name       string
		file, want []byte
		same       bool
	}{
		{"equal", []byte("a b\n"), []byte("a b\n"), true},
		{"empty", nil, nil, true},
		{"shorter", []byte("a b"), []byte("a b\n"), false},
		{"longer", []byte("a b\n\n"), []byte("a b\n"), false},
		{"same size", []byte("a c\n"), []byte("a b\n"), false},
		{"big, equal", big, big, true},
		{"big, the last byte differs", changedEnd, big, false},
		{"big, longer", append(bytes.Clone(big), '\n'), big, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := sameContent(path, tt.want); got != tt.same {
				t.Errorf("sameContent = %v, want %v", got, tt.same)
			}
		})
	}
	if sameContent(filepath.Join(t.TempDir(), "nope"), nil) {
		t.Error("a missing file has the same content as nothing")
	}
}

// coarseStamp is a filesystem whose stamps tell nothing but size and mtime,
// as with a coarse clock where a rewrite in the same tick keeps the mtime.
func coarseStamp(fi os.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// watchString watches path as text; "bad" in it does not parse.
func watchString(t *testing.T, path string, racyWindow time.Duration) *watchedFile[string] {
	t.Helper()
	parse := func(data []byte) (string, error) {
		if bytes.Contains(data, []byte("bad")) {
			return "", errors.New("bad content")
		}
		return string(data), nil
	}
	w := &watchedFile[string]{name: "test file", path: path, parse: parse, describe: func(string) []any { return nil },
		log: slog.New(slog.DiscardHandler), failClosed: true, racyWindow: racyWindow, stamp: coarseStamp}
	if err := w.init(); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// writeKeepingMtime rewrites path in place and sets its mtime back.
func writeKeepingMtime(t *testing.T, path, content string) {
	t.Helper()
	before := mustStat(t, path)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Time{}, before.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// Within racyWindow of its mtime a file's content is compared, so a rewrite
// the stamp cannot show is still read; after it, the stamp alone decides and
// connections do not read the file.
func TestWatchedFileRacy(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		racyWindow time.Duration
		want       string
	}{
		{"racy: the content tells", time.Hour, "bbbb"},
		{"settled: the stamp alone decides", 0, "aaaa"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, []byte("aaaa"), 0o600); err != nil {
				t.Fatal(err)
			}
			w := watchString(t, path, tt.racyWindow)
			writeKeepingMtime(t, path, "bbbb")
			if got, err := w.get(ctx); err != nil || got != tt.want {
				t.Errorf("get = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// A racy version settles once a read racyWindow after the mtime confirms
// it, and lets its copy of the content go.
func TestWatchedFileSettles(t *testing.T) {
	const window = time.Hour
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("aaaa"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Racy for another two seconds: the first read, however slow the
	// machine, falls within them.
	if err := os.Chtimes(path, time.Time{}, time.Now().Add(-window+2*time.Second)); err != nil {
		t.Fatal(err)
	}
	w := watchString(t, path, window)
	if v := w.cur.Load(); !v.racy || v.data == nil {
		t.Fatalf("read within the window: racy %v, data %q; want racy, with the content", v.racy, v.data)
	}
	deadline := time.Now().Add(12 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for w.cur.Load().racy {
		if time.Now().After(deadline) {
			t.Fatal("still racy 10 s after the window")
		}
		if got, err := w.get(context.Background()); err != nil || got != "aaaa" {
			t.Fatalf("get = %q, %v", got, err)
		}
		<-tick.C
	}
	if v := w.cur.Load(); v.data != nil || v.val != "aaaa" {
		t.Errorf("settled version keeps %q, value %q", v.data, v.val)
	}
}

// A connection cancelled while it waits for a missing file to come back
// decides nothing for the others.
func TestWatchedFileGoneCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("aaaa"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := watchString(t, path, 0)
	w.goneGrace = time.Hour
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("get while cancelled = %v, want context.Canceled", err)
	}
	if err := os.WriteFile(path, []byte("bbbb"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := w.get(context.Background()); err != nil || got != "bbbb" {
		t.Errorf("get once the file is back = %q, %v", got, err)
	}
}
