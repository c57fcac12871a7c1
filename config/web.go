package config

import (
	"fmt"
	"net/url"
	"time"
)

// Web configures the read-only web view, served on http.addr beside
// /healthz and /metrics and reached at http.public_url.
type Web struct {
	// Auth is how visitors get in: "signed" (the default) through links the
	// bot posts in Slack, signed with ROLLOUTBOT_WEB_SECRET, which open a
	// session; or "proxy": no link or session is checked, for a team whose
	// authenticating reverse proxy decides who reaches the view.
	Auth string `yaml:"auth"`
	// LinkTTL is how long a signed link, and the session it opens, lasts.
	LinkTTL time.Duration `yaml:"link_ttl"`
	// Secret signs links and sessions; from ROLLOUTBOT_WEB_SECRET.
	Secret string `yaml:"-"`
}

// Web access modes.
const (
	WebSigned = "signed"
	WebProxy  = "proxy"
)

// minWebSecret is the shortest secret accepted for signing links.
const minWebSecret = 32

// WebEnabled reports whether serve serves the web view: on the ops address,
// with a secret to check links by or behind an authenticating proxy.
func (c *Config) WebEnabled() bool {
	return c.HTTP.Addr != "" && (c.Web.Secret != "" || c.Web.Auth == WebProxy)
}

// validateWeb names what is wrong with the web view's settings.
func (c *Config) validateWeb() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Web.Auth {
	case WebSigned, WebProxy:
	default:
		add("web.auth: %q is not signed or proxy", c.Web.Auth)
	}
	if c.Web.LinkTTL < time.Minute || c.Web.LinkTTL > 30*24*time.Hour {
		add("web.link_ttl: %s must be between 1m and 720h", c.Web.LinkTTL)
	}
	if c.Web.Secret != "" && len(c.Web.Secret) < minWebSecret {
		add("ROLLOUTBOT_WEB_SECRET: %d characters is too short to sign links; use at least %d (e.g. openssl rand -hex 32)",
			len(c.Web.Secret), minWebSecret)
	}
	if c.HTTP.PublicURL == "" {
		return errs
	}
	u, err := url.Parse(c.HTTP.PublicURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		add("http.public_url: %q is not an http:// or https:// address", c.HTTP.PublicURL)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		add("http.public_url: %q must be the root of a host (no path, query or user): the view is served at /", c.HTTP.PublicURL)
	}
	if c.HTTP.Addr == "" {
		add("http.public_url: the web view is served on http.addr, which is empty")
	}
	if c.Web.Auth == WebSigned && c.Web.Secret == "" {
		add("ROLLOUTBOT_WEB_SECRET: http.public_url is set, so links to the web view are signed: set a secret of at least %d characters (or web.auth: proxy behind an authenticating proxy)", minWebSecret)
	}
	return errs
}
