package rollout

import (
	"slices"
	"testing"
)

// The writes someone waits on go in the next transaction, alone, in the
// order they came; bulk results wait for the one after.
func TestUrgentFirst(t *testing.T) {
	q := []pendingWrite{{hr: HostResult{Index: 1}, bulk: true}, {hr: HostResult{Index: 2}}, {hr: HostResult{Index: 3}, bulk: true},
		{hr: HostResult{Index: 4}}}
	indexes := func(ps []pendingWrite) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.hr.Index)
		}
		return out
	}
	next, rest := urgentFirst(q)
	if !slices.Equal(indexes(next), []int{2, 4}) || !slices.Equal(indexes(rest), []int{1, 3}) {
		t.Fatalf("next %v, rest %v; want [2 4] then [1 3]", indexes(next), indexes(rest))
	}
	next, rest = urgentFirst(rest)
	if !slices.Equal(indexes(next), []int{1, 3}) || len(rest) != 0 {
		t.Fatalf("bulk only: next %v, rest %v", indexes(next), indexes(rest))
	}
}
