package rollout

import (
	"fmt"
	"strings"
)

// Stage is a range of host indexes [Start, End) of the shuffled snapshot.
type Stage struct {
	Index   int // position in the stage list
	Percent int // cumulative percent of the fleet done when the stage ends
	Start   int
	End     int
}

// Size is the number of hosts in the stage.
func (s Stage) Size() int { return s.End - s.Start }

// Stages splits n hosts into cumulative stages: stage k ends at index
// ceil(p_k/100 * n), and the first has at least one host when n ≥ 1. Stages may
// be empty (n=2 gives 1, 0, 1); the engine skips those and the pause before them.
// Unlike Ansible's serial, which sizes each batch and rounds down, this is
// cumulative and rounds up: a small fleet still starts with a small canary.
func Stages(n int, percents []int) []Stage {
	out := make([]Stage, len(percents))
	start := 0
	for i, p := range percents {
		end := (p*n + 99) / 100 // integer ceil(p*n/100)
		if i == 0 && n > 0 && end < 1 {
			end = 1
		}
		end = min(max(end, start), n)
		out[i] = Stage{Index: i, Percent: p, Start: start, End: end}
		start = end
	}
	return out
}

// Exceeds reports whether failures among size hosts break the threshold:
// failures*100 > threshold*size, strictly greater, in integers.
func Exceeds(failures, size, threshold int) bool {
	return failures*100 > threshold*size
}

// HaltsAt is the number of failures that halts a stage of size hosts, or 0
// when no number of failures can (threshold 100).
func HaltsAt(size, threshold int) int {
	f := threshold*size/100 + 1
	if f > size {
		return 0
	}
	return f
}

// Plan describes what a rollout would do, before anyone starts it.
type Plan struct {
	Version  string
	Hosts    int
	Settings Settings
	Stages   []Stage
	Checks   []Check // run after each stage, the last too
}

// NewPlan lays out a rollout of version over n hosts.
func NewPlan(version string, n int, s Settings) (Plan, error) {
	if err := ValidateVersion(version); err != nil {
		return Plan{}, err
	}
	if err := s.Validate(); err != nil {
		return Plan{}, err
	}
	if n == 0 {
		return Plan{}, ErrNoHosts
	}
	return Plan{Version: version, Hosts: n, Settings: s, Stages: Stages(n, s.Stages)}, nil
}

// String renders the plan as a few plain lines, for the terminal and Slack.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Plan for %s on %s (%d at once, %s pause, halt when more than %d%% of a stage fails):\n",
		p.Version, hostCount(p.Hosts), p.Settings.Concurrency, p.Settings.Pause, p.Settings.Threshold)
	for _, st := range p.Stages {
		if st.Size() == 0 {
			fmt.Fprintf(&b, "  stage %3d%%: no hosts, skipped\n", st.Percent)
			continue
		}
		halt := "never halts"
		if f := HaltsAt(st.Size(), p.Settings.Threshold); f > 0 {
			halt = fmt.Sprintf("halts at %d failed", f)
		}
		fmt.Fprintf(&b, "  stage %3d%%: %s (up to #%d), %s\n", st.Percent, hostCount(st.Size()), st.End, halt)
		if after := p.After(st); after != "" {
			fmt.Fprintf(&b, "             then %s\n", after)
		}
	}
	for _, c := range p.Checks {
		fmt.Fprintf(&b, "  check %s: %s\n", c.Name, c.Description)
	}
	return b.String()
}

// hostCount is "1 host", "3 hosts".
func hostCount(n int) string {
	if n == 1 {
		return "1 host"
	}
	return fmt.Sprintf("%d hosts", n)
}
