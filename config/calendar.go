package config

import (
	"fmt"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
)

// Freeze is a recurring change freeze: from each run of Cron (in Timezone)
// for Duration, e.g. every Friday 12:00 to Monday 06:00 Europe/Berlin is
// cron "0 12 * * 5", duration 66h.
type Freeze struct {
	Name     string        `yaml:"name"`
	Cron     string        `yaml:"cron"`
	Duration time.Duration `yaml:"duration"`
	Timezone string        `yaml:"timezone"`
	Reason   string        `yaml:"reason"`
}

// Calendar is the rollout windows and recurring freezes as the engine takes
// them, with rollout.timezone (or the first window's zone, or UTC) to show
// times in.
func (c *Config) Calendar() (rollout.Calendar, error) {
	var cal rollout.Calendar
	for i, s := range c.Rollout.Windows {
		w, err := rollout.ParseWindow(s)
		if err != nil {
			return cal, fmt.Errorf("rollout.windows[%d]: %w", i, err)
		}
		cal.Windows = append(cal.Windows, w)
	}
	for i, f := range c.Freezes {
		name := fmt.Sprintf("freezes[%d]", i)
		switch {
		case f.Name == "":
			return cal, fmt.Errorf("%s.name: empty", name)
		case f.Duration <= 0:
			return cal, fmt.Errorf("%s.duration: %s must be positive", name, f.Duration)
		case f.Duration > 366*24*time.Hour:
			return cal, fmt.Errorf("%s.duration: %s is more than a year", name, f.Duration)
		}
		next, err := schedule.Starts(f.Cron, f.Timezone)
		if err != nil {
			return cal, fmt.Errorf("%s.cron: %w", name, err)
		}
		spec := f.Cron
		if f.Timezone != "" {
			spec += " " + f.Timezone
		}
		cal.Recurring = append(cal.Recurring, rollout.RecurringFreeze{Name: f.Name, Reason: f.Reason, Spec: spec, Duration: f.Duration, Next: next})
	}
	switch {
	case c.Rollout.Timezone != "":
		loc, err := rollout.LoadZone(c.Rollout.Timezone)
		if err != nil {
			return cal, fmt.Errorf("rollout.timezone: %w", err)
		}
		cal.Zone = loc
	case len(cal.Windows) > 0:
		cal.Zone = cal.Windows[0].Loc
	default:
		cal.Zone = time.UTC
	}
	return cal, nil
}
