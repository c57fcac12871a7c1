package config

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/rolloutbot/rolloutbot/checks"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// Gating is what stands between a rollout's stages besides the pause:
// manual gates, and checks with their bake time. It sits inline in
// rollout: of the configuration file.
type Gating struct {
	// Gates maps a stage's percent to the gate that ends it; "manual" is
	// the one kind: an admin promotes the rollout to the next stage.
	Gates map[int]string `yaml:"gates"`
	// GateTimeout halts a rollout whose gate nobody promoted in time; 0: none.
	GateTimeout time.Duration `yaml:"gate_timeout"`
	// PromoteByOther is the two-person rule: the admin who started a
	// rollout (a schedule's creator, for a scheduled one) cannot promote it.
	PromoteByOther bool `yaml:"promote_by_other"`
	// Checks run after each stage, the last too; a bad result halts.
	Checks []checks.Spec `yaml:"checks"`
	// Bake keeps the checks running this long after a stage; 0: once.
	Bake time.Duration `yaml:"bake"`
	// CheckInterval is the time between two runs of the checks in a bake.
	CheckInterval time.Duration `yaml:"check_interval"`
}

// settings adds the gating settings to s.
func (g Gating) settings(s rollout.Settings) rollout.Settings {
	for p := range g.Gates {
		s.Gates = append(s.Gates, p)
	}
	sort.Ints(s.Gates)
	s.GateTimeout, s.PromoteByOther, s.Bake = g.GateTimeout, g.PromoteByOther, g.Bake
	return s
}

// validate names the gating setting that is wrong; the gates against the
// stages are checked with the other rollout settings.
func (g Gating) validate() []error {
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(g.Gates)) {
		if g.Gates[p] != "manual" {
			errs = append(errs, fmt.Errorf("rollout.gates: %d: %q is not a gate kind (manual)", p, g.Gates[p]))
		}
	}
	if g.CheckInterval < 0 || (g.CheckInterval > 0 && g.CheckInterval < time.Second) {
		errs = append(errs, fmt.Errorf("rollout.check_interval: %s: use at least 1s", g.CheckInterval))
	}
	if g.Bake > 0 && len(g.Checks) == 0 {
		errs = append(errs, fmt.Errorf("rollout.bake: %s is set but rollout.checks has no check to run during it", g.Bake))
	}
	if _, err := checks.New(g.Checks, nil); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// ConfirmsStart reports whether /rollout start shows the plan with Start
// and Cancel buttons before starting (slack.confirm_start, default true).
func (s Slack) ConfirmsStart() bool { return s.ConfirmStart == nil || *s.ConfirmStart }
