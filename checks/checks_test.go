package checks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/checks"
	"github.com/rolloutbot/rolloutbot/checks/promtest"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// app is the metrics endpoint of the service being rolled out, as the test
// sets it: requests and errors per version, in Prometheus's text format.
type app struct {
	mu     sync.Mutex
	counts map[string][2]int // version: requests, errors
}

func (a *app) set(version string, requests, errors int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts[version] = [2]int{requests, errors}
}

func (a *app) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE app_requests_total counter")
	for v, c := range a.counts {
		fmt.Fprintf(w, "app_requests_total{version=%q} %d\n", v, c[0])
	}
	fmt.Fprintln(w, "# TYPE app_errors_total counter")
	for v, c := range a.counts {
		fmt.Fprintf(w, "app_errors_total{version=%q} %d\n", v, c[1])
	}
}

func one(t *testing.T, s checks.Spec) rollout.Check {
	t.Helper()
	cs, err := checks.New([]checks.Spec{s}, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func run(c rollout.Check, version string) rollout.CheckResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Checker.Check(ctx, rollout.CheckTarget{Version: version, Stage: 10})
}

// until runs the check until it comes out as want, for at most 30 s
// (Prometheus scrapes every second).
func until(t *testing.T, c rollout.Check, version string, want rollout.CheckOutcome) rollout.CheckResult {
	t.Helper()
	return untilRes(t, c, version, string(want), func(res rollout.CheckResult) bool { return res.Outcome == want })
}

func untilRes(t *testing.T, c rollout.Check, version, want string, ok func(rollout.CheckResult) bool) rollout.CheckResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		res := run(c, version)
		if ok(res) {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("check %s for %s: still %+v after 30s, want %s", c.Name, version, res, want)
		}
		<-tick.C
	}
}

// The error-rate check of the README, against a real Prometheus scraping
// an endpoint the test controls.
func TestPrometheusErrorRate(t *testing.T) {
	a := &app{counts: map[string][2]int{}}
	a.set("v2.4.1", 1000, 1)
	srv := httptest.NewServer(a)
	defer srv.Close()
	prom := promtest.Start(t, strings.TrimPrefix(srv.URL, "http://"))

	c := one(t, checks.Spec{Name: "error_rate", Kind: "prometheus", Server: prom.URL, Condition: "< 0.01",
		Query: `max(app_errors_total{version="{version}"} / app_requests_total{version="{version}"})`})
	res := until(t, c, "v2.4.1", rollout.CheckPass)
	if res.Value != "0.001" || res.Want != "< 0.01" {
		t.Fatalf("pass: %+v", res)
	}

	a.set("v2.4.1", 1000, 34)
	res = until(t, c, "v2.4.1", rollout.CheckFail)
	if res.Value != "0.034" || res.Want != "< 0.01" {
		t.Fatalf("fail: %+v", res)
	}
	if got := c.Says(res); got != "error_rate failed: saw 0.034, wanted < 0.01" {
		t.Errorf("says %q", got)
	}

	// A version nobody runs: no data, which proves nothing either way.
	res = run(c, "v9")
	if res.Outcome != rollout.CheckInconclusive || !strings.Contains(res.Err, "no data") {
		t.Fatalf("no data: %+v", res)
	}

	// Every sample must hold: one bad series of several fails the check,
	// and the answer names it.
	a.set("v2.4.1", 1000, 1)
	a.set("v2.4.0", 1000, 50)
	all := one(t, checks.Spec{Name: "all_versions", Kind: "prometheus", Server: prom.URL, Condition: "< 0.01",
		Query: `app_errors_total / app_requests_total`})
	res = untilRes(t, all, "v2.4.1", "v2.4.0 failing", func(res rollout.CheckResult) bool { return strings.Contains(res.Value, "v2.4.0") })
	if res.Outcome != rollout.CheckFail || res.Value != `0.05 for {instance="`+strings.TrimPrefix(srv.URL, "http://")+`", job="app", version="v2.4.0"}` {
		t.Fatalf("several series: %+v", res)
	}

	// {stage} is substituted too; a scalar answer is compared as it is.
	stage := one(t, checks.Spec{Name: "stage", Kind: "prometheus", Server: prom.URL, Condition: "== 10", Query: `scalar(vector({stage}))`})
	if res := run(stage, "v2.4.1"); res.Outcome != rollout.CheckPass || res.Value != "10" {
		t.Fatalf("stage: %+v", res)
	}

	// A query Prometheus refuses is inconclusive, with its error.
	bad := one(t, checks.Spec{Name: "bad", Kind: "prometheus", Server: prom.URL, Condition: "< 1", Query: `sum(`})
	if res := run(bad, "v2.4.1"); res.Outcome != rollout.CheckInconclusive || !strings.Contains(res.Err, "parse error") {
		t.Fatalf("bad query: %+v", res)
	}
}

// A server that does not answer is inconclusive, never a pass.
func TestPrometheusUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c := one(t, checks.Spec{Name: "error_rate", Kind: "prometheus", Server: addr, Condition: "< 0.01", Query: `up`})
	if res := run(c, "v2"); res.Outcome != rollout.CheckInconclusive || !strings.Contains(res.Err, "connection refused") {
		t.Fatalf("%+v", res)
	}
}

func TestHTTPCheck(t *testing.T) {
	var mu sync.Mutex
	code, paths := http.StatusOK, []string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		w.WriteHeader(code)
	}))
	defer srv.Close()
	c := one(t, checks.Spec{Name: "api", Kind: "http", URL: srv.URL + "/healthz/{version}"})
	if res := run(c, "v2.4.1"); res.Outcome != rollout.CheckPass || res.Value != "200 OK" {
		t.Fatalf("%+v", res)
	}
	mu.Lock()
	code = http.StatusServiceUnavailable
	mu.Unlock()
	res := run(c, "v2.4.1")
	if res.Outcome != rollout.CheckFail || c.Says(res) != "api failed: saw 503 Service Unavailable, wanted HTTP 2xx" {
		t.Fatalf("%+v %s", res, c.Says(res))
	}
	if paths[0] != "/healthz/v2.4.1" {
		t.Errorf("paths %v", paths)
	}
	srv.Close()
	if res := run(c, "v2.4.1"); res.Outcome != rollout.CheckInconclusive {
		t.Fatalf("closed server: %+v", res)
	}
}

func TestCommandCheck(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "args")
	c := one(t, checks.Spec{Name: "smoke", Kind: "command",
		Command: `printf '%s\n' {version} {stage} > ` + log + `; test -e ` + filepath.Join(dir, "ok") + ` || { echo "smoke: login page 500"; exit 3; }`})
	res := run(c, "v2.4.1")
	if res.Outcome != rollout.CheckFail || res.Value != "exit 3: smoke: login page 500" {
		t.Fatalf("%+v", res)
	}
	if b, _ := os.ReadFile(log); string(b) != "v2.4.1\n10\n" {
		t.Fatalf("the command saw %q", b)
	}
	if err := os.WriteFile(filepath.Join(dir, "ok"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := run(c, "v2.4.1"); res.Outcome != rollout.CheckPass {
		t.Fatalf("%+v", res)
	}
	// A version that is not one never reaches the shell.
	if res := run(c, "v2;touch "+filepath.Join(dir, "pwned")); res.Outcome != rollout.CheckInconclusive {
		t.Fatalf("%+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("an invalid version reached the shell")
	}
	slow := one(t, checks.Spec{Name: "slow", Kind: "command", Command: "sleep 10"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res := slow.Checker.Check(ctx, rollout.CheckTarget{Version: "v2", Stage: 10}); res.Outcome != rollout.CheckInconclusive || res.Err != "timed out" {
		t.Fatalf("%+v", res)
	}
}

func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		spec checks.Spec
		want string
	}{
		{checks.Spec{Name: "a b", Kind: "http", URL: "http://x"}, "rollout.checks[0].name"},
		{checks.Spec{Name: "e", Kind: "prometheus", Server: "prom:9090", Query: "up", Condition: "< 1"}, "rollout.checks[0] (e).server"},
		{checks.Spec{Name: "e", Kind: "prometheus", Server: "http://prom:9090", Query: "up", Condition: "about 1"}, "rollout.checks[0] (e).condition"},
		{checks.Spec{Name: "e", Kind: "prometheus", Server: "http://prom:9090", Condition: "< 1"}, "rollout.checks[0] (e).query: empty"},
		{checks.Spec{Name: "e", Kind: "ftp"}, `rollout.checks[0] (e).kind: "ftp"`},
		{checks.Spec{Name: "e", Kind: "command", Command: "true", OnError: "ignore"}, `rollout.checks[0] (e).on_error`},
	} {
		_, err := checks.New([]checks.Spec{tc.spec}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %s…", tc.spec, err, tc.want)
		}
	}
	for _, s := range []string{"< 0.01", "==0", ">= 99.5", "!= 1e-3"} {
		if _, err := checks.ParseCondition(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	_, err := checks.New([]checks.Spec{{Name: "x", Kind: "command", Command: "true"}, {Name: "x", Kind: "command", Command: "true"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Errorf("duplicate names: %v", err)
	}
}
