package bot

import (
	"errors"
	"reflect"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestParseGatesAndNow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  error
	}{
		{"start v2.4.1 gate", Command{Kind: KindStart, Version: "v2.4.1", Gate: "all"}, nil},
		{"start v2.4.1 gate 10,50", Command{Kind: KindStart, Version: "v2.4.1", Gate: "10,50"}, nil},
		{"start gate 10% v2.4.1", Command{Kind: KindStart, Version: "v2.4.1", Gate: "10%"}, nil},
		{"start v2.4.1 now", Command{Kind: KindStart, Version: "v2.4.1", Now: true}, nil},
		{"START now", Command{Kind: KindStart, Now: true}, nil},
		{"start v2 gate 10 now", Command{Kind: KindStart, Version: "v2", Gate: "10", Now: true}, nil},
		{"plan v2 gate", Command{Kind: KindPlan, Version: "v2", Gate: "all"}, nil},
		{"plan v2 now", Command{}, ErrUsage},
		{"start v2 gate gate", Command{}, ErrUsage},
		{"start v2 v3", Command{}, ErrUsage},
		{"start v2 gate 10;rm", Command{}, ErrUsage},
		{"promote", Command{Kind: KindPromote}, nil},
		{"promote now", Command{}, ErrUsage},
	} {
		got, err := Parse(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Parse(%q) error %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if !KindPromote.Mutating() {
		t.Error("promote must need an admin")
	}
}

func TestParseGatesOfStages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{{"all", []int{10, 50}}, {"", []int{10, 50}}, {"none", nil}, {"50,10%", []int{10, 50}}} {
		got, err := rollout.ParseGates(tc.in, []int{10, 50, 100})
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseGates(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := rollout.ParseGates("ten", []int{10, 100}); err == nil {
		t.Error("ParseGates(ten) accepted")
	}
}
