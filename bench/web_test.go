package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"path/filepath"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/web"
)

// webHosts is the fleet the web view's pages are measured at.
const webHosts = 10000

// BenchmarkWebHostTable measures the web view at 10,000 hosts on each store:
// the time to the first byte and the size of the host table's first page
// (and of a filtered, sorted page, a search and the overview), served over
// loopback HTTP with a session, as a browser asks for them.
func BenchmarkWebHostTable(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			dsn := "sqlite:" + filepath.Join(b.TempDir(), "r.db")
			if backend == "postgres" {
				dsn = pg.NewDatabase(b)
			}
			db, err := store.Open(context.Background(), dsn, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(db.Close)
			id := seedWebRollout(b, db, webHosts)
			signer := web.NewSigner([]byte("bench-secret-0123456789abcdef0123456789"), time.Hour, nil)
			h, err := web.New(web.Config{Store: db, Signer: signer})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(h)
			b.Cleanup(srv.Close)
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			res, err := client.Get(srv.URL + signer.Sign("/"))
			if err != nil {
				b.Fatal(err)
			}
			res.Body.Close()
			if len(res.Cookies()) != 1 {
				b.Fatalf("no session from the signed link: %d", res.StatusCode)
			}
			session := res.Cookies()[0]
			for _, p := range []struct{ name, path string }{
				{"first-page", fmt.Sprintf("/rollouts/%d/hosts", id)},
				{"failed-by-duration", fmt.Sprintf("/rollouts/%d/hosts?status=failed&sort=duration&dir=desc&page=3", id)},
				{"search", fmt.Sprintf("/rollouts/%d/hosts?q=web-0999", id)},
				{"overview", fmt.Sprintf("/rollouts/%d", id)},
			} {
				b.Run(p.name, func(b *testing.B) {
					var ttfb, total time.Duration
					var size int64
					for b.Loop() {
						start := time.Now()
						var first time.Time
						ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
							GotFirstResponseByte: func() { first = time.Now() },
						})
						req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+p.path, nil)
						req.AddCookie(session)
						res, err := client.Do(req)
						if err != nil {
							b.Fatal(err)
						}
						n, err := io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if err != nil || res.StatusCode != 200 {
							b.Fatalf("%s: %d %v", p.path, res.StatusCode, err)
						}
						ttfb += first.Sub(start)
						total += time.Since(start)
						size = n
					}
					b.ReportMetric(float64(ttfb.Microseconds())/float64(b.N)/1000, "ttfb-ms")
					b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "page-ms")
					b.ReportMetric(float64(size)/1024, "page-KB")
				})
			}
		})
	}
}

// seedWebRollout records a running rollout of n hosts: a tenth failed with
// output, half of the rest updated, the others pending.
func seedWebRollout(b *testing.B, db *store.DB, n int) int64 {
	b.Helper()
	ctx := context.Background()
	hs := make([]rollout.Host, n)
	for i := range hs {
		hs[i] = rollout.Host{ID: fmt.Sprintf("web-%05d", i+1), Address: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), Port: 22}
	}
	now := time.Now().Add(-time.Hour)
	r := &rollout.Rollout{Version: "v2.4.1", Phase: rollout.PhaseRunning, Settings: rollout.DefaultSettings(), Hosts: n,
		StartedBy: "bench", Source: rollout.SourceCLI, Owner: "bench", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateRollout(ctx, r, hs, time.Hour); err != nil {
		b.Fatal(err)
	}
	results := make([]rollout.HostResult, n)
	for i := range results {
		hr := rollout.HostResult{RolloutID: r.ID, Index: i, Host: hs[i], Status: rollout.StatusPending}
		switch {
		case i%10 == 3:
			hr.Status, hr.Step, hr.Error = rollout.StatusFailed, rollout.StepHealth, "health check failed after 60s"
			hr.Output = "curl: (7) Failed to connect to 127.0.0.1 port 8080: Connection refused\n"
		case i < n/2:
			hr.Status = rollout.StatusSuccess
		}
		if hr.Status.Done() {
			hr.StartedAt = now.Add(time.Duration(i) * 300 * time.Millisecond)
			hr.FinishedAt = hr.StartedAt.Add(time.Duration(2000+i%5000) * time.Millisecond)
			hr.PrevVersion, hr.NewVersion = "v2.4.0", "v2.4.1"
		}
		results[i] = hr
	}
	for off := 0; off < n; off += 1000 {
		if err := db.SaveHostResults(ctx, "bench", results[off:min(off+1000, n)]); err != nil {
			b.Fatal(err)
		}
	}
	return r.ID
}
