package web_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rolloutbot/rolloutbot/web"
)

// TestScreenshots writes PNGs of the web view's main pages into the
// directory WEB_SCREENSHOTS names (`make screenshots`), from a simulated
// fleet: one rollout done, a second one caught halfway and at its end.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("WEB_SCREENSHOTS")
	if dir == "" {
		t.Skip("writes screenshots only when asked: make screenshots (WEB_SCREENSHOTS=DIR)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t, 1280, 1280)
	s := startSim(t, 120, 40*time.Millisecond, 4)
	signer := web.NewSigner([]byte(secret), time.Hour, nil)
	base := view(t, s.db, signer)
	_, run := s.start(t)
	if err := run(); err != nil {
		t.Fatal(err)
	}
	r, run := s.startVersion(t, "v3")
	id := strconv.FormatInt(r.ID, 10)
	do(t, ctx, chromedp.Navigate(base+signer.Sign("/")), chromedp.WaitVisible(chromedp.CSS(`[data-count="success"]`)))
	ran := make(chan error, 1)
	go func() { ran <- run() }()
	waitAtLeast(t, ctx, `+document.querySelector('[data-field="percent"]').textContent`, 45)
	waitText(t, ctx, `document.querySelector('#stages [aria-current]').textContent`, "50%") // the stages refreshed
	shot(t, ctx, dir, "overview-live.png")
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, `document.querySelector('[data-field="label"]').textContent`, "completed")
	waitText(t, ctx, `document.getElementById('failures').textContent`, "rolled back") // the lists refreshed
	waitText(t, ctx, `document.querySelectorAll('#stages .stage-done').length + ''`, "3")
	shot(t, ctx, dir, "overview.png")
	do(t, ctx, chromedp.Navigate(base+"/rollouts/"+id+"/hosts?sort=duration&dir=desc"), chromedp.WaitVisible(chromedp.ID("host-table")))
	shot(t, ctx, dir, "hosts.png")
	do(t, ctx, chromedp.Navigate(base+"/rollouts/"+id+"/hosts?status=failures"), chromedp.WaitVisible(chromedp.ID("host-table")))
	shot(t, ctx, dir, "hosts-failures.png")
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#host-table tbody a`))); err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, dir, "host.png")
	do(t, ctx, chromedp.Navigate(base+"/history"), chromedp.WaitVisible(chromedp.CSS("table")))
	shot(t, ctx, dir, "history.png")
	do(t, ctx, chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.CSS("table")))
	shot(t, ctx, dir, "audit.png")
	do(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(base+"/rollouts/"+id), chromedp.WaitVisible(chromedp.CSS(`[data-count="success"]`)))
	shot(t, ctx, dir, "phone.png")
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := must[[]byte](t)(chromedp.Run(ctx, chromedp.CaptureScreenshot()))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d KB", name, len(png)/1024)
}

// waitAtLeast polls a number in the page, at most 60 s, until it is at least n.
func waitAtLeast(t testing.TB, ctx context.Context, js string, n float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); eval[float64](t, ctx, js) < n; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %v", js, n)
		}
	}
}
