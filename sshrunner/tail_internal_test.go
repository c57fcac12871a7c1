package sshrunner

import (
	"strings"
	"sync"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"empty", 8, nil, ""},
		{"fits", 8, []string{"abc", "def"}, "abcdef"},
		{"exactly max", 8, []string{"abcdefgh"}, "abcdefgh"},
		{"one over", 8, []string{"abcdefghi"}, "…bcdefghi"},
		{"over, not yet compacted", 8, []string{"abcdef", "ghijkl"}, "…efghijkl"},
		{"compacted", 8, []string{"0123456789", "abcdefghij"}, "…cdefghij"},
		{"one huge write", 4, []string{strings.Repeat("x", 1000) + "tail"}, "…tail"},
		{"many small writes", 5, strings.Split(strings.Repeat("ab", 50)+"12345", ""), "…12345"},
		{"compacted, then small", 4, []string{"0123456789", "Z"}, "…789Z"},
		// The cut falls inside "é" (2 bytes) or "€" (3 bytes): the partial
		// character goes, the tail stays valid UTF-8.
		{"cut inside a character", 4, []string{"caf\u00e9 ok"}, "… ok"},
		{"cut inside a 3-byte character", 4, []string{"1\u20ac23"}, "…23"},
		{"cut at a character", 4, []string{"x\u00e9ok"}, "…\u00e9ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: tt.max}
			total := 0
			for _, w := range tt.writes {
				n, err := b.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				total += n
				if len(b.buf) > 2*tt.max {
					t.Fatalf("after %d bytes the buffer holds %d, more than twice max %d", total, len(b.buf), tt.max)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// Stdout and stderr are copied in by two goroutines at once.
func TestTailBufferConcurrent(t *testing.T) {
	b := &tailBuffer{max: 64}
	var wg sync.WaitGroup
	for _, line := range []string{"out\n", "err\n"} {
		wg.Go(func() {
			for range 1000 {
				b.Write([]byte(line))
			}
		})
	}
	wg.Wait()
	got := b.String()
	if !strings.HasPrefix(got, "…") || len(got) != len("…")+64 {
		t.Fatalf("String() = %q (%d bytes), want a cut 64-byte tail", got, len(got))
	}
	for _, l := range strings.Split(strings.TrimPrefix(got, "…"), "\n")[1:] {
		if l != "out" && l != "err" && l != "" {
			t.Fatalf("interleaved writes tore a line: %q in %q", l, got)
		}
	}
}

func TestHeadBuffer(t *testing.T) {
	h := &headBuffer{max: 4}
	for _, w := range []string{"v2", ".4.1\n", "more"} {
		if n, err := h.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: a short write would fail the session's copy", w, n, err)
		}
	}
	if got := string(h.buf); got != "v2.4" {
		t.Errorf("buf = %q, want the first 4 bytes", got)
	}
}
