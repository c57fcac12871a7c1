package rollout

import (
	"fmt"
	"time"
)

// HostQuery selects one page of a rollout's hosts, filtered and sorted by the
// store, so a view of a 10,000-host rollout never reads the whole fleet.
type HostQuery struct {
	Statuses []Status // the statuses shown; none means every status
	Search   string   // part of the host's id or address, any case
	Sort     HostSort
	Desc     bool
	Offset   int
	Limit    int // 1..MaxHostPage
}

// MaxHostPage is the most hosts one HostQuery returns.
const MaxHostPage = 500

// HostSort is the order of a host page. Every order ends with the host's
// index, so pages never overlap or skip a host.
type HostSort string

// Host page orders.
const (
	SortIndex    HostSort = "index"    // the shuffled order, the order of the stages
	SortHost     HostSort = "host"     // the host's id
	SortStatus   HostSort = "status"   // failures first
	SortDuration HostSort = "duration" // how long its update took; hosts not ended last
	SortFinished HostSort = "finished" // when it ended; hosts not ended last
)

// Validate names what is wrong with the query.
func (q HostQuery) Validate() error {
	switch q.Sort {
	case "", SortIndex, SortHost, SortStatus, SortDuration, SortFinished:
	default:
		return fmt.Errorf("sort %q: use index, host, status, duration or finished", q.Sort)
	}
	for _, s := range q.Statuses {
		switch s {
		case StatusPending, StatusUpdating, StatusSuccess, StatusFailed, StatusRolledBack, StatusSkipped:
		default:
			return fmt.Errorf("status %q is not a host status", s)
		}
	}
	if q.Offset < 0 {
		return fmt.Errorf("offset %d is negative", q.Offset)
	}
	if q.Limit < 1 || q.Limit > MaxHostPage {
		return fmt.Errorf("limit %d: a page has 1 to %d hosts", q.Limit, MaxHostPage)
	}
	return nil
}

// HostPage is one page of a rollout's hosts, and how many match the query.
type HostPage struct {
	Hosts []HostResult
	Total int
}

// HostTiming is when one host's update ran, for charts of a rollout.
type HostTiming struct {
	Status     Status
	StartedAt  time.Time // zero when the host ended without starting (skipped before its start was recorded)
	FinishedAt time.Time
}
