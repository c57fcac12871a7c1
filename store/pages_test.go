package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// pagedRollout makes a rollout of n hosts named web-000… with addresses
// 10.1.0.x, and gives host i the status statuses[i%len], each ended host
// taking i seconds to update.
func pagedRollout(t *testing.T, dsn string, n int, statuses ...rollout.Status) (*rollout.Rollout, []rollout.HostResult) {
	t.Helper()
	ctx := context.Background()
	db := open(t, dsn)
	hs := make([]rollout.Host, n)
	for i := range hs {
		hs[i] = rollout.Host{ID: fmt.Sprintf("web-%03d", i), Address: fmt.Sprintf("10.1.%d.%d", i/200, i%200), Port: 22}
	}
	hs[7].ID = "db_1" // an underscore, which LIKE would read as "any character"
	r := newRollout("me")
	r.Hosts = n
	if err := db.CreateRollout(ctx, r, hs, time.Minute); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	results := make([]rollout.HostResult, n)
	for i := range results {
		hr := rollout.HostResult{RolloutID: r.ID, Index: i, Host: hs[i], Status: statuses[i%len(statuses)]}
		if hr.Status != rollout.StatusPending {
			hr.StartedAt = base.Add(time.Duration(i) * time.Second)
		}
		if hr.Status.Done() {
			hr.FinishedAt = hr.StartedAt.Add(time.Duration(i) * time.Second)
			hr.PrevVersion, hr.NewVersion = "v1", r.Version
		}
		if hr.Status.Failure() {
			hr.Step, hr.Error, hr.Output = rollout.StepHealth, "health check failed", "curl: (7) refused\n"
		}
		results[i] = hr
	}
	if err := db.SaveHostResults(ctx, "me", results); err != nil {
		t.Fatal(err)
	}
	return r, results
}

func ids(hs []rollout.HostResult) []int {
	out := make([]int, len(hs))
	for i, h := range hs {
		out[i] = h.Index
	}
	return out
}

func TestHostPage(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := []rollout.Status{rollout.StatusSuccess, rollout.StatusFailed, rollout.StatusPending, rollout.StatusRolledBack, rollout.StatusUpdating}
		r, results := pagedRollout(t, dsn, 250, st...)
		db := open(t, dsn)

		// Pages in index order cover every host once, with the total.
		var seen []int
		for off := 0; ; off += 40 {
			p, err := db.HostPage(ctx, r.ID, rollout.HostQuery{Offset: off, Limit: 40})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 250 {
				t.Fatalf("total %d, want 250", p.Total)
			}
			if len(p.Hosts) == 0 {
				break
			}
			seen = append(seen, ids(p.Hosts)...)
		}
		for i, idx := range seen {
			if idx != i {
				t.Fatalf("paged index order: host %d at position %d (%d seen)", idx, i, len(seen))
			}
		}
		if len(seen) != 250 {
			t.Fatalf("paged %d hosts, want 250", len(seen))
		}

		// A status filter counts and returns only those hosts; round trip of a host.
		p, err := db.HostPage(ctx, r.ID, rollout.HostQuery{Statuses: []rollout.Status{rollout.StatusFailed, rollout.StatusRolledBack}, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 100 || len(p.Hosts) != 100 {
			t.Fatalf("failures: total %d, %d hosts; want 100", p.Total, len(p.Hosts))
		}
		for _, h := range p.Hosts {
			if !h.Status.Failure() {
				t.Fatalf("filter returned %s host %d", h.Status, h.Index)
			}
			want := results[h.Index]
			if h.Host.ID != want.Host.ID || h.Error != want.Error || h.Output != want.Output || h.Step != want.Step ||
				!h.FinishedAt.Equal(want.FinishedAt) || h.PrevVersion != "v1" {
				t.Fatalf("host %d round trip: %+v, want %+v", h.Index, h, want)
			}
		}

		// Search: by id or address, any case; % and _ match only themselves.
		for _, c := range []struct {
			search string
			want   []int
		}{
			{"WEB-01", []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}},
			{"10.1.1.3", []int{203, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239}},
			{"db_", []int{7}},
			{"web_", nil},
			{"%", nil},
		} {
			p, err := db.HostPage(ctx, r.ID, rollout.HostQuery{Search: c.search, Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Hosts); fmt.Sprint(got) != fmt.Sprint(c.want) && !(len(got) == 0 && len(c.want) == 0) || p.Total != len(c.want) {
				t.Errorf("search %q: %v (total %d), want %v", c.search, got, p.Total, c.want)
			}
		}

		// Sorts: failures first; the slowest first with hosts not ended last.
		p, err = db.HostPage(ctx, r.ID, rollout.HostQuery{Sort: rollout.SortStatus, Limit: 3})
		if err != nil || fmt.Sprint(ids(p.Hosts)) != "[1 6 11]" {
			t.Fatalf("by status: %v %v", ids(p.Hosts), err)
		}
		p, err = db.HostPage(ctx, r.ID, rollout.HostQuery{Sort: rollout.SortDuration, Desc: true, Limit: 3})
		if err != nil || fmt.Sprint(ids(p.Hosts)) != "[248 246 245]" {
			t.Fatalf("by duration, slowest first: %v %v", ids(p.Hosts), err)
		}
		p, err = db.HostPage(ctx, r.ID, rollout.HostQuery{Sort: rollout.SortDuration, Offset: 149, Limit: 2})
		if err != nil || len(p.Hosts) != 2 || p.Hosts[0].FinishedAt.IsZero() || !p.Hosts[1].FinishedAt.IsZero() {
			t.Fatalf("by duration, hosts not ended go last: %v %v", ids(p.Hosts), err)
		}
		p, err = db.HostPage(ctx, r.ID, rollout.HostQuery{Sort: rollout.SortHost, Desc: true, Limit: 2})
		if err != nil || fmt.Sprint(ids(p.Hosts)) != "[249 248]" {
			t.Fatalf("by host, descending: %v %v", ids(p.Hosts), err)
		}

		// Bad queries are refused with the reason.
		for _, q := range []rollout.HostQuery{{Limit: 0}, {Limit: 501}, {Limit: 5, Offset: -1}, {Limit: 5, Sort: "addr; DROP"},
			{Limit: 5, Statuses: []rollout.Status{"x"}}} {
			if _, err := db.HostPage(ctx, r.ID, q); err == nil {
				t.Errorf("query %+v was accepted", q)
			}
		}
	})
}

func TestHostResultAndTimings(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		r, results := pagedRollout(t, dsn, 10, rollout.StatusSuccess, rollout.StatusFailed, rollout.StatusPending)
		db := open(t, dsn)
		hr, err := db.HostResult(ctx, r.ID, 4)
		if err != nil || hr.Host.ID != results[4].Host.ID || hr.Status != rollout.StatusFailed || hr.Output != results[4].Output {
			t.Fatalf("host 4: %+v %v", hr, err)
		}
		if _, err := db.HostResult(ctx, r.ID, 10); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("host past the end: %v", err)
		}
		ts, err := db.HostTimings(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 7 { // 10 hosts, every third pending
			t.Fatalf("%d timings, want 7", len(ts))
		}
		for i, tm := range ts {
			if !tm.Status.Done() || tm.FinishedAt.Sub(tm.StartedAt) <= 0 && tm.StartedAt.Unix() != tm.FinishedAt.Unix() {
				t.Fatalf("timing %d: %+v", i, tm)
			}
			if i > 0 && tm.FinishedAt.Before(ts[i-1].FinishedAt) {
				t.Fatalf("timings not in the order hosts ended: %+v", ts)
			}
		}
	})
}

func TestRolloutsAndAuditBefore(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		var made []int64
		for range 3 {
			r := create(t, db, "me")
			finish(t, db, r, rollout.PhaseCompleted)
			made = append(made, r.ID)
			if err := db.Audit(ctx, rollout.AuditEntry{At: time.Now(), Actor: "U1", Source: rollout.SourceSlack, Action: "start",
				RolloutID: r.ID, Allowed: true}); err != nil {
				t.Fatal(err)
			}
		}
		rs, err := db.RolloutsBefore(ctx, 0, 2)
		if err != nil || len(rs) != 2 || rs[0].ID != made[2] || rs[1].ID != made[1] {
			t.Fatalf("newest two: %v %v", rs, err)
		}
		rs, err = db.RolloutsBefore(ctx, rs[1].ID, 2)
		if err != nil || len(rs) != 1 || rs[0].ID != made[0] {
			t.Fatalf("the page after: %v %v", rs, err)
		}
		es, err := db.AuditBefore(ctx, 0, 2)
		if err != nil || len(es) != 2 || es[0].RolloutID != made[2] {
			t.Fatalf("newest audit entries: %+v %v", es, err)
		}
		es, err = db.AuditBefore(ctx, es[1].ID, 10)
		if err != nil || len(es) != 1 || es[0].RolloutID != made[0] || es[0].Actor != "U1" || !es[0].Allowed {
			t.Fatalf("older audit entries: %+v %v", es, err)
		}
	})
}
