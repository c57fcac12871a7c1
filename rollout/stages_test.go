package rollout_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestStages(t *testing.T) {
	def := []int{10, 50, 100}
	for _, tc := range []struct {
		n     int
		sizes []int
	}{
		{0, []int{0, 0, 0}},
		{1, []int{1, 0, 0}},
		{2, []int{1, 0, 1}},
		{3, []int{1, 1, 1}},
		{7, []int{1, 3, 3}},
		{10, []int{1, 4, 5}},
		{11, []int{2, 4, 5}},
		{19, []int{2, 8, 9}},
		{1000, []int{100, 400, 500}},
		{10001, []int{1001, 4000, 5000}},
	} {
		st := rollout.Stages(tc.n, def)
		end := 0
		for i, s := range st {
			if s.Size() != tc.sizes[i] || s.Start != end || s.Percent != def[i] {
				t.Errorf("n=%d: stage %d is %+v (size %d), want size %d from %d", tc.n, i, s, s.Size(), tc.sizes[i], end)
			}
			end = s.End
		}
		if end != tc.n {
			t.Errorf("n=%d: stages end at %d", tc.n, end)
		}
	}
	// Custom stages: a 1% canary on 50 hosts still gets one host.
	if st := rollout.Stages(50, []int{1, 100}); st[0].Size() != 1 || st[1].Size() != 49 {
		t.Errorf("1%% canary of 50: %+v", st)
	}
}

func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		failures, size, threshold int
		halts                     bool
	}{
		{3, 10, 30, false}, // exactly 30 % is allowed
		{4, 10, 30, true},
		{0, 1, 30, false},
		{1, 1, 30, true}, // one failure in a 1–3 host stage halts
		{1, 2, 30, true},
		{1, 3, 30, true},
		{1, 4, 30, false},
		{2, 4, 30, true},
		{300, 1000, 30, false},
		{301, 1000, 30, true},
		{1, 10, 0, true}, // threshold 0: any failure halts
		{0, 10, 0, false},
		{10, 10, 100, false}, // threshold 100: never halts
	} {
		if got := rollout.Exceeds(tc.failures, tc.size, tc.threshold); got != tc.halts {
			t.Errorf("%d of %d at %d%%: halts=%v, want %v", tc.failures, tc.size, tc.threshold, got, tc.halts)
		}
		// HaltsAt agrees with Exceeds.
		if at := rollout.HaltsAt(tc.size, tc.threshold); at > 0 {
			if !rollout.Exceeds(at, tc.size, tc.threshold) || rollout.Exceeds(at-1, tc.size, tc.threshold) {
				t.Errorf("HaltsAt(%d, %d) = %d disagrees with Exceeds", tc.size, tc.threshold, at)
			}
		} else if rollout.Exceeds(tc.size, tc.size, tc.threshold) {
			t.Errorf("HaltsAt(%d, %d) = never, but all failing exceeds", tc.size, tc.threshold)
		}
	}
}

func TestValidateVersion(t *testing.T) {
	for _, v := range []string{"v2.4.1", "2.4.1", "1.0.0+build.5", "v2_rc-1", "A", strings.Repeat("a", 128)} {
		if err := rollout.ValidateVersion(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	for _, v := range []string{"", "v1; rm -rf /", strings.Repeat("a", 200), strings.Repeat("a", 129), "-rf", ".hidden",
		"v1\n", "v1 v2", "$(id)", "`id`", "v'1", `v"1`, "v1&&x", "v1|x", "v1>x", "v/1", "v\\1", "ü1", "v1\x00"} {
		err := rollout.ValidateVersion(v)
		if !errors.Is(err, rollout.ErrInvalidVersion) {
			t.Errorf("%q accepted (err %v)", v, err)
		} else if len(err.Error()) > 200 {
			t.Errorf("%q: message too long to show: %s", v, err)
		}
	}
}

func TestPlan(t *testing.T) {
	p, err := rollout.NewPlan("v2", 10, rollout.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	s := p.String()
	for _, want := range []string{"v2 on 10 hosts", "stage  10%: 1 host (up to #1)", "halts at 1 failed", "stage  50%: 4 hosts", "halts at 2 failed", "stage 100%: 5 hosts"} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
	if _, err := rollout.NewPlan("v2", 0, rollout.DefaultSettings()); !errors.Is(err, rollout.ErrNoHosts) {
		t.Errorf("empty fleet: %v", err)
	}
	if _, err := rollout.NewPlan("v2; id", 3, rollout.DefaultSettings()); !errors.Is(err, rollout.ErrInvalidVersion) {
		t.Errorf("bad version: %v", err)
	}
	bad := rollout.DefaultSettings()
	bad.Stages = []int{50, 10, 100}
	if _, err := rollout.NewPlan("v2", 3, bad); err == nil || !strings.Contains(err.Error(), "stages") {
		t.Errorf("decreasing stages: %v", err)
	}
}
