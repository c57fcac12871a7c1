package rollout

import "time"

// Schedule starts a rollout when its cron spec comes due, in its time zone.
type Schedule struct {
	ID        int64
	Name      string // set for schedules from the configuration file
	Spec      string // five-field cron
	TZ        string // IANA time zone, e.g. Europe/Berlin
	Version   string // empty: the latest version when it comes due
	CreatedBy string
	Source    Source
	CreatedAt time.Time
	// CheckedUntil is how far its due times were handled (run, skipped or
	// reported missed); the next due time after it is the next to handle.
	CheckedUntil time.Time
	Next         time.Time // when it next comes due; computed, not stored
}
