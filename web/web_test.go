package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/web"
)

const secret = "test-secret-0123456789-abcdefghijklmnop"

// clock is a settable time for links and sessions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a store with one rollout of n hosts, and the view on a test server.
type fixture struct {
	db      *store.DB
	r       *rollout.Rollout
	results []rollout.HostResult
	h       *web.Handler
	srv     *httptest.Server
	clock   *clock
}

func openStore(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "rolloutbot.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// seed records a rollout of n hosts web-00001…; every tenth host failed
// with output, the first half of the others succeeded, the rest are pending.
func seed(t testing.TB, db *store.DB, n int) (*rollout.Rollout, []rollout.HostResult) {
	t.Helper()
	ctx := context.Background()
	hs := make([]rollout.Host, n)
	for i := range hs {
		hs[i] = rollout.Host{ID: fmt.Sprintf("web-%05d", i+1), Address: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), Port: 22}
	}
	now := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	r := &rollout.Rollout{Version: "v2.4.1", Phase: rollout.PhaseRunning, Settings: rollout.DefaultSettings(), Seed: 7, Hosts: n,
		StartedBy: "U0ADMIN", Source: rollout.SourceSlack, Owner: "me", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateRollout(ctx, r, hs, time.Hour); err != nil {
		t.Fatal(err)
	}
	results := make([]rollout.HostResult, n)
	for i := range results {
		hr := rollout.HostResult{RolloutID: r.ID, Index: i, Host: hs[i], Status: rollout.StatusPending}
		switch {
		case i%10 == 3:
			hr.Status, hr.Step, hr.Error = rollout.StatusFailed, rollout.StepHealth, "health check failed after 60s"
			hr.Output = "curl: (7) Failed to connect <script>alert(1)</script>\nexit status 7\n"
		case i < n/2:
			hr.Status = rollout.StatusSuccess
		}
		if hr.Status.Done() {
			hr.StartedAt = now.Add(time.Duration(i) * time.Second)
			hr.FinishedAt = hr.StartedAt.Add(time.Duration(1+i%7) * time.Second)
			hr.PrevVersion, hr.NewVersion = "v2.4.0", "v2.4.1"
		}
		results[i] = hr
	}
	for off := 0; off < n; off += 1000 {
		if err := db.SaveHostResults(ctx, "me", results[off:min(off+1000, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return r, results
}

func newFixture(t testing.TB, n int, mod func(*web.Config)) *fixture {
	t.Helper()
	f := &fixture{db: openStore(t), clock: &clock{t: time.Now()}}
	f.r, f.results = seed(t, f.db, n)
	cfg := web.Config{Store: f.db, Signer: web.NewSigner([]byte(secret), 12*time.Hour, f.clock.Now), PublicURL: "http://view.example",
		Now: time.Now, Poll: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	h, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// link is the signed link to path on the test server.
func (f *fixture) link(t testing.TB, id int64) string {
	t.Helper()
	l := f.h.Link(id)
	u, err := url.Parse(l)
	if err != nil {
		t.Fatal(err)
	}
	return f.srv.URL + u.RequestURI()
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signedIn is a client whose session came from a signed link.
func (f *fixture) signedIn(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, body := get(t, c, f.link(t, f.r.ID))
	if res.StatusCode != 200 || !strings.Contains(body, "Rollout #") {
		t.Fatalf("signed link: %d %s", res.StatusCode, body)
	}
	return c
}

func get(t testing.TB, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestSignedLinkSetsASession(t *testing.T) {
	f := newFixture(t, 20, nil)
	link := f.link(t, f.r.ID)
	if !strings.Contains(f.h.Link(f.r.ID), "http://view.example/rollouts/1?exp=") {
		t.Fatalf("link %q is not on the public address", f.h.Link(f.r.ID))
	}
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	res, _ := get(t, c, link)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/rollouts/1" {
		t.Fatalf("signed link: %d to %q, want 303 to the page without its signature", res.StatusCode, res.Header.Get("Location"))
	}
	ck := res.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode || ck[0].Secure || ck[0].Path != "/" {
		t.Fatalf("session cookie: %+v", ck)
	}
	if strings.Contains(ck[0].Value, secret) {
		t.Fatal("the cookie carries the secret")
	}
	for _, p := range []string{"/", "/rollouts/1", "/rollouts/1/hosts", "/rollouts/1/hosts/3", "/history", "/audit"} {
		res, body := get(t, c, f.srv.URL+p)
		if res.StatusCode != 200 {
			t.Errorf("%s with the session: %d", p, res.StatusCode)
		}
		if strings.Contains(body, secret) {
			t.Errorf("%s shows the secret", p)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if res.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: no Referrer-Policy", p)
		}
	}
}

func TestWithoutAValidLinkOrSession401(t *testing.T) {
	f := newFixture(t, 20, nil)
	link := f.link(t, f.r.ID)
	u, _ := url.Parse(link)
	q := u.Query()
	sig, exp := q.Get("sig"), q.Get("exp")
	flip := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	cases := map[string]string{
		"no link":             f.srv.URL + "/rollouts/1",
		"no link, home":       f.srv.URL + "/",
		"no link, events":     f.srv.URL + "/rollouts/1/events",
		"no link, hosts":      f.srv.URL + "/rollouts/1/hosts",
		"tampered signature":  f.srv.URL + "/rollouts/1?exp=" + exp + "&sig=" + flip(sig),
		"later expiry":        f.srv.URL + "/rollouts/1?exp=" + fmt.Sprint(f.clock.Now().Add(48*time.Hour).Unix()) + "&sig=" + sig,
		"other page":          f.srv.URL + "/rollouts/2?exp=" + exp + "&sig=" + sig,
		"signature only":      f.srv.URL + "/rollouts/1?sig=" + sig,
		"expiry only":         f.srv.URL + "/rollouts/1?exp=" + exp,
		"valid link, garbage": link + "x",
	}
	for name, u := range cases {
		jar, _ := cookiejar.New(nil)
		res, body := get(t, noRedirect(jar), u)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, res.StatusCode)
		}
		if len(res.Cookies()) != 0 {
			t.Errorf("%s: a cookie was set", name)
		}
		if strings.Contains(body, "web-00001") {
			t.Errorf("%s: the page shows hosts", name)
		}
	}

	// An expired link: 401, even though it was valid once.
	f.clock.Add(12*time.Hour + time.Second)
	jar, _ := cookiejar.New(nil)
	if res, _ := get(t, noRedirect(jar), link); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired link: %d", res.StatusCode)
	}

	// A forged or expired session cookie: 401.
	for name, v := range map[string]string{"forged": exp + "." + sig, "no signature": exp, "empty": ""} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/history", nil)
		req.AddCookie(&http.Cookie{Name: "rolloutbot_web", Value: v})
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s session: %d", name, res.StatusCode)
		}
	}
	c := f.signedIn(t)
	f.clock.Add(12*time.Hour + time.Second)
	if res, _ := get(t, c, f.srv.URL+"/history"); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", res.StatusCode)
	}
}

func TestSessionCookieSecureBehindHTTPS(t *testing.T) {
	f := newFixture(t, 5, func(c *web.Config) { c.PublicURL = "https://rollouts.example.com/" })
	if l := f.h.Link(1); !strings.HasPrefix(l, "https://rollouts.example.com/rollouts/1?exp=") {
		t.Fatalf("link %q", l)
	}
	jar, _ := cookiejar.New(nil)
	res, _ := get(t, noRedirect(jar), f.link(t, 1))
	if ck := res.Cookies(); len(ck) != 1 || !ck[0].Secure {
		t.Fatalf("cookie behind https: %+v", ck)
	}
}

func TestOpenViewNeedsNoLink(t *testing.T) {
	f := newFixture(t, 5, func(c *web.Config) { c.Signer, c.Open = nil, true })
	if res, _ := get(t, http.DefaultClient, f.srv.URL+"/rollouts/1/hosts"); res.StatusCode != 200 {
		t.Fatalf("open view: %d", res.StatusCode)
	}
	if l := f.h.Link(1); l != "http://view.example/rollouts/1" {
		t.Fatalf("open view's link %q", l)
	}
	if _, err := web.New(web.Config{Store: f.db}); err == nil {
		t.Fatal("a view with neither a signer nor open access was made")
	}
}

func TestOverview(t *testing.T) {
	f := newFixture(t, 200, nil)
	c := f.signedIn(t)
	for _, p := range []string{"/", "/rollouts/1"} {
		_, body := get(t, c, f.srv.URL+p)
		for _, want := range []string{"Rollout #1", "v2.4.1", "U0ADMIN", "stage 10%", `data-count="success">90<`, `data-count="failed">20<`,
			`data-count="pending">90<`, `<progress id="progress" max="200" value="110"`, "Latest failures", "health check failed",
			`aria-current="step"`, `<svg class="chart"`, "Hosts done over time", "Update durations", "about "} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", p, want)
			}
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s shows host output unescaped", p)
		}
	}
	for p, code := range map[string]int{"/rollouts/9": 404, "/rollouts/x": 404, "/rollouts/1/hosts/999": 404, "/rollouts/1/hosts/-1": 404,
		"/rollouts/1/hosts?per=0": 400, "/rollouts/1/hosts?page=x": 400, "/rollouts/1/hosts?sort=evil": 400,
		"/rollouts/1/hosts?status=nope": 400, "/history?before=x": 400, "/nope": 404} {
		if res, _ := get(t, c, f.srv.URL+p); res.StatusCode != code {
			t.Errorf("%s: %d, want %d", p, res.StatusCode, code)
		}
	}
}

func TestHostTable(t *testing.T) {
	f := newFixture(t, 10000, nil)
	c := f.signedIn(t)
	base := f.srv.URL + "/rollouts/1/hosts"

	_, body := get(t, c, base)
	if n := strings.Count(body, `<td class="num">`); n != 50 {
		t.Fatalf("first page has %d rows, want 50", n)
	}
	if !strings.Contains(body, "Hosts 1–50 of 10000") || !strings.Contains(body, "Page 1 of 200") || !strings.Contains(body, "web-00050") ||
		strings.Contains(body, "web-00051<") {
		t.Fatalf("first page: %s", body[:min(len(body), 400)])
	}

	_, body = get(t, c, base+"?status=failed&page=3&per=100")
	table := between(body, `id="host-table"`, "</section>")
	if !strings.Contains(body, "Hosts 201–300 of 1000") || strings.Count(table, "badge-failed\">failed") != 100 || strings.Contains(table, "badge-success\">") {
		t.Fatal("status filter: not 100 failed hosts on page 3 of 1000")
	}
	_, body = get(t, c, base+"?q=WEB-0999")
	if !strings.Contains(body, "of 10 ") && !strings.Contains(body, "Hosts 1–10 of 10") {
		t.Fatalf("search by id: %s", between(body, "host-summary", "</p>"))
	}
	_, body = get(t, c, base+"?q=10.0.39.15")
	if !strings.Contains(body, "web-10000") || !strings.Contains(body, "Hosts 1–1 of 1") {
		t.Fatalf("search by address: %s", between(body, "host-summary", "</p>"))
	}
	_, body = get(t, c, base+"?sort=duration&dir=desc&per=25")
	if !strings.Contains(body, `aria-sort="descending"`) || !strings.Contains(body, "7s") {
		t.Fatal("sort by duration, longest first")
	}
	if !strings.Contains(body, `href="/rollouts/1/hosts?page=2&amp;per=25&amp;sort=duration&amp;dir=desc"`) &&
		!strings.Contains(body, "page=2") {
		t.Fatal("the next page keeps the sort")
	}
	_, body = get(t, c, base+"?q=nothing-like-this")
	if !strings.Contains(body, "No host matches") {
		t.Fatal("empty search")
	}
}

func between(s, from, to string) string {
	_, after, _ := strings.Cut(s, from)
	b, _, _ := strings.Cut(after, to)
	return b
}

func TestHostDetail(t *testing.T) {
	f := newFixture(t, 20, nil)
	c := f.signedIn(t)
	_, body := get(t, c, f.srv.URL+"/rollouts/1/hosts/3")
	for _, want := range []string{"web-00004", "badge-failed", "health", "health check failed after 60s", "v2.4.0",
		"curl: (7) Failed to connect &lt;script&gt;alert(1)&lt;/script&gt;", `<pre id="output"`} {
		if !strings.Contains(body, want) {
			t.Errorf("host detail lacks %q", want)
		}
	}
}

func TestHistoryAndAudit(t *testing.T) {
	f := newFixture(t, 10, nil)
	ctx := context.Background()
	f.r.Phase, f.r.FinishedAt, f.r.UpdatedAt = rollout.PhaseCompleted, time.Now(), time.Now()
	if err := f.db.UpdateRollout(ctx, "me", f.r); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Audit(ctx, rollout.AuditEntry{At: time.Now(), Actor: "U0ADMIN", Source: rollout.SourceSlack, Action: "halt",
		RolloutID: 1, Allowed: false, Detail: "not an admin"}); err != nil {
		t.Fatal(err)
	}
	c := f.signedIn(t)
	_, body := get(t, c, f.srv.URL+"/history")
	for _, want := range []string{`href="/rollouts/1"`, "v2.4.1", "completed, 1 failed", "U0ADMIN"} {
		if !strings.Contains(body, want) {
			t.Errorf("history lacks %q", want)
		}
	}
	_, body = get(t, c, f.srv.URL+"/audit")
	for _, want := range []string{"halt", "refused", "not an admin", `href="/rollouts/1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// TestEventsFollowProgress reads the live stream while host results are
// written: each change arrives as an event with the new counts.
func TestEventsFollowProgress(t *testing.T) {
	f := newFixture(t, 20, nil)
	c := f.signedIn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/rollouts/1/events", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	next := func(want string) {
		t.Helper()
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") && strings.Contains(line, want) {
				return
			}
		}
		t.Fatalf("stream ended without %q: %v", want, sc.Err())
	}
	next(`"success":9`)
	hr := f.results[15]
	hr.Status, hr.StartedAt, hr.FinishedAt = rollout.StatusSuccess, time.Now(), time.Now()
	if err := f.db.SaveHostResults(ctx, "me", []rollout.HostResult{hr}); err != nil {
		t.Fatal(err)
	}
	next(`"success":10`)
}

func TestRollbackAndPagedLists(t *testing.T) {
	f := newFixture(t, 20, nil)
	ctx := context.Background()
	if _, err := f.db.StartUndo(ctx, f.r.ID, rollout.Undo{By: "U0BOB", Reason: "error rate up", At: time.Now()}, "me", time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 105 {
		if err := f.db.Audit(ctx, rollout.AuditEntry{At: time.Now(), Actor: fmt.Sprintf("U%03d", i), Source: rollout.SourceCLI,
			Action: "halt", Allowed: true}); err != nil {
			t.Fatal(err)
		}
	}
	c := f.signedIn(t)
	_, body := get(t, c, f.srv.URL+"/rollouts/1")
	for _, want := range []string{"Rollback asked by U0BOB: error rate up", "rolling back", `data-undo="pending">11<`} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview of a rollback lacks %q", want)
		}
	}
	_, body = get(t, c, f.srv.URL+"/audit")
	older := between(body, `<nav class="pager" aria-label="Pages"><a href="`, `"`)
	if strings.Count(body, "<tr>") != 101 || !strings.Contains(body, "U104") || strings.Contains(body, ">U004<") || older == "" {
		t.Fatalf("first audit page: %d rows, older %q", strings.Count(body, "<tr>"), older)
	}
	_, body = get(t, c, f.srv.URL+older)
	if strings.Count(body, "<tr>") != 6 || !strings.Contains(body, ">U000<") || strings.Contains(body, "Older entries") {
		t.Fatalf("second audit page: %d rows", strings.Count(body, "<tr>"))
	}
}

// A rollout held by a freeze or a window says so, and until when.
func TestOverviewWaiting(t *testing.T) {
	f := newFixture(t, 20, nil)
	r := *f.r
	r.Phase, r.WaitFor = rollout.PhaseWindow, "the window (Mon-Thu 02:00-05:00 Europe/Berlin)"
	r.WaitUntil = time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC).Add(7 * 24 * time.Hour)
	if err := f.db.UpdateRollout(context.Background(), "me", &r); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, f.signedIn(t), f.srv.URL+"/")
	for _, want := range []string{"waiting for the window (Mon-Thu 02:00-05:00 Europe/Berlin)", "(Tue 8 Dec 01:00 UTC)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
}

// Actors show by the names people know them by: who started the rollout and
// who halted it, on the overview, in the live stream's halt line and in the
// history; the audit log keeps the id beside the name.
func TestActorsByName(t *testing.T) {
	names := map[string]string{"U0ADMIN": "alice", "U0OPS": "bob"}
	f := newFixture(t, 10, func(cfg *web.Config) {
		cfg.Names = func(_ context.Context, id string) string {
			if n, ok := names[id]; ok {
				return n
			}
			return id
		}
	})
	ctx := context.Background()
	if _, err := f.db.RequestHalt(ctx, f.r.ID, rollout.Halt{By: "U0OPS", Reason: "errors up", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Audit(ctx, rollout.AuditEntry{At: time.Now(), Actor: "U0OPS", Source: rollout.SourceSlack, Action: "halt",
		RolloutID: 1, Allowed: true}); err != nil {
		t.Fatal(err)
	}
	c := f.signedIn(t)
	for p, wants := range map[string][]string{
		"/rollouts/1": {"Started by <strong>alice</strong>", "halted by bob: errors up"},
		"/history":    {"alice"},
		"/audit":      {"bob (U0OPS)"},
	} {
		_, body := get(t, c, f.srv.URL+p)
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", p, want)
			}
		}
		if p != "/audit" && (strings.Contains(body, "U0ADMIN") || strings.Contains(body, "U0OPS")) {
			t.Errorf("%s shows a Slack id where a name is known", p)
		}
	}
}
