package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/checks"
	"github.com/rolloutbot/rolloutbot/checks/promtest"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// errorRates is the service's own metrics endpoint, as the test sets it.
type errorRates struct {
	mu     sync.Mutex
	errors int
}

func (e *errorRates) set(errors int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errors = errors
}

func (e *errorRates) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(w, "# TYPE app_requests_total counter\napp_requests_total{version=\"v2\"} 1000\n")
	fmt.Fprintf(w, "# TYPE app_errors_total counter\napp_errors_total{version=\"v2\"} %d\n", e.errors)
}

// The README's error-rate check, end to end: a rollout started from the
// terminal against a real Prometheus halts after the canary when the new
// version's error rate is too high, saying what it saw; once the rate is
// down, resume finishes it, the checks passing after the next stage.
func TestCLIPrometheusCheckHaltsAndPasses(t *testing.T) {
	app := &errorRates{}
	app.set(50)
	srv := httptest.NewServer(app)
	defer srv.Close()
	prom := promtest.Start(t, strings.TrimPrefix(srv.URL, "http://"))
	spec := checks.Spec{Name: "error_rate", Kind: "prometheus", Server: prom.URL, Condition: "< 0.01",
		Query: `max(app_errors_total{version="{version}"} / app_requests_total{version="{version}"})`}
	waitCheck := func(want string) {
		t.Helper()
		cs, err := checks.New([]checks.Spec{spec}, nil)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			res := cs[0].Checker.Check(context.Background(), rollout.CheckTarget{Version: "v2", Stage: 10})
			if res.Value == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus does not show %s: %+v", want, res)
			}
			<-tick.C
		}
	}
	waitCheck("0.05")

	f := newFixture(t, fixtureOptions{hosts: 10})
	data, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "rollout:\n", fmt.Sprintf(`rollout:
  checks:
    - name: error_rate
      kind: prometheus
      server: %s
      query: %s
      condition: "< 0.01"
`, prom.URL, `'`+spec.Query+`'`), 1)
	if err := os.WriteFile(f.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	plan := f.mustRun(0, "rollout", "plan", "v2")
	assertContains(t, "plan", plan, "then checks error_rate", "check error_rate: prometheus: max(app_errors_total{version=\"{version}\"}")
	out := f.mustRun(3, "rollout", "start", "v2")
	assertContains(t, "start", out, "■ rollout #1 halted: after stage 10%: check error_rate failed: saw 0.05, wanted < 0.01")
	if n := f.fleet.Totals().Updates; n != 1 {
		t.Fatalf("%d hosts updated, want the canary only", n)
	}

	app.set(1)
	waitCheck("0.001")
	out = f.mustRun(0, "rollout", "resume")
	assertContains(t, "resume", out, "■ rollout #1 completed")
	f.assertEachHostOnce()
}
