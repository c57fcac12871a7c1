package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/metrics"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// scrape reads /metrics as Prometheus would and returns one sample's value,
// or -1 when it is missing.
func scrape(t *testing.T, m *metrics.Metrics) func(name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d", rec.Code)
	}
	body := rec.Body.String()
	return func(name string) float64 {
		s := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
		if s == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(s[1], 64)
		return v
	}
}

func TestRolloutMetrics(t *testing.T) {
	m := metrics.New()
	t0 := time.Now()
	host := func(s rollout.Status, step rollout.Step, took time.Duration) *rollout.HostResult {
		return &rollout.HostResult{Status: s, Step: step, StartedAt: t0, FinishedAt: t0.Add(took)}
	}
	m.Notify(rollout.Event{Kind: rollout.EventStarted})
	for range 4 {
		m.Notify(rollout.Event{Kind: rollout.EventHostStarted})
	}
	m.Notify(rollout.Event{Kind: rollout.EventHostDone, Host: host(rollout.StatusSuccess, rollout.StepHealth, 300*time.Millisecond)})
	m.Notify(rollout.Event{Kind: rollout.EventHostDone, Host: host(rollout.StatusRolledBack, rollout.StepHealth, 2*time.Second)})
	m.Notify(rollout.Event{Kind: rollout.EventHostDone, Host: host(rollout.StatusFailed, rollout.StepConnect, 10*time.Second)})

	mid := scrape(t, m)
	for name, want := range map[string]float64{
		"rolloutbot_rollout_active":                    1,
		"rolloutbot_hosts_in_flight":                   1,
		`rolloutbot_hosts_total{status="success"}`:     1,
		`rolloutbot_hosts_total{status="rolled_back"}`: 1,
		`rolloutbot_hosts_total{status="failed"}`:      1,
		// An unreachable host is an SSH error; a failed health check is not.
		`rolloutbot_ssh_errors_total{step="connect"}`:                                             1,
		`rolloutbot_ssh_errors_total{step="health"}`:                                              -1,
		`rolloutbot_host_update_duration_seconds_count{status="success",step="health"}`:           1,
		`rolloutbot_host_update_duration_seconds_sum{status="rolled_back",step="health"}`:         2,
		`rolloutbot_host_update_duration_seconds_bucket{status="success",step="health",le="0.4"}`: 1,
	} {
		if got := mid(name); got != want {
			t.Errorf("mid-rollout %s = %v, want %v", name, got, want)
		}
	}

	m.Notify(rollout.Event{Kind: rollout.EventEnded, Progress: rollout.Progress{Rollout: rollout.Rollout{Phase: rollout.PhaseHalted}}})
	end := scrape(t, m)
	for name, want := range map[string]float64{
		"rolloutbot_rollout_active":                      0,
		"rolloutbot_hosts_in_flight":                     0,
		`rolloutbot_rollouts_total{outcome="halted"}`:    1,
		`rolloutbot_rollouts_total{outcome="completed"}`: -1,
	} {
		if got := end(name); got != want {
			t.Errorf("after the end %s = %v, want %v", name, got, want)
		}
	}
}

// A rollback counts its hosts and its end apart from the update's: a host
// put back is not a second host update, a rolled-back rollout not a second rollout.
func TestRollbackMetrics(t *testing.T) {
	m := metrics.New()
	undo := &rollout.Undo{By: "U0ADMIN", Reason: "5xx up"}
	rolling := rollout.Progress{Rollout: rollout.Rollout{Phase: rollout.PhaseRollingBack, Undo: undo}}
	host := func(s rollout.UndoStatus) *rollout.HostResult {
		return &rollout.HostResult{Status: rollout.StatusSuccess, Undo: rollout.UndoResult{Status: s}}
	}
	// The update ended as the engine reports it: a host, then the rollback asked for.
	m.Notify(rollout.Event{Kind: rollout.EventHostStarted})
	m.Notify(rollout.Event{Kind: rollout.EventHostDone, Host: host(rollout.UndoNone)})
	m.Notify(rollout.Event{Kind: rollout.EventUndoStarted, Progress: rolling})
	for _, s := range []rollout.UndoStatus{rollout.UndoRestored, rollout.UndoRestored, rollout.UndoRestored, rollout.UndoFailed, rollout.UndoLeft, rollout.UndoNotNeeded} {
		m.Notify(rollout.Event{Kind: rollout.EventHostStarted, Progress: rolling})
		m.Notify(rollout.Event{Kind: rollout.EventHostDone, Progress: rolling, Host: host(s)})
	}
	mid := scrape(t, m)
	for name, want := range map[string]float64{
		`rolloutbot_rollback_hosts_total{status="restored"}`:   3,
		`rolloutbot_rollback_hosts_total{status="failed"}`:     1,
		`rolloutbot_rollback_hosts_total{status="left"}`:       1,
		`rolloutbot_rollback_hosts_total{status="not_needed"}`: 1,
		`rolloutbot_hosts_total{status="success"}`:             1, // the update only
		"rolloutbot_hosts_in_flight":                           0,
	} {
		if got := mid(name); got != want {
			t.Errorf("mid-rollback %s = %v, want %v", name, got, want)
		}
	}

	halted := rollout.Rollout{Phase: rollout.PhaseHalted, Undo: undo}
	m.Notify(rollout.Event{Kind: rollout.EventEnded, Progress: rollout.Progress{Rollout: halted}})
	m.Notify(rollout.Event{Kind: rollout.EventEnded, Progress: rollout.Progress{Rollout: rollout.Rollout{Phase: rollout.PhaseRolledBack, Undo: undo}}})
	m.Notify(rollout.Event{Kind: rollout.EventEnded, Progress: rollout.Progress{Rollout: rollout.Rollout{Phase: rollout.PhaseCompleted}}})
	end := scrape(t, m)
	for name, want := range map[string]float64{
		`rolloutbot_rollbacks_total{outcome="rolled_back"}`: 1,
		`rolloutbot_rollbacks_total{outcome="halted"}`:      1,
		`rolloutbot_rollouts_total{outcome="completed"}`:    1,
		`rolloutbot_rollouts_total{outcome="halted"}`:       -1,
		`rolloutbot_rollouts_total{outcome="rolled_back"}`:  -1,
	} {
		if got := end(name); got != want {
			t.Errorf("after the end %s = %v, want %v", name, got, want)
		}
	}
}

func TestSlackCalls(t *testing.T) {
	limited := true
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/chat.update" && limited {
			limited = false
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer slack.Close()
	m := metrics.New()
	hc := &http.Client{Transport: m.RoundTripper(nil)}
	for _, path := range []string{"/api/chat.postMessage", "/api/chat.update", "/api/chat.update", "/hooks/T0/B0/xyz"} {
		resp, err := hc.Post(slack.URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, err := hc.Post("http://127.0.0.1:1/api/pins.add", "application/json", nil); err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	got := scrape(t, m)
	for name, want := range map[string]float64{
		`rolloutbot_slack_api_calls_total{code="OK",method="chat.postMessage"}`:           1,
		`rolloutbot_slack_api_calls_total{code="OK",method="chat.update"}`:                1,
		`rolloutbot_slack_api_calls_total{code="Too Many Requests",method="chat.update"}`: 1,
		`rolloutbot_slack_rate_limited_total{method="chat.update"}`:                       1,
		`rolloutbot_slack_api_calls_total{code="OK",method="response_url"}`:               1,
		`rolloutbot_slack_api_calls_total{code="error",method="pins.add"}`:                1,
	} {
		if v := got(name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

// A driver that stops without an end (shut down, its lease lost) drives
// nothing here any more: another process, or the next start, takes it up.
// Its process says so, and counts no rollout outcome for it.
func TestStoppedDriverMetrics(t *testing.T) {
	m := metrics.New()
	m.Notify(rollout.Event{Kind: rollout.EventStarted})
	m.Notify(rollout.Event{Kind: rollout.EventHostStarted})
	m.Notify(rollout.Event{Kind: rollout.EventWaiting, Progress: rollout.Progress{Rollout: rollout.Rollout{Phase: rollout.PhaseFrozen}}})
	m.Notify(rollout.Event{Kind: rollout.EventStopped})
	got := scrape(t, m)
	for name, want := range map[string]float64{
		"rolloutbot_rollout_active":                      0,
		"rolloutbot_hosts_in_flight":                     0,
		`rolloutbot_rollout_waiting{reason="frozen"}`:    -1,
		`rolloutbot_rollouts_total{outcome="halted"}`:    -1,
		`rolloutbot_rollouts_total{outcome="completed"}`: -1,
	} {
		if v := got(name); v != want {
			t.Errorf("after the driver stopped %s = %v, want %v", name, v, want)
		}
	}
}

// A driver whose lease ran out is counted, once per lapse.
func TestLeaseLapseMetrics(t *testing.T) {
	m := metrics.New()
	if v := scrape(t, m)("rolloutbot_lease_lapses_total"); v != 0 {
		t.Fatalf("before any lapse rolloutbot_lease_lapses_total = %v", v)
	}
	m.Notify(rollout.Event{Kind: rollout.EventStarted})
	m.Notify(rollout.Event{Kind: rollout.EventLeaseRanOut})
	m.Notify(rollout.Event{Kind: rollout.EventLeaseRanOut})
	if v := scrape(t, m)("rolloutbot_lease_lapses_total"); v != 2 {
		t.Errorf("after two lapses rolloutbot_lease_lapses_total = %v, want 2", v)
	}
}
