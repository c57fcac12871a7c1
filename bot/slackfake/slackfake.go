// Package slackfake is a local stand-in for Slack's Web API and Socket Mode,
// served over real loopback HTTP and websockets, for end-to-end tests that
// drive the stock github.com/slack-go/slack client. It answers what slack-go
// v0.35.0 sends (form-encoded Web API calls with a token field; a JSON POST
// with a Bearer app token for apps.connections.open) in the shapes it decodes.
package slackfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

const (
	appID             = "A0001"
	botID             = "B0BOT"
	teamDomain        = "fake"
	verificationToken = "fake-verification-token"
	maxConnections    = 10 // Slack allows up to 10 Socket Mode connections per app.
	disconnectGrace   = time.Second
	writeTimeout      = 5 * time.Second
)

// Options configures a Server; zero fields take the documented defaults.
type Options struct {
	BotToken string // BotToken is the accepted bot token (default "xoxb-test").
	AppToken string // AppToken is the accepted app-level token (default "xapp-test").
	// PingInterval is how often each socket gets a websocket ping frame
	// (default 5s). slack-go reconnects when it sees no ping frame within its
	// own OptionPingInterval (30s by default); it does not understand JSON pings.
	PingInterval time.Duration
	TeamID       string // TeamID is the workspace id (default "T0001").
	BotUserID    string // BotUserID is the bot's user id, author of its messages (default "U0BOT").
}

// User is a workspace member as users.info reports it.
type User struct {
	ID, Name                                  string
	IsAdmin, IsOwner, IsPrimaryOwner, Deleted bool
}

// SlashCommand is a slash command a user types; Command defaults to "/rollout".
// Text is delivered verbatim, so pass it as Slack would (it HTML-escapes &, <, >).
type SlashCommand struct {
	UserID, ChannelID, Command, Text string
}

// ButtonClick is a click on a button of a stored message. Empty BlockID and
// Value are filled from the button with ActionID in the message's blocks.
type ButtonClick struct {
	UserID, ChannelID, MessageTS, ActionID, BlockID, Value string
}

// Ack is an envelope acknowledgement received from the bot.
type Ack struct {
	EnvelopeID string
	Payload    json.RawMessage // Payload is nil when the ack carried none.
	ReceivedAt time.Time
	Delay      time.Duration // Delay runs from delivery of the envelope to the ack.
}

// Message is a message the bot posted. For ephemerals User is the recipient.
type Message struct {
	Channel, TS, ThreadTS, User, Text string
	Blocks                            json.RawMessage
	Edits                             int
	History                           []json.RawMessage // History holds the blocks of each version, the original first.
	Attachments                       json.RawMessage
}

// Call is one Web API request the fake answered.
type Call struct {
	Method string
	At     time.Time
	Status int    // Status is the HTTP status answered.
	Error  string // Error is the Slack error string, empty when ok.
}

type channel struct {
	name      string
	botMember bool
}

type fault struct {
	retryAfter int // retryAfter >= 0 means HTTP 429; -1 means an ok:false error.
	err        string
}

type conn struct {
	ws    *websocket.Conn
	ready bool          // ready is set once hello is sent.
	gone  bool          // gone is set once the socket was told to go or failed; it gets no more envelopes.
	done  chan struct{} // done is closed when the read loop ends.
}

func (c *conn) live() bool { return c.ready && !c.gone }

type envelope struct {
	id   string
	data []byte
}

type result map[string]any

// Server is a running fake Slack. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	hs      *httptest.Server
	ctx     context.Context // ctx ends with Close and bounds every socket.
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	methods map[string]func(url.Values) result

	mu         sync.Mutex
	changed    chan struct{} // changed is closed and replaced on every state change.
	closed     bool
	users      map[string]User
	groups     map[string][]string
	channels   map[string]channel
	msgs       map[string][]*Message // msgs holds top-level messages and replies in post order.
	ephemerals []Message
	pins       map[string][]string
	lastTS     int64
	calls      []Call
	faults     map[string][]fault
	conns      []*conn
	rr         int
	tickets    map[string]bool
	queue      []envelope
	delivered  map[string]time.Time
	acks       []Ack
	opened     int
	seq        int
	hooks      map[string]hookTarget // response_url paths handed out
	pings      int
}

// New starts a fake Slack listening on 127.0.0.1 on a free port.
func New(opts Options) *Server {
	opts.BotToken = cmp(opts.BotToken, "xoxb-test")
	opts.AppToken = cmp(opts.AppToken, "xapp-test")
	opts.TeamID = cmp(opts.TeamID, "T0001")
	opts.BotUserID = cmp(opts.BotUserID, "U0BOT")
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	s := &Server{
		opts:      opts,
		changed:   make(chan struct{}),
		users:     map[string]User{opts.BotUserID: {ID: opts.BotUserID, Name: "rolloutbot"}},
		groups:    map[string][]string{},
		channels:  map[string]channel{},
		msgs:      map[string][]*Message{},
		pins:      map[string][]string{},
		faults:    map[string][]fault{},
		hooks:     map[string]hookTarget{},
		tickets:   map[string]bool{},
		delivered: map[string]time.Time{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.methods = map[string]func(url.Values) result{
		"apps.connections.open": s.connectionsOpen,
		"auth.test":             s.authTest,
		"chat.postMessage":      s.postMessage,
		"chat.update":           s.chatUpdate,
		"chat.postEphemeral":    s.postEphemeral,
		"pins.add":              s.pinsAdd,
		"pins.remove":           s.pinsRemove,
		"pins.list":             s.pinsList,
		"users.info":            s.usersInfo,
		"usergroups.users.list": s.usergroupUsers,
		"conversations.info":    s.conversationsInfo,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/link/", s.serveLink)
	mux.HandleFunc("/hooks/", s.serveHook)
	// Unstarted, so s.hs is set before any handler goroutine can read it.
	s.hs = httptest.NewUnstartedServer(mux)
	s.hs.Start()
	return s
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// APIURL is the Web API base with its trailing slash, for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.hs.URL + "/api/" }

// Close closes every socket and the listener and waits for its goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := slices.Clone(s.conns)
	s.notifyLocked()
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		_ = c.ws.CloseNow()
	}
	s.hs.Close()
	s.wg.Wait()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) mutate(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.notifyLocked()
}

// AddUser adds or replaces a workspace member.
func (s *Server) AddUser(u User) { s.mutate(func() { s.users[u.ID] = u }) }

// AddUserGroup adds or replaces a user group (subteam) with its members. The
// handle only documents the test: usergroups.users.list is served, by id.
func (s *Server) AddUserGroup(id, handle string, members ...string) {
	s.SetUserGroupMembers(id, members...)
}

// SetUserGroupMembers replaces the members of a user group.
func (s *Server) SetUserGroupMembers(id string, members ...string) {
	s.mutate(func() { s.groups[id] = slices.Clone(members) })
}

// AddChannel adds a channel; posting to it fails with not_in_channel unless botIsMember.
func (s *Server) AddChannel(id, name string, botIsMember bool) {
	s.mutate(func() { s.channels[id] = channel{name: name, botMember: botIsMember} })
}

// FailNext makes the next n calls of method answer HTTP 200 {"ok":false,"error":slackError}.
func (s *Server) FailNext(method, slackError string, n int) {
	s.mutate(func() {
		for range n {
			s.faults[method] = append(s.faults[method], fault{retryAfter: -1, err: slackError})
		}
	})
}

// RateLimitNext makes the next n calls of method answer HTTP 429 with Retry-After: retryAfter.
func (s *Server) RateLimitNext(method string, retryAfter, n int) {
	s.mutate(func() {
		for range n {
			s.faults[method] = append(s.faults[method], fault{retryAfter: max(retryAfter, 0), err: "ratelimited"})
		}
	})
}

// WaitFor returns once cond reports true, re-evaluating it on every state
// change, or with the context's error.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed // Taken before cond runs, so no change is missed.
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("slackfake: condition not met: %w", ctx.Err())
		case <-ch:
		}
	}
}

func (s *Server) read(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func copyMsg(m *Message) Message {
	c := *m
	c.Blocks = slices.Clone(m.Blocks)
	c.Attachments = slices.Clone(m.Attachments)
	c.History = make([]json.RawMessage, len(m.History))
	for i, h := range m.History {
		c.History[i] = slices.Clone(h)
	}
	return c
}

func (s *Server) filter(ch string, keep func(*Message) bool) []Message {
	var out []Message
	s.read(func() {
		for _, m := range s.msgs[ch] {
			if keep(m) {
				out = append(out, copyMsg(m))
			}
		}
	})
	return out
}

// Messages returns the top-level messages of a channel in post order.
func (s *Server) Messages(channel string) []Message {
	return s.filter(channel, func(m *Message) bool { return m.ThreadTS == "" })
}

// Replies returns the replies in a thread in post order.
func (s *Server) Replies(channel, threadTS string) []Message {
	return s.filter(channel, func(m *Message) bool { return m.ThreadTS == threadTS })
}

// Message returns a message (top-level or reply) by channel and ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	got := s.filter(channel, func(m *Message) bool { return m.TS == ts })
	if len(got) == 0 {
		return Message{}, false
	}
	return got[0], true
}

// Pins returns the ts of the pinned messages of a channel in pin order.
func (s *Server) Pins(channel string) []string {
	var out []string
	s.read(func() { out = slices.Clone(s.pins[channel]) })
	return out
}

// Ephemerals returns the ephemeral messages shown to user in channel.
func (s *Server) Ephemerals(channel, user string) []Message {
	var out []Message
	s.read(func() {
		for i := range s.ephemerals {
			if m := &s.ephemerals[i]; m.Channel == channel && m.User == user {
				out = append(out, copyMsg(m))
			}
		}
	})
	return out
}

// Calls counts the calls of a Web API method, failed and rate-limited ones included.
func (s *Server) Calls(method string) int {
	n := 0
	s.read(func() {
		for _, c := range s.calls {
			if c.Method == method {
				n++
			}
		}
	})
	return n
}

// CallLog returns every Web API call answered, in order.
func (s *Server) CallLog() []Call {
	var out []Call
	s.read(func() { out = slices.Clone(s.calls) })
	return out
}

// serveAPI answers a Web API call. Injected faults come first, so "the next
// n calls" is exact whatever the request holds.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	params, token, perr := readParams(r)
	status, retryAfter := http.StatusOK, -1
	s.mu.Lock()
	var res result
	h, known := s.methods[method]
	switch {
	case len(s.faults[method]) > 0:
		f := s.faults[method][0]
		s.faults[method] = s.faults[method][1:]
		if f.retryAfter >= 0 {
			status, retryAfter = http.StatusTooManyRequests, f.retryAfter
		}
		res = fail(f.err)
	case !known:
		res = fail("unknown_method")
	case perr != nil:
		res = fail("invalid_form_data")
	default:
		want := s.opts.BotToken
		if method == "apps.connections.open" {
			want = s.opts.AppToken
		}
		if e := s.authErr(token, want); e != "" {
			res = fail(e)
		} else {
			res = h(params)
		}
	}
	call := Call{Method: method, At: time.Now(), Status: status}
	if ok, _ := res["ok"].(bool); !ok {
		call.Error, _ = res["error"].(string)
	}
	s.calls = append(s.calls, call)
	s.notifyLocked()
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if retryAfter >= 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(res)
}

// readParams merges query, form and JSON body parameters; the token comes
// from the Authorization header (JSON and GET calls) or the token field
// (slack-go's form-encoded calls send no header).
func readParams(r *http.Request) (url.Values, string, error) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var p url.Values
	if ct == "application/json" {
		p = r.URL.Query()
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return nil, "", fmt.Errorf("decoding JSON body: %w", err)
		}
		for k, v := range body {
			if str, ok := v.(string); ok {
				p.Set(k, str)
				continue
			}
			b, _ := json.Marshal(v)
			p.Set(k, string(b))
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return nil, "", fmt.Errorf("parsing form: %w", err)
		}
		p = r.Form
	}
	if token == "" {
		token = p.Get("token")
	}
	return p, token, nil
}

func (s *Server) authErr(got, want string) string {
	switch got {
	case "":
		return "not_authed"
	case want:
		return ""
	case s.opts.BotToken, s.opts.AppToken:
		return "not_allowed_token_type"
	}
	return "invalid_auth"
}

func fail(e string) result { return result{"ok": false, "error": e} }

func ok(r result) result {
	r["ok"] = true
	return r
}

// The Web API methods below run with s.mu held.

func (s *Server) connectionsOpen(url.Values) result {
	s.seq++
	ticket := fmt.Sprintf("fake-ticket-%d", s.seq)
	s.tickets[ticket] = true
	u := "ws" + strings.TrimPrefix(s.hs.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + appID
	return ok(result{"url": u})
}

func (s *Server) authTest(url.Values) result {
	return ok(result{"url": "https://" + teamDomain + ".slack.com/", "team": "Fake", "user": "rolloutbot",
		"team_id": s.opts.TeamID, "user_id": s.opts.BotUserID, "bot_id": botID, "is_enterprise_install": false})
}

func (s *Server) channelErr(ch string) string {
	c, known := s.channels[ch]
	switch {
	case !known:
		return "channel_not_found"
	case !c.botMember:
		return "not_in_channel"
	}
	return ""
}

func (s *Server) find(ch, ts string) *Message {
	for _, m := range s.msgs[ch] {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

// nextTS is a Slack-style "seconds.micros" stamp, unique and strictly increasing.
func (s *Server) nextTS() string {
	now := max(time.Now().UnixMicro(), s.lastTS+1)
	s.lastTS = now
	return fmt.Sprintf("%d.%06d", now/1e6, now%1e6)
}

// setContent copies the text, blocks and attachments present in p onto m.
// Absent fields keep their value, so chat.update without blocks keeps them
// and blocks=[] removes them. On error m is unchanged.
func setContent(m *Message, p url.Values) string {
	next := *m
	if p.Has("text") {
		if next.Text = p.Get("text"); utf8.RuneCountInString(next.Text) > 40000 {
			return "msg_too_long"
		}
	}
	if p.Has("blocks") {
		var e string
		if next.Blocks, e = validBlocks(p.Get("blocks")); e != "" {
			return e
		}
	}
	if p.Has("attachments") {
		raw := p.Get("attachments")
		if !json.Valid([]byte(raw)) {
			return "invalid_attachments"
		}
		next.Attachments = nil
		if raw != "[]" && raw != "null" {
			next.Attachments = json.RawMessage(raw)
		}
	}
	*m = next
	return ""
}

// block is the part of a Block Kit block the fake checks and clicks.
type block struct {
	Type    string `json:"type"`
	BlockID string `json:"block_id"`
	Text    *struct {
		Text string `json:"text"`
	} `json:"text"`
	Accessory *element  `json:"accessory"`
	Elements  []element `json:"elements"`
}

// element is a block element. Its text is an object for buttons but a plain
// string for the text elements of a context block, so it is decoded lazily.
type element struct {
	Type     string          `json:"type"`
	ActionID string          `json:"action_id"`
	Value    string          `json:"value"`
	RawText  json.RawMessage `json:"text"`
	Confirm  *struct {
		Title, Text, Confirm, Deny struct {
			Text string `json:"text"`
		}
	} `json:"confirm"`
}

// confirmOK checks a button's confirm dialog against Slack's limits: title
// 100 characters, text 300, the two buttons 30 each.
func (e element) confirmOK() bool {
	c := e.Confirm
	if c == nil {
		return true
	}
	n := utf8.RuneCountInString
	return n(c.Title.Text) <= 100 && n(c.Text.Text) <= 300 && n(c.Confirm.Text) <= 30 && n(c.Deny.Text) <= 30
}

// label is a button's text.
func (e element) label() string {
	var t struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(e.RawText, &t)
	return t.Text
}

func (b block) elements() []element {
	if b.Accessory == nil {
		return b.Elements
	}
	return append(slices.Clone(b.Elements), *b.Accessory)
}

// validBlocks enforces the Block Kit limits a progress message can hit:
// 50 blocks, 3,000-character section text, 75-character button labels,
// 2,000-character button values, confirm dialogs. An empty list is nil.
func validBlocks(raw string) (json.RawMessage, string) {
	var blocks []block
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		return nil, "invalid_blocks_format"
	}
	if len(blocks) > 50 {
		return nil, "invalid_blocks"
	}
	for _, b := range blocks {
		if b.Type == "section" && b.Text != nil && utf8.RuneCountInString(b.Text.Text) > 3000 {
			return nil, "invalid_blocks"
		}
		for _, e := range b.elements() {
			if e.Type == "button" && (utf8.RuneCountInString(e.label()) > 75 || utf8.RuneCountInString(e.Value) > 2000 || !e.confirmOK()) {
				return nil, "invalid_blocks"
			}
		}
	}
	if len(blocks) == 0 {
		return nil, ""
	}
	return json.RawMessage(raw), ""
}

func (s *Server) messageJSON(m *Message) result {
	r := result{"type": "message", "user": m.User, "bot_id": botID, "app_id": appID,
		"team": s.opts.TeamID, "text": m.Text, "ts": m.TS}
	if m.ThreadTS != "" {
		r["thread_ts"] = m.ThreadTS
	}
	if m.Blocks != nil {
		r["blocks"] = m.Blocks
	}
	if m.Attachments != nil {
		r["attachments"] = m.Attachments
	}
	return r
}

func (s *Server) postMessage(p url.Values) result {
	ch := p.Get("channel")
	if e := s.channelErr(ch); e != "" {
		return fail(e)
	}
	m := &Message{Channel: ch, User: s.opts.BotUserID}
	if e := setContent(m, p); e != "" {
		return fail(e)
	}
	if m.Text == "" && m.Blocks == nil && m.Attachments == nil {
		return fail("no_text")
	}
	// A reply to a reply joins the parent's thread; a reply to an unknown ts
	// is posted un-threaded, as Slack does when the parent was deleted.
	if parent := s.find(ch, p.Get("thread_ts")); parent != nil {
		m.ThreadTS = cmp(parent.ThreadTS, parent.TS)
	}
	m.TS = s.nextTS()
	m.History = []json.RawMessage{m.Blocks}
	s.msgs[ch] = append(s.msgs[ch], m)
	return ok(result{"channel": ch, "ts": m.TS, "message": s.messageJSON(m)})
}

func (s *Server) chatUpdate(p url.Values) result {
	ch := p.Get("channel")
	if _, known := s.channels[ch]; !known {
		return fail("channel_not_found")
	}
	m := s.find(ch, p.Get("ts"))
	if m == nil {
		return fail("message_not_found")
	}
	if e := setContent(m, p); e != "" {
		return fail(e)
	}
	m.Edits++
	m.History = append(m.History, m.Blocks)
	return ok(result{"channel": ch, "ts": m.TS, "text": m.Text, "message": s.messageJSON(m)})
}

func (s *Server) postEphemeral(p url.Values) result {
	ch, user := p.Get("channel"), p.Get("user")
	if e := s.channelErr(ch); e != "" {
		return fail(e)
	}
	if _, known := s.users[user]; !known {
		return fail("user_not_found")
	}
	m := Message{Channel: ch, User: user, ThreadTS: p.Get("thread_ts")}
	if e := setContent(&m, p); e != "" {
		return fail(e)
	}
	m.TS = s.nextTS()
	m.History = []json.RawMessage{m.Blocks}
	s.ephemerals = append(s.ephemerals, m)
	return ok(result{"message_ts": m.TS})
}

func (s *Server) pinsAdd(p url.Values) result {
	ch, ts := p.Get("channel"), p.Get("timestamp")
	switch {
	case s.channelErr(ch) != "":
		return fail(s.channelErr(ch))
	case ts == "":
		return fail("no_item_specified")
	case s.find(ch, ts) == nil:
		return fail("message_not_found")
	case slices.Contains(s.pins[ch], ts):
		return fail("already_pinned")
	}
	s.pins[ch] = append(s.pins[ch], ts)
	return ok(result{})
}

func (s *Server) pinsRemove(p url.Values) result {
	ch, ts := p.Get("channel"), p.Get("timestamp")
	if e := s.channelErr(ch); e != "" {
		return fail(e)
	}
	i := slices.Index(s.pins[ch], ts)
	if i < 0 {
		return fail("no_pin")
	}
	s.pins[ch] = slices.Delete(s.pins[ch], i, i+1)
	return ok(result{})
}

func (s *Server) pinsList(p url.Values) result {
	ch := p.Get("channel")
	if _, known := s.channels[ch]; !known {
		return fail("channel_not_found")
	}
	items := []result{}
	for _, ts := range s.pins[ch] {
		if m := s.find(ch, ts); m != nil {
			items = append(items, result{"type": "message", "channel": ch, "created_by": s.opts.BotUserID, "message": s.messageJSON(m)})
		}
	}
	return ok(result{"items": items})
}

func (s *Server) usersInfo(p url.Values) result {
	u, known := s.users[p.Get("user")]
	if !known {
		return fail("user_not_found")
	}
	return ok(result{"user": result{"id": u.ID, "team_id": s.opts.TeamID, "name": u.Name, "real_name": u.Name,
		"deleted": u.Deleted, "is_admin": u.IsAdmin, "is_owner": u.IsOwner, "is_primary_owner": u.IsPrimaryOwner,
		"is_bot": u.ID == s.opts.BotUserID, "profile": result{"real_name": u.Name, "display_name": u.Name}}})
}

func (s *Server) usergroupUsers(p url.Values) result {
	members, known := s.groups[p.Get("usergroup")]
	if !known {
		return fail("no_such_subteam")
	}
	return ok(result{"users": append([]string{}, members...)})
}

func (s *Server) conversationsInfo(p url.Values) result {
	id := p.Get("channel")
	c, known := s.channels[id]
	if !known {
		return fail("channel_not_found")
	}
	return ok(result{"channel": result{"id": id, "name": c.name, "is_channel": true, "is_member": c.botMember,
		"is_private": false, "is_archived": false}})
}

// hookTarget is who a response_url answers.
type hookTarget struct {
	user, channel string
	ts            string // the ephemeral message clicked, which the hook may replace or delete
}

// serveHook answers response_url posts so a bot that uses them never reaches
// the real hooks.slack.com. They are logged as method "response_url", and an
// ephemeral answer is kept with the other ephemerals for its user.
func (s *Server) serveHook(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text         string          `json:"text"`
		Blocks       json.RawMessage `json:"blocks"`
		ResponseType string          `json:"response_type"`
		Replace      bool            `json:"replace_original"`
		Delete       bool            `json:"delete_original"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body)
	s.mutate(func() {
		s.calls = append(s.calls, Call{Method: "response_url", At: time.Now(), Status: http.StatusOK})
		t, ok := s.hooks[r.URL.Path]
		var orig *Message
		if ok && t.ts != "" {
			orig = s.findEphemeral(t.channel, t.ts, t.user)
		}
		switch {
		case orig != nil && body.Delete:
			s.ephemerals = slices.DeleteFunc(s.ephemerals, func(m Message) bool { return m.TS == t.ts && m.User == t.user })
		case orig != nil && body.Replace:
			orig.Text, orig.Blocks = body.Text, body.Blocks
			orig.History = append(orig.History, body.Blocks)
		case ok && body.ResponseType != "in_channel":
			s.ephemerals = append(s.ephemerals, Message{Channel: t.channel, User: t.user, Text: body.Text, Blocks: body.Blocks,
				TS: s.nextTS()})
		}
	})
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok")
}
