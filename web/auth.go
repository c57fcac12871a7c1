package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// sessionCookie holds a visitor's session: its expiry and a signature, no
// state on the server, so every process of a high-availability pair (and a
// restarted one) accepts it.
const sessionCookie = "rolloutbot_web"

// Signer makes and checks signed links and sessions: HMAC-SHA256 under the
// configured secret, each with its expiry inside what is signed.
type Signer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

// NewSigner returns a signer whose links and sessions last ttl.
func NewSigner(secret []byte, ttl time.Duration, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{secret: secret, ttl: ttl, now: now}
}

func (s *Signer) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(strings.Join(parts, "\n")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns path with the query that opens it until the signer's ttl has
// passed: exp (Unix seconds) and sig, over the path and exp.
func (s *Signer) Sign(path string) string {
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return path + "?" + url.Values{"exp": {exp}, "sig": {s.mac("link", path, exp)}}.Encode()
}

// checkLink reports whether exp and sig are a valid, unexpired signature of path.
func (s *Signer) checkLink(path, exp, sig string) bool {
	return s.valid(exp) && hmac.Equal([]byte(sig), []byte(s.mac("link", path, exp)))
}

// valid reports whether exp is a time in the future.
func (s *Signer) valid(exp string) bool {
	t, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && s.now().Unix() < t
}

// session returns a new session cookie's value and its expiry.
func (s *Signer) session() (string, time.Time) {
	until := s.now().Add(s.ttl)
	exp := strconv.FormatInt(until.Unix(), 10)
	return exp + "." + s.mac("session", exp), until
}

// checkSession reports whether v is a valid, unexpired session.
func (s *Signer) checkSession(v string) bool {
	exp, sig, ok := strings.Cut(v, ".")
	return ok && s.valid(exp) && hmac.Equal([]byte(sig), []byte(s.mac("session", exp)))
}

// authorize lets a request through (true) or answers it (false): a signed
// link sets a session and redirects to the same page without the signature
// (so it stays out of the address bar, the history and any Referer); a
// valid session passes; anything else is 401.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.Open {
		return true
	}
	q := r.URL.Query()
	if q.Has("sig") || q.Has("exp") {
		if !h.signer.checkLink(r.URL.Path, q.Get("exp"), q.Get("sig")) {
			h.unauthorized(w, r, "This link is not valid: it has expired or was changed.")
			return false
		}
		v, until := h.signer.session()
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", Expires: until,
			MaxAge: int(h.signer.ttl.Seconds()), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)})
		q.Del("sig")
		q.Del("exp")
		to := r.URL.Path
		if len(q) > 0 {
			to += "?" + q.Encode()
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return false
	}
	if c, err := r.Cookie(sessionCookie); err == nil && h.signer.checkSession(c.Value) {
		return true
	}
	h.unauthorized(w, r, "Open this page from the link in Slack: the rollout's status message, or /rollout status.")
	return false
}

// secure reports whether the session cookie must be sent over TLS only: the
// public address is https, or this request came over TLS.
func (h *Handler) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(h.cfg.PublicURL, "https://")
}
