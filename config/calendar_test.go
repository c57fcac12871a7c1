package config_test

import (
	"strings"
	"testing"
	"time"
)

func TestCalendar(t *testing.T) {
	c := mustLoad(t, minimal+`rollout:
  windows:
    - Mon-Thu 02:00-05:00 Europe/Berlin
    - Sat 10:00-12:00 Europe/Berlin
freezes:
  - name: weekend
    cron: "0 12 * * 5"
    duration: 66h
    timezone: Europe/Berlin
    reason: nobody is around
`, nil)
	cal, err := c.Calendar()
	if err != nil {
		t.Fatal(err)
	}
	if len(cal.Windows) != 2 || cal.Zone.String() != "Europe/Berlin" || len(cal.Recurring) != 1 {
		t.Fatalf("calendar %+v", cal)
	}
	// Saturday 5 Dec 2026 is in the weekend freeze, from Friday 12:00 CET.
	sat := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	fs := cal.Freezes(sat, nil)
	if len(fs) != 1 || fs[0].Name != "weekend" || !fs[0].From.Equal(time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("freezes on Saturday: %+v", fs)
	}

	for _, tc := range []struct{ yaml, err string }{
		{"rollout:\n  windows: [\"Mon-Thu 02:00\"]\n", "rollout.windows[0]: window"},
		{"rollout:\n  timezone: Mars/Base\n", "rollout.timezone: unknown time zone"},
		{"freezes:\n  - {name: x, cron: \"0 12 * * 5\", duration: 0s}\n", "freezes[0].duration"},
		{"freezes:\n  - {name: x, cron: \"0 12 * *\", duration: 1h}\n", "freezes[0].cron"},
		{"freezes:\n  - {cron: \"0 12 * * 5\", duration: 1h}\n", "freezes[0].name: empty"},
		{"freezes:\n  - {name: x, cron: \"0 12 * * 5\", duration: 1h, timezone: Nowhere}\n", "freezes[0].cron: unknown time zone"},
	} {
		_, err := load(t, minimal+tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.err)
		}
	}
}
