// Package web serves a read-only, live view of rollouts over HTTP: the
// current rollout with its stages, counts and charts, its hosts (filtered,
// sorted and paged by the store), one host's result and output, the history
// and the audit log. Pages are rendered on the server with html/template;
// a small script follows a running rollout through server-sent events. Its
// assets are embedded. It reads the shared store only, so every process of
// a high-availability pair serves the same view.
//
// Visitors come through signed links (HMAC-SHA256, expiring) that the bot
// posts in Slack; a valid link sets a session cookie. Without either the
// answer is 401, unless the view is configured open for a team whose
// authenticating proxy decides who gets in.
package web

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the view reads.
type Store interface {
	Rollout(ctx context.Context, id int64) (*rollout.Rollout, error)
	RolloutsBefore(ctx context.Context, before int64, limit int) ([]*rollout.Rollout, error)
	Counts(ctx context.Context, rolloutID int64) (rollout.Counts, error)
	HostPage(ctx context.Context, rolloutID int64, q rollout.HostQuery) (rollout.HostPage, error)
	HostResult(ctx context.Context, rolloutID int64, idx int) (rollout.HostResult, error)
	HostTimings(ctx context.Context, rolloutID int64) ([]rollout.HostTiming, error)
	AuditBefore(ctx context.Context, before int64, limit int) ([]rollout.AuditEntry, error)
}

// Config configures the view.
type Config struct {
	Store Store
	// Signer checks signed links and sessions; nil only when Open.
	Signer *Signer
	// Open serves every visitor without a link or session: for a team whose
	// authenticating reverse proxy decides who reaches the view.
	Open bool
	// PublicURL is where people reach the view (https://… behind TLS); an
	// https address makes the session cookie Secure.
	PublicURL string
	// Poll is how often a live page's stream reads the store (default 1s);
	// one read serves every open page of a rollout.
	Poll time.Duration
	// Names says how people know an actor (a Slack user id): the bot's
	// users.info, cached. Nil shows the ids.
	Names  func(ctx context.Context, id string) string
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves the view.
type Handler struct {
	cfg    Config
	signer *Signer
	log    *slog.Logger
	mux    *http.ServeMux
	pages  map[string]*template.Template
	live   *liveCache
}

// New returns the view's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("web: no store")
	}
	if cfg.Signer == nil && !cfg.Open {
		return nil, fmt.Errorf("web: neither a signer for links nor open access")
	}
	cfg.Poll = cmp.Or(cfg.Poll, time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, signer: cfg.Signer, log: cfg.Logger, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	h.live = &liveCache{h: h, entries: map[int64]*liveEntry{}}
	for _, p := range []string{"overview", "hosts", "host", "history", "audit", "message"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/live.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", p, err)
		}
		h.pages[p] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.auth(h.overview))
	h.mux.HandleFunc("GET /rollouts/{id}", h.auth(h.overview))
	h.mux.HandleFunc("GET /rollouts/{id}/hosts", h.auth(h.hosts))
	h.mux.HandleFunc("GET /rollouts/{id}/hosts/{idx}", h.auth(h.host))
	h.mux.HandleFunc("GET /rollouts/{id}/events", h.auth(h.events))
	h.mux.HandleFunc("GET /history", h.auth(h.history))
	h.mux.HandleFunc("GET /audit", h.auth(h.audit))
	return h, nil
}

// Link returns the address of rollout id's view for people to open, signed
// unless the view is open, or "" when the view has no public address.
func (h *Handler) Link(id int64) string {
	links := Links(h.cfg.PublicURL, h.signer)
	if links == nil {
		return ""
	}
	return links(id)
}

// Links returns a function making the address of a rollout's view at
// publicURL, signed by s (unsigned when s is nil, for an open view), or nil
// when there is no public address. The bot puts these links in Slack.
func Links(publicURL string, s *Signer) func(id int64) string {
	if publicURL == "" {
		return nil
	}
	base := strings.TrimSuffix(publicURL, "/")
	return func(id int64) string {
		path := "/rollouts/" + strconv.FormatInt(id, 10)
		if s == nil {
			return base + path
		}
		return base + s.Sign(path)
	}
}

// ServeHTTP implements http.Handler, with headers that keep pages and the
// link's signature where they belong.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) auth(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.authorize(w, r) {
			f(w, r)
		}
	}
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string // the section the page belongs to, for aria-current
	Data  any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	var buf strings.Builder
	if err := h.pages[name].Execute(&buf, p); err != nil {
		h.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(buf.String()))
}

type message struct {
	Heading, Text string
	Follow        bool // the page shows the first rollout once there is one
}

func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request, text string) {
	h.render(w, r, http.StatusUnauthorized, "message", page{Title: "Not signed in", Data: message{Heading: "Not signed in", Text: text}})
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request, text string) {
	h.render(w, r, http.StatusNotFound, "message", page{Title: "Not found", Data: message{Heading: "Not found", Text: text}})
}

func (h *Handler) badRequest(w http.ResponseWriter, r *http.Request, text string) {
	h.render(w, r, http.StatusBadRequest, "message", page{Title: "Bad request", Data: message{Heading: "Bad request", Text: text}})
}

// fail answers a store error: the visitor gets a sentence, the log the detail.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	h.log.ErrorContext(r.Context(), "web view", "path", r.URL.Path, "err", err)
	h.render(w, r, http.StatusServiceUnavailable, "message", page{Title: "Unavailable",
		Data: message{Heading: "The store did not answer", Text: "Try again in a moment."}})
}

// liveCache shares the store reads of live streams: every page following a
// rollout reads it through one entry, at most once per poll interval.
type liveCache struct {
	h       *Handler
	mu      sync.Mutex
	entries map[int64]*liveEntry
}

type liveEntry struct {
	mu   sync.Mutex
	at   time.Time
	snap *snapshot
	err  error
}
