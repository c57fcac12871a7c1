package bot

import (
	"errors"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestParseFreezeCommands(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  error
	}{
		{"freeze", Command{Kind: KindFreezeList}, nil},
		{"freeze list", Command{Kind: KindFreezeList}, nil},
		{"freezes", Command{Kind: KindFreezeList}, nil},
		{"freeze incident 4711", Command{Kind: KindFreeze, Reason: "incident 4711"}, nil},
		{"freeze for 2h incident 4711", Command{Kind: KindFreeze, For: "2h", Reason: "incident 4711"}, nil},
		{"freeze for 3d Black Friday", Command{Kind: KindFreeze, For: "3d", Reason: "Black Friday"}, nil},
		{"freeze until 18:00 release party", Command{Kind: KindFreeze, Until: "18:00", Reason: "release party"}, nil},
		{`freeze until "2026-12-02 06:00 Europe/Berlin" Black Friday`, Command{Kind: KindFreeze, Until: "2026-12-02 06:00 Europe/Berlin", Reason: "Black Friday"}, nil},
		{"freeze for 2h", Command{}, ErrUsage},
		{"freeze for soon incident", Command{}, ErrUsage},
		{"freeze for", Command{}, ErrUsage},
		{"freeze until", Command{}, ErrUsage},
		{"unfreeze", Command{Kind: KindUnfreeze}, nil},
		{"unfreeze #3", Command{Kind: KindUnfreeze, Freeze: 3}, nil},
		{"unfreeze x", Command{}, ErrUsage},
		{"unfreeze 1 2", Command{}, ErrUsage},
		{"start v2 anytime", Command{Kind: KindStart, Version: "v2", Anytime: true}, nil},
		{"start anytime", Command{Kind: KindStart, Anytime: true}, nil},
		{`start v2 override "hotfix for 4711"`, Command{Kind: KindStart, Version: "v2", Override: "hotfix for 4711"}, nil},
		{`start v2 anytime override hotfix now`, Command{Kind: KindStart, Version: "v2", Anytime: true, Override: "hotfix now"}, nil},
		{`start override "hotfix"`, Command{Kind: KindStart, Override: "hotfix"}, nil},
		{"start v2 override", Command{}, ErrUsage},
		{"start v2 anytime v3", Command{}, ErrUsage},
		{"start v1;id anytime", Command{}, rollout.ErrInvalidVersion},
	} {
		got, err := Parse(tc.in)
		switch {
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("Parse(%q) error %v, want %v", tc.in, err, tc.err)
		case tc.err == nil && err != nil:
			t.Errorf("Parse(%q) error %v", tc.in, err)
		case tc.err == nil && got != tc.want:
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for k, want := range map[Kind]bool{KindFreeze: true, KindUnfreeze: true, KindFreezeList: false} {
		if k.Mutating() != want {
			t.Errorf("%s.Mutating() = %v", k, !want)
		}
	}
}
