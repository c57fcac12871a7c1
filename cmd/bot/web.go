package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/web"
)

// webSigner signs the web view's links, or is nil when the view is open
// (behind an authenticating proxy) or not configured.
func webSigner(cfg *config.Config) *web.Signer {
	if cfg.Web.Auth == config.WebProxy || cfg.Web.Secret == "" {
		return nil
	}
	return web.NewSigner([]byte(cfg.Web.Secret), cfg.Web.LinkTTL, nil)
}

// webLinks makes the "Open in browser" links Slack messages carry, or is
// nil when the web view is not served or has no public address.
func webLinks(cfg *config.Config) func(int64) string {
	if !cfg.WebEnabled() {
		return nil
	}
	return web.Links(cfg.HTTP.PublicURL, webSigner(cfg))
}

// webView is the web view `serve` serves on the ops address, or nil; names
// tells who a Slack user id is.
func webView(cfg *config.Config, db *store.DB, names func(context.Context, string) string, log *slog.Logger) (http.Handler, error) {
	if !cfg.WebEnabled() {
		return nil, nil
	}
	v, err := web.New(web.Config{Store: db, Signer: webSigner(cfg), Open: cfg.Web.Auth == config.WebProxy,
		PublicURL: cfg.HTTP.PublicURL, Names: names, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("web view on the ops address", "addr", cfg.HTTP.Addr, "public_url", cfg.HTTP.PublicURL, "auth", cfg.Web.Auth)
	return v, nil
}
