package web_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/web"
)

// chromiumPath is Debian's chromium, which scripts/deps.sh installs.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for the test (as root in CI, hence no
// sandbox) and returns its first tab. Outside CI a machine without Chromium
// skips the browser tests, saying so; in CI (CI=true) that is a failure.
func browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	path := cmpOr(os.Getenv("ROLLOUTBOT_CHROMIUM"), chromiumPath)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is missing (%s): scripts/deps.sh installs Debian's chromium package for the browser tests", path)
		}
		t.Skipf("Chromium is not installed (%s): `make deps` (scripts/deps.sh) installs it; skipping the browser test", path)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(width, height), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fresh is a new tab in a browser context of its own: no cookies.
func fresh(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	c, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return c
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	return must[T](t)(chromedp.Run(ctx, chromedp.Evaluate[T](js)))
}

// sim is a simulated fleet, a store and the engine that rolls out to it over
// real SSH, as serve runs it.
type sim struct {
	db      *store.DB
	engine  *rollout.Engine
	hosts   []rollout.Host
	failing string // the host whose update and rollback fail: failed
	back    string // the host whose update fails: rolled back
}

func startSim(t testing.TB, n int, latency time.Duration, conc int) *sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fleet, err := fleetsim.Start(ctx, fleetsim.Options{Hosts: n, Latency: latency, Jitter: latency, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	dir := t.TempDir()
	if err := fleet.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	s := &sim{db: openStore(t)}
	for _, h := range fleet.Hosts() {
		s.hosts = append(s.hosts, rollout.Host{ID: h.Name, Address: h.Address, Port: h.Port, Label: "simulated"})
	}
	fleet.SetBehavior(n/3, fleetsim.RollbackFails)
	fleet.SetBehavior(2*n/3, fleetsim.UpdateFails)
	s.failing, s.back = s.hosts[n/3].ID, s.hosts[2*n/3].ID
	if err := s.db.PutHosts(ctx, s.hosts); err != nil {
		t.Fatal(err)
	}
	runner, err := sshrunner.New(sshrunner.Config{User: "fleet", KeyFile: filepath.Join(dir, "client_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"), ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second,
		Recipe: sshrunner.Recipe{Version: "fleetctl version", Update: "fleetctl update {version}", Health: "fleetctl health",
			Rollback: "fleetctl rollback {version}"}}, s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.engine = rollout.New(rollout.Config{Store: s.db, Inventory: s.db, Updater: runner,
		Defaults: rollout.Settings{Stages: []int{10, 50, 100}, Concurrency: conc, Threshold: 100},
		Seed:     func() int64 { return 5 }, HealthTimeout: 2 * time.Second, HealthInterval: 100 * time.Millisecond})
	return s
}

// start records a rollout of v2 and returns it and a function that drives
// it to its end (and returns its error).
func (s *sim) start(t testing.TB) (*rollout.Rollout, func() error) {
	t.Helper()
	return s.startVersion(t, "v2")
}

// startVersion is start with another version.
func (s *sim) startVersion(t testing.TB, version string) (*rollout.Rollout, func() error) {
	t.Helper()
	r, err := s.engine.Start(context.Background(), rollout.StartRequest{Version: version, Actor: "U0ALICE", Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	return r, func() error { _, err := s.engine.Run(context.Background(), r.ID); return err }
}

// view serves the web view of db on a loopback port until the test ends.
func view(t testing.TB, db web.Store, signer *web.Signer) string {
	t.Helper()
	h, err := web.New(web.Config{Store: db, Signer: signer, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveOn(ln, h)
	t.Cleanup(stop)
	return "http://" + ln.Addr().String()
}

// serveOn serves h on ln until stop is called; stop ends live streams too.
func serveOn(ln net.Listener, h http.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return ctx }}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	return func() {
		cancel()
		_ = srv.Close()
		wg.Wait()
	}
}

// TestBrowserFollowsARollout opens a signed link in Chromium, watches the
// counts move while a simulated rollout runs (no reload), filters the host
// table, opens a failed host's output, and is refused with a tampered or an
// expired link.
func TestBrowserFollowsARollout(t *testing.T) {
	ctx := browser(t, 1280, 900)
	s := startSim(t, 24, 60*time.Millisecond, 2)
	clk := &clock{t: time.Now()}
	signer := web.NewSigner([]byte(secret), 12*time.Hour, clk.Now)
	base := view(t, s.db, signer)
	r, run := s.start(t)
	link := base + signer.Sign("/rollouts/"+strconv.FormatInt(r.ID, 10))

	// The signed link opens the page, and the address bar loses the signature.
	do(t, ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`[data-count="success"]`)))
	if loc := must[string](t)(chromedp.Run(ctx, chromedp.Location())); strings.Contains(loc, "sig=") || !strings.HasSuffix(loc, "/rollouts/1") {
		t.Fatalf("after the signed link the page is at %q", loc)
	}
	eval[int](t, ctx, `window.stayedHere = 42`)
	if got := eval[string](t, ctx, `document.querySelector('[data-field="done"]').textContent`); got != "0" {
		t.Fatalf("before the rollout runs the page says %s done", got)
	}

	ran := make(chan error, 1)
	go func() { ran <- run() }()
	seen := map[string]bool{}
	var done, label string
	deadline := time.Now().Add(90 * time.Second)
	for tick := time.NewTicker(50 * time.Millisecond); done != "24" || label != "completed"; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed the end: done %q, label %q, seen %v", done, label, seen)
		}
		done = eval[string](t, ctx, `document.querySelector('[data-field="done"]').textContent`)
		label = eval[string](t, ctx, `document.querySelector('[data-field="label"]').textContent`)
		seen[done] = true
	}
	if err := <-ran; err != nil {
		t.Fatalf("the rollout: %v", err)
	}
	if len(seen) < 3 {
		t.Errorf("the counts moved through only %v", seen)
	}
	if eval[int](t, ctx, `window.stayedHere || 0`) != 42 {
		t.Error("the page reloaded to show the progress")
	}
	counts := eval[map[string]string](t, ctx, `Object.fromEntries([...document.querySelectorAll('[data-count]')].map(e => [e.dataset.count, e.textContent]))`)
	if counts["success"] != "22" || counts["failed"] != "1" || counts["rolled_back"] != "1" || counts["pending"] != "0" {
		t.Errorf("final counts on the page: %v", counts)
	}
	// The lists and charts followed too, without a reload.
	deadline = time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(50 * time.Millisecond); !strings.Contains(
		eval[string](t, ctx, `document.getElementById('failures').textContent`), s.failing); <-tick.C {
		if time.Now().After(deadline) {
			t.Fatal("the latest failures never listed the failed host")
		}
	}

	// Filter the host table: the failed hosts only.
	do(t, ctx, chromedp.Navigate(base+"/rollouts/1/hosts"), chromedp.WaitVisible(chromedp.ID("status")))
	if n := eval[int](t, ctx, `document.querySelectorAll('#host-table tbody tr').length`); n != 24 {
		t.Fatalf("the host table shows %d rows, want 24", n)
	}
	// Choosing a status applies it (the select submits its form).
	if _, err := chromedp.RunResponse(ctx, chromedp.SetValue(chromedp.ID("status"), "failed")); err != nil {
		t.Fatal(err)
	}
	rows := eval[[]string](t, ctx, `[...document.querySelectorAll('#host-table tbody tr')].map(tr => tr.textContent.replace(/\s+/g, ' ').trim())`)
	if len(rows) != 1 || !strings.Contains(rows[0], s.failing) || !strings.Contains(rows[0], "failed") {
		t.Fatalf("filtered by failed: %q", rows)
	}
	if sum := eval[string](t, ctx, `document.getElementById('host-summary').textContent`); !strings.Contains(sum, "1–1 of 1") {
		t.Fatalf("summary %q", sum)
	}
	// Search by id, across statuses.
	do(t, ctx, chromedp.Navigate(base+"/rollouts/1/hosts"), chromedp.WaitVisible(chromedp.ID("q")))
	if _, err := chromedp.RunResponse(ctx, chromedp.SendKeys(chromedp.ID("q"), s.back+"\r")); err != nil {
		t.Fatal(err)
	}
	rows = eval[[]string](t, ctx, `[...document.querySelectorAll('#host-table tbody tr')].map(tr => tr.textContent.replace(/\s+/g, ' ').trim())`)
	if len(rows) != 1 || !strings.Contains(rows[0], s.back) || !strings.Contains(rows[0], "rolled back") {
		t.Fatalf("search %s: %q", s.back, rows)
	}

	// Open the failed host: its error and output.
	do(t, ctx, chromedp.Navigate(base+"/rollouts/1/hosts?status=failed"), chromedp.WaitVisible(chromedp.ID("host-table")))
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#host-table tbody a`))); err != nil {
		t.Fatal(err)
	}
	out := must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.ID("output"))))
	if !strings.Contains(out, "E: rollback to") || !strings.Contains(out, s.failing) {
		t.Fatalf("the failed host's output: %q", out)
	}
	if h1 := must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))); !strings.Contains(h1, s.failing) || !strings.Contains(h1, "failed") {
		t.Fatalf("host page heading %q", h1)
	}

	// A tampered link, in a browser with no session: 401.
	other := fresh(t, ctx)
	tampered := strings.Replace(link, "sig=", "sig=x", 1)
	res := must[*networkResponse](t)(navigate(other, tampered))
	if res.status != http.StatusUnauthorized || !strings.Contains(must[string](t)(chromedp.Run(other, chromedp.Text(chromedp.CSS("h1")))), "Not signed in") {
		t.Fatalf("tampered link: %d", res.status)
	}
	// The link, once it expired: 401 too.
	clk.Add(12*time.Hour + time.Minute)
	other = fresh(t, ctx)
	if res := must[*networkResponse](t)(navigate(other, link)); res.status != http.StatusUnauthorized {
		t.Fatalf("expired link: %d", res.status)
	}
	// And without any link.
	if res := must[*networkResponse](t)(navigate(fresh(t, ctx), base+"/")); res.status != http.StatusUnauthorized {
		t.Fatalf("no link: %d", res.status)
	}
}

type networkResponse struct{ status int64 }

// navigate opens u and returns the status of the page's response.
func navigate(ctx context.Context, u string) (*networkResponse, error) {
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, errors.New("no response")
	}
	return &networkResponse{status: res.Status}, nil
}

// TestBrowserReconnectsAfterARestart: the bot stops while a page is open,
// the rollout moves on meanwhile, and once the bot is back the page shows
// where it is, without a reload.
func TestBrowserReconnectsAfterARestart(t *testing.T) {
	ctx := browser(t, 1024, 768)
	db := openStore(t)
	r, results := seed(t, db, 20)
	signer := web.NewSigner([]byte(secret), time.Hour, nil)
	h, err := web.New(web.Config{Store: db, Signer: signer, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	stop := serveOn(ln, h)
	do(t, ctx, chromedp.Navigate("http://"+addr+signer.Sign("/rollouts/1")), chromedp.WaitVisible(chromedp.CSS(`[data-count="success"]`)))
	eval[int](t, ctx, `window.stayedHere = 7`)
	waitText(t, ctx, `document.getElementById('live-status').textContent`, "live")

	stop() // the bot goes away
	waitText(t, ctx, `document.getElementById('live-status').textContent`, "reconnecting")
	hr := results[15]
	hr.Status, hr.StartedAt, hr.FinishedAt = rollout.StatusSuccess, time.Now(), time.Now()
	if err := db.SaveHostResults(context.Background(), "me", []rollout.HostResult{hr}); err != nil {
		t.Fatal(err)
	}
	ln, err = net.Listen("tcp", addr) // and comes back on its address
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(serveOn(ln, h))
	waitText(t, ctx, `document.querySelector('[data-count="success"]').textContent`, "10")
	if eval[int](t, ctx, `window.stayedHere || 0`) != 7 {
		t.Fatal("the page reloaded")
	}
	_ = r
}

// waitText polls js in the page, at most 30 s, until its value contains want.
func waitText(t testing.TB, ctx context.Context, js, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for tick := time.NewTicker(50 * time.Millisecond); ; <-tick.C {
		if got = eval[string](t, ctx, js); strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q, never %q", js, got, want)
		}
	}
}

// TestBrowserPhoneAndFirstRollout: on a phone-sized screen the pages fit
// the width (wide tables scroll inside their box, not the page); and "/"
// with no rollout yet shows the first one once it starts.
func TestBrowserPhoneAndFirstRollout(t *testing.T) {
	ctx := browser(t, 1024, 768)
	db := openStore(t)
	signer := web.NewSigner([]byte(secret), time.Hour, nil)
	base := view(t, db, signer)
	do(t, ctx, chromedp.Navigate(base+signer.Sign("/")), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h1 := must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))); h1 != "No rollouts yet" {
		t.Fatalf("empty store: %q", h1)
	}
	seed(t, db, 300)
	waitText(t, ctx, `(document.querySelector('h1') || {}).textContent || ''`, "Rollout #1")

	do(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch))
	for _, p := range []string{"/rollouts/1", "/rollouts/1/hosts", "/rollouts/1/hosts/3", "/history", "/audit"} {
		do(t, ctx, chromedp.Navigate(base+p), chromedp.WaitVisible(chromedp.CSS("h1")))
		if over := eval[int](t, ctx, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
			t.Errorf("%s is %dpx wider than a phone's screen", p, over)
		}
	}
	// Every form control has a label, every table a caption or heading.
	do(t, ctx, chromedp.Navigate(base+"/rollouts/1/hosts"), chromedp.WaitVisible(chromedp.ID("status")))
	unlabeled := eval[[]string](t, ctx, `[...document.querySelectorAll('select, input:not([type=hidden])')].filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.name)`)
	if len(unlabeled) > 0 {
		t.Errorf("controls without a label: %v", unlabeled)
	}
	if n := eval[int](t, ctx, `[...document.querySelectorAll('table')].filter(t => !t.caption).length`); n > 0 {
		t.Errorf("%d tables without a caption", n)
	}
}
