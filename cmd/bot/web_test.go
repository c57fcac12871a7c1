package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/bot/slackfake"
	"github.com/rolloutbot/rolloutbot/rollout"
)

const testWebSecret = "serve-test-secret-0123456789abcdef"

// serve with the web view: the status message links to it, the link opens
// a session, the view needs one (401 without), /healthz and /metrics stay
// as they were, and an open live stream does not hold up the shutdown.
func TestServeWebView(t *testing.T) {
	f, fake, addr := slackFixture(t, fixtureOptions{hosts: 4})
	cfg, err := os.OpenFile(f.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(cfg, "  public_url: http://%s\n", addr)
	cfg.Close()
	env := map[string]string{"ROLLOUTBOT_WEB_SECRET": testWebSecret}
	for _, kv := range f.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var logs syncBuffer
	m := &Main{Stdout: io.Discard, Stderr: &logs, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, []string{"serve", "--config", f.cfg}) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	waitConnections(t, fake, 1)
	fake.SlashCommand(slackfake.SlashCommand{UserID: admin, ChannelID: "C0OPS", Text: "start v2 now"})
	waitState(t, f, func(r *rollout.Rollout) bool { return r.Phase == rollout.PhaseCompleted })

	var link string
	deadline := time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); link == "" && time.Now().Before(deadline); <-tick.C {
		for _, msg := range fake.Messages("C0OPS") {
			if mt := regexp.MustCompile(`"url":"([^"]+)"`).FindStringSubmatch(string(msg.Blocks)); mt != nil {
				link = strings.ReplaceAll(mt[1], `\u0026`, "&")
			}
		}
	}
	if !strings.HasPrefix(link, "http://"+addr+"/rollouts/1?exp=") || !strings.Contains(link, "sig=") {
		t.Fatalf("status message link %q", link)
	}
	if code, _ := get(t, "http://"+addr+"/rollouts/1"); code != http.StatusUnauthorized {
		t.Fatalf("the view without a link: %d", code)
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	if code, _ := get(t, "http://"+addr+"/metrics"); code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "Rollout #1") || !strings.Contains(string(body), "completed") {
		t.Fatalf("the signed link: %d\n%s", res.StatusCode, body)
	}
	if strings.Contains(string(body), testWebSecret) || strings.Contains(string(body), "xoxb-") || strings.Contains(logs.String(), testWebSecret) {
		t.Fatal("a secret shows in the page or the log")
	}

	// A live stream is open while the process stops: serve still returns.
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", "http://"+addr+"/rollouts/1/events", nil)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if line, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("events stream: %q %v", line, err)
	}
	cancel()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-sctx.Done():
		t.Fatal("serve did not stop while a live stream was open")
	}
}
