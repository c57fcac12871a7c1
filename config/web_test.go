package config_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/config"
)

const webSecret = "0123456789abcdef0123456789abcdef-web"

func TestWebDefaultsAndSecret(t *testing.T) {
	c := mustLoad(t, minimal, nil)
	if c.Web.Auth != config.WebSigned || c.Web.LinkTTL != 12*time.Hour || c.HTTP.PublicURL != "" || c.WebEnabled() {
		t.Fatalf("defaults: %+v, public_url %q, enabled %v", c.Web, c.HTTP.PublicURL, c.WebEnabled())
	}
	withURL := minimal + "http:\n  addr: 127.0.0.1:9090\n  public_url: https://rollouts.example.com\nweb:\n  link_ttl: 2h\n"
	c = mustLoad(t, withURL, env("ROLLOUTBOT_WEB_SECRET", webSecret))
	if c.Web.Secret != webSecret || c.Web.LinkTTL != 2*time.Hour || !c.WebEnabled() || c.HTTP.PublicURL != "https://rollouts.example.com" {
		t.Fatalf("from the environment: %+v %q", c.Web, c.HTTP.PublicURL)
	}
	file := writeFile(t, filepath.Join(t.TempDir(), "web_secret"), webSecret+"\n")
	c = mustLoad(t, withURL, env("ROLLOUTBOT_WEB_SECRET_FILE", file))
	if c.Web.Secret != webSecret {
		t.Fatalf("from a file: %q", c.Web.Secret)
	}
	_, err := load(t, withURL, env("ROLLOUTBOT_WEB_SECRET_FILE", file, "ROLLOUTBOT_WEB_SECRET", webSecret))
	if err == nil || !strings.Contains(err.Error(), "ROLLOUTBOT_WEB_SECRET and ROLLOUTBOT_WEB_SECRET_FILE") {
		t.Fatalf("both set: %v", err)
	}
	c = mustLoad(t, minimal+"web:\n  auth: proxy\n", nil)
	if !c.WebEnabled() {
		t.Fatal("behind an authenticating proxy the view needs no secret")
	}
}

func TestValidateWeb(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"unknown auth", func(c *config.Config) { c.Web.Auth = "none" }, []string{"web.auth", "none"}},
		{"link ttl 0", func(c *config.Config) { c.Web.LinkTTL = 0 }, []string{"web.link_ttl"}},
		{"link ttl a year", func(c *config.Config) { c.Web.LinkTTL = 365 * 24 * time.Hour }, []string{"web.link_ttl"}},
		{"short secret", func(c *config.Config) { c.Web.Secret = "short" }, []string{"ROLLOUTBOT_WEB_SECRET", "too short"}},
		{"public url without secret", func(c *config.Config) { c.HTTP.PublicURL = "https://r.example.com" }, []string{"ROLLOUTBOT_WEB_SECRET", "http.public_url"}},
		{"public url not http", func(c *config.Config) { c.HTTP.PublicURL, c.Web.Secret = "ftp://r.example.com", webSecret }, []string{"http.public_url", "ftp"}},
		{"public url with a path", func(c *config.Config) { c.HTTP.PublicURL, c.Web.Secret = "https://r.example.com/bot", webSecret }, []string{"http.public_url", "root"}},
		{"public url without addr", func(c *config.Config) {
			c.HTTP.PublicURL, c.Web.Secret, c.HTTP.Addr = "https://r.example.com", webSecret, ""
		}, []string{"http.public_url", "http.addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not name %q", err, w)
				}
			}
			if strings.Contains(err.Error(), webSecret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	c := valid()
	c.HTTP.PublicURL, c.Web.Secret = "https://r.example.com/", webSecret
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid web view: %v", err)
	}
}
