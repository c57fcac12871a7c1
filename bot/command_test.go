package bot

import (
	"errors"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  error
	}{
		{"", Command{Kind: KindHelp}, nil},
		{"   ", Command{Kind: KindHelp}, nil},
		{"help", Command{Kind: KindHelp}, nil},
		{"start v2.4.1", Command{Kind: KindStart, Version: "v2.4.1"}, nil},
		{"START v2.4.1", Command{Kind: KindStart, Version: "v2.4.1"}, nil},
		{"  start   v2.4.1  ", Command{Kind: KindStart, Version: "v2.4.1"}, nil},
		{"start", Command{Kind: KindStart}, nil},
		{"start v1; rm -rf /", Command{}, ErrUsage}, // three words
		{"start v1;rm", Command{}, rollout.ErrInvalidVersion},
		{"start $(reboot)", Command{}, rollout.ErrInvalidVersion},
		{"start `id`", Command{}, rollout.ErrInvalidVersion},
		{"start " + strings.Repeat("a", 200), Command{}, rollout.ErrInvalidVersion},
		{`start "v1 v2"`, Command{}, rollout.ErrInvalidVersion},
		{"start v2 v3", Command{}, ErrUsage},
		{"plan", Command{Kind: KindPlan}, nil},
		{"plan 2.0.0+build.7", Command{Kind: KindPlan, Version: "2.0.0+build.7"}, nil},
		{"plan -rf", Command{}, rollout.ErrInvalidVersion},
		{"status", Command{Kind: KindStatus}, nil},
		{"status failed", Command{Kind: KindStatus, Failed: true}, nil},
		{"status FAILED", Command{Kind: KindStatus, Failed: true}, nil},
		{"status web-17.example.com", Command{Kind: KindStatus, Host: "web-17.example.com"}, nil},
		{"status 10.0.0.4", Command{Kind: KindStatus, Host: "10.0.0.4"}, nil},
		{"status a b", Command{}, ErrUsage},
		{"status <script>", Command{}, ErrUsage},
		{"halt", Command{Kind: KindHalt}, nil},
		{"halt db migration is slow", Command{Kind: KindHalt, Reason: "db migration is slow"}, nil},
		{"stop now", Command{Kind: KindHalt, Reason: "now"}, nil},
		{"halt " + strings.Repeat("x", 600), Command{}, ErrUsage},
		{"plan rollback", Command{Kind: KindPlanRollback}, nil},
		{"plan ROLLBACK", Command{Kind: KindPlanRollback}, nil},
		{"plan rollback v2", Command{}, ErrUsage},
		{"plan rollback-2", Command{Kind: KindPlan, Version: "rollback-2"}, nil},
		{"rollback", Command{Kind: KindRollback}, nil},
		{"Rollback", Command{Kind: KindRollback}, nil},
		{"rollback error rate doubled", Command{Kind: KindRollback, Reason: "error rate doubled"}, nil},
		{`rollback "5xx up" on eu`, Command{Kind: KindRollback, Reason: "5xx up on eu"}, nil},
		{"rollback " + strings.Repeat("x", 600), Command{}, ErrUsage},
		{"start rollback", Command{Kind: KindStart, Version: "rollback"}, nil},
		{"resume", Command{Kind: KindResume}, nil},
		{"resume now", Command{}, ErrUsage},
		{"history", Command{Kind: KindHistory, N: 5}, nil},
		{"history 20", Command{Kind: KindHistory, N: 20}, nil},
		{"history 0", Command{}, ErrUsage},
		{"history 51", Command{}, ErrUsage},
		{"history lots", Command{}, ErrUsage},
		{"hosts", Command{Kind: KindHosts}, nil},
		{"hosts all", Command{}, ErrUsage},
		{"schedule", Command{Kind: KindScheduleList}, nil},
		{"schedule list", Command{Kind: KindScheduleList}, nil},
		{`schedule add "0 3 * * 1-5"`, Command{Kind: KindScheduleAdd, Cron: "0 3 * * 1-5"}, nil},
		{`schedule add "0 3 * * 1-5" v2.4.1`, Command{Kind: KindScheduleAdd, Cron: "0 3 * * 1-5", Version: "v2.4.1"}, nil},
		{`schedule add “0 3 * * *” v2 Europe/Berlin`, Command{Kind: KindScheduleAdd, Cron: "0 3 * * *", Version: "v2", TZ: "Europe/Berlin"}, nil},
		{`schedule add "30 2 * * 6" America/New_York`, Command{Kind: KindScheduleAdd, Cron: "30 2 * * 6", TZ: "America/New_York"}, nil},
		{`schedule add "0 3 * * *" UTC v9`, Command{Kind: KindScheduleAdd, Cron: "0 3 * * *", TZ: "UTC", Version: "v9"}, nil},
		{`schedule add 0 3 * * *`, Command{}, ErrUsage}, // unquoted: the first field alone is no spec
		{`schedule add "0 3 * *"`, Command{}, ErrUsage},
		{`schedule add "0 3 * * *`, Command{}, ErrUsage}, // quote not closed
		{`schedule add "0 3 * * *" v1;id`, Command{}, rollout.ErrInvalidVersion},
		{`schedule add "0 3 * * *" v1 v2`, Command{}, ErrUsage},
		{`schedule add "0 3 * * *" Europe/Berlin Asia/Tokyo`, Command{}, ErrUsage},
		{"schedule remove 3", Command{Kind: KindScheduleRemove, Schedule: 3}, nil},
		{"schedule remove #3", Command{Kind: KindScheduleRemove, Schedule: 3}, nil},
		{"schedule remove x", Command{}, ErrUsage},
		{"schedule remove", Command{}, ErrUsage},
		{"schedule frobnicate", Command{}, ErrUsage},
		{"deploy v2", Command{}, ErrUsage},
		{"🚀", Command{}, ErrUsage},
		{"\x00", Command{}, ErrUsage},
	} {
		got, err := Parse(tc.in)
		switch {
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("Parse(%q) error %v, want %v", tc.in, err, tc.err)
		case tc.err == nil && err != nil:
			t.Errorf("Parse(%q) error %v", tc.in, err)
		case tc.err == nil && got != tc.want:
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		case err != nil && len(err.Error()) > 300:
			t.Errorf("Parse(%q): message too long for an ephemeral reply: %d", tc.in, len(err.Error()))
		}
	}
}

func TestMutating(t *testing.T) {
	for k, want := range map[Kind]bool{
		KindStart: true, KindHalt: true, KindResume: true, KindRollback: true, KindScheduleAdd: true, KindScheduleRemove: true,
		KindPlan: false, KindPlanRollback: false, KindStatus: false, KindHistory: false, KindHosts: false, KindHelp: false, KindScheduleList: false,
	} {
		if k.Mutating() != want {
			t.Errorf("%s.Mutating() = %v", k, !want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"start v2", `schedule add "0 3 * * *" v2 UTC`, "status failed", "halt “x”"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err == nil && c.Version != "" && rollout.ValidateVersion(c.Version) != nil {
			t.Fatalf("Parse(%q) let an invalid version through: %q", s, c.Version)
		}
	})
}
