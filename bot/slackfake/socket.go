package slackfake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// serveLink is the Socket Mode websocket endpoint named by apps.connections.open.
func (s *Server) serveLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid, open := s.tickets[ticket] && !s.closed, 0
	for _, c := range s.conns {
		if !c.gone {
			open++
		}
	}
	full := open >= maxConnections // Sockets told to go do not count, so a refresh can reconnect.
	delete(s.tickets, ticket)      // Tickets are single use.
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid ticket", http.StatusUnauthorized)
		return
	}
	if full {
		http.Error(w, "too many connections", http.StatusTooManyRequests)
		return
	}
	// slack-go dials with Origin: https://api.slack.com.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"api.slack.com"}})
	if err != nil {
		return // Accept has answered the request.
	}
	c := &conn{ws: ws, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.CloseNow()
		return
	}
	s.conns = append(s.conns, c)
	s.opened++
	live := 1
	for _, o := range s.conns {
		if o.live() {
			live++
		}
	}
	s.wg.Add(2) // This handler and its ping loop; added under mu so Close cannot miss them.
	s.notifyLocked()
	s.mu.Unlock()
	defer s.wg.Done()
	defer s.dropConn(c)
	go s.pingLoop(c)

	hello, _ := json.Marshal(result{"type": "hello", "num_connections": live,
		"connection_info": result{"app_id": appID},
		"debug_info":      result{"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060}})
	if s.write(c, hello) != nil {
		return
	}
	s.mu.Lock()
	c.ready = true
	queued := s.queue
	s.queue = nil
	s.notifyLocked()
	s.mu.Unlock()
	for _, env := range queued {
		s.dispatch(env)
	}
	s.readLoop(c)
}

func (s *Server) write(c *conn, data []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("writing to socket: %w", err)
	}
	return nil
}

// readLoop records acks. It must keep reading: coder/websocket answers the
// client's close frames and takes our pings' pongs only while a read is running.
func (s *Server) readLoop(c *conn) {
	for {
		_, data, err := c.ws.Read(s.ctx)
		if err != nil {
			return
		}
		var a struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &a) != nil || a.EnvelopeID == "" {
			continue
		}
		s.mutate(func() {
			ack := Ack{EnvelopeID: a.EnvelopeID, Payload: a.Payload, ReceivedAt: time.Now()}
			if at, ok := s.delivered[a.EnvelopeID]; ok {
				ack.Delay = ack.ReceivedAt.Sub(at)
				delete(s.delivered, a.EnvelopeID)
			}
			s.acks = append(s.acks, ack)
		})
	}
}

// pingLoop sends websocket ping frames, which is what slack-go's socketmode
// client watches to decide the connection is alive.
func (s *Server) pingLoop(c *conn) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err == nil {
			s.mutate(func() { s.pings++ })
		}
	}
}

func (s *Server) dropConn(c *conn) {
	s.mutate(func() {
		c.gone = true
		s.conns = slices.DeleteFunc(s.conns, func(o *conn) bool { return o == c })
	})
	_ = c.ws.CloseNow()
	close(c.done)
}

// dispatch delivers an envelope to one ready socket, round robin, or queues it
// until one connects. An envelope whose write fails goes to the next socket.
func (s *Server) dispatch(env envelope) {
	for {
		s.mu.Lock()
		var c *conn
		for i := range s.conns {
			if o := s.conns[(s.rr+i)%len(s.conns)]; o.live() {
				c, s.rr = o, (s.rr+i+1)%len(s.conns)
				break
			}
		}
		if c == nil {
			s.queue = append(s.queue, env)
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
		s.delivered[env.id] = time.Now() // Before the write, which an ack may outrun.
		s.mu.Unlock()
		if s.write(c, env.data) == nil {
			return
		}
		s.mutate(func() {
			delete(s.delivered, env.id)
			c.gone = true
		})
		_ = c.ws.CloseNow()
	}
}

// Connections counts sockets that have been sent hello and not since told to disconnect.
func (s *Server) Connections() int {
	n := 0
	s.read(func() {
		for _, c := range s.conns {
			if c.live() {
				n++
			}
		}
	})
	return n
}

// ConnectionsOpened counts the websocket connections ever accepted.
func (s *Server) ConnectionsOpened() int {
	n := 0
	s.read(func() { n = s.opened })
	return n
}

// WaitConnections waits until at least n sockets have been sent hello.
func (s *Server) WaitConnections(ctx context.Context, n int) error {
	return s.WaitFor(ctx, func() bool { return s.Connections() >= n })
}

// Disconnect sends {"type":"disconnect","reason":reason} to every socket,
// stops giving them envelopes, and closes them shortly after, as Slack does.
func (s *Server) Disconnect(reason string) {
	msg, _ := json.Marshal(result{"type": "disconnect", "reason": reason,
		"debug_info": result{"host": "applink-fake"}})
	s.mu.Lock()
	var targets []*conn
	for _, c := range s.conns {
		if c.live() {
			c.gone = true
			targets = append(targets, c)
		}
	}
	if !s.closed {
		s.wg.Add(len(targets))
	} else {
		targets = nil
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, c := range targets {
		_ = s.write(c, msg)
		go func() {
			defer s.wg.Done()
			t := time.NewTimer(disconnectGrace)
			defer t.Stop()
			select {
			case <-t.C:
				_ = c.ws.Close(websocket.StatusNormalClosure, "")
			case <-c.done: // The client hung up first.
			}
		}()
	}
}

// DropConnections closes every socket abruptly, without a close frame, like a
// network drop.
func (s *Server) DropConnections() {
	var conns []*conn
	s.mutate(func() {
		for _, c := range s.conns {
			c.gone = true
		}
		conns = slices.Clone(s.conns)
	})
	for _, c := range conns {
		_ = c.ws.CloseNow()
	}
}

func (s *Server) newEnvelope(typ string, acceptsResponse bool, payload result) envelope {
	s.seq++
	id := fmt.Sprintf("5e1c0f2a-0000-4000-8000-%012d", s.seq)
	hook := fmt.Sprintf("/hooks/commands/%s/%d/fake", s.opts.TeamID, s.seq)
	payload["response_url"] = s.hs.URL + hook
	s.hooks[hook] = hookTarget{user: payloadID(payload, "user_id", "user"), channel: payloadID(payload, "channel_id", "channel")}
	payload["trigger_id"] = fmt.Sprintf("%d.%d.fake", s.seq, time.Now().UnixNano())
	payload["api_app_id"] = appID
	payload["token"] = verificationToken
	data, _ := json.Marshal(result{"envelope_id": id, "type": typ,
		"accepts_response_payload": acceptsResponse, "payload": payload})
	return envelope{id: id, data: data}
}

func (s *Server) channelName(id string) string {
	if c, ok := s.channels[id]; ok {
		return c.name
	}
	if strings.HasPrefix(id, "D") {
		return "directmessage"
	}
	return "privategroup" // What Slack sends for a channel the app cannot see.
}

// SlashCommand delivers a slash_commands envelope to one socket, or queues it
// until one connects, and returns its envelope id.
func (s *Server) SlashCommand(cmd SlashCommand) string {
	s.mu.Lock()
	env := s.newEnvelope("slash_commands", true, result{
		"team_id": s.opts.TeamID, "team_domain": teamDomain,
		"channel_id": cmd.ChannelID, "channel_name": s.channelName(cmd.ChannelID),
		"user_id": cmd.UserID, "user_name": s.users[cmd.UserID].Name,
		"command": cmp(cmd.Command, "/rollout"), "text": cmd.Text,
		"is_enterprise_install": "false", // A string in real payloads.
	})
	s.mu.Unlock()
	s.dispatch(env)
	return env.id
}

// ClickButton delivers a block_actions envelope for a click on a stored
// message, carrying that message as it is now, and returns its envelope id.
// A click on an ephemeral message (only its recipient can click it) carries
// no message, as Slack's does; its response_url can replace or delete it.
func (s *Server) ClickButton(b ButtonClick) (string, error) {
	s.mu.Lock()
	m := s.find(b.ChannelID, b.MessageTS)
	if m == nil {
		if e := s.findEphemeral(b.ChannelID, b.MessageTS, b.UserID); e != nil {
			defer s.mu.Unlock()
			return s.clickEphemeral(b, e), nil
		}
		s.mu.Unlock()
		return "", fmt.Errorf("slackfake: no message %s in channel %s", b.MessageTS, b.ChannelID)
	}
	blockID, label, value := findButton(m.Blocks, b.ActionID)
	name := s.users[b.UserID].Name
	container := result{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false}
	if m.ThreadTS != "" {
		container["thread_ts"] = m.ThreadTS
	}
	env := s.newEnvelope("interactive", false, result{
		"type":                  "block_actions",
		"user":                  result{"id": b.UserID, "username": name, "name": name, "team_id": s.opts.TeamID},
		"container":             container,
		"team":                  result{"id": s.opts.TeamID, "domain": teamDomain},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               result{"id": m.Channel, "name": s.channelName(m.Channel)},
		"message":               s.messageJSON(m),
		"state":                 result{"values": result{}},
		"actions": []result{{
			"action_id": b.ActionID, "block_id": cmp(b.BlockID, blockID),
			"text":  result{"type": "plain_text", "text": cmp(label, b.ActionID), "emoji": true},
			"value": cmp(b.Value, value), "type": "button", "action_ts": s.nextTS(),
		}},
	})
	s.mu.Unlock()
	s.dispatch(env)
	return env.id, nil
}

// findButton finds the button with actionID in an actions block or a section accessory.
func findButton(blocks json.RawMessage, actionID string) (blockID, label, value string) {
	var bs []block
	_ = json.Unmarshal(blocks, &bs)
	for _, b := range bs {
		for _, e := range b.elements() {
			if e.ActionID == actionID {
				return b.BlockID, e.label(), e.Value
			}
		}
	}
	return "", "", ""
}

// WaitAck waits for the ack of an envelope.
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (Ack, error) {
	var got Ack
	err := s.WaitFor(ctx, func() bool {
		for _, a := range s.Acks() {
			if a.EnvelopeID == envelopeID {
				got = a
				return true
			}
		}
		return false
	})
	if err != nil {
		return Ack{}, fmt.Errorf("waiting for ack of %s: %w", envelopeID, err)
	}
	return got, nil
}

// Acks returns every ack received, in order.
func (s *Server) Acks() []Ack {
	var out []Ack
	s.read(func() {
		for _, a := range s.acks {
			a.Payload = slices.Clone(a.Payload)
			out = append(out, a)
		}
	})
	return out
}

// payloadID reads a user or channel id from a slash command payload (flat
// key) or an interaction payload (an object with an id).
func payloadID(p result, flat, nested string) string {
	if v, ok := p[flat].(string); ok {
		return v
	}
	if m, ok := p[nested].(result); ok {
		if v, ok := m["id"].(string); ok {
			return v
		}
	}
	return ""
}

// findEphemeral finds the ephemeral message ts shown to user in channel; mu is held.
func (s *Server) findEphemeral(ch, ts, user string) *Message {
	for i := range s.ephemerals {
		if m := &s.ephemerals[i]; m.Channel == ch && m.TS == ts && m.User == user {
			return m
		}
	}
	return nil
}

// clickEphemeral delivers a click on ephemeral message m; mu is held and
// stays held, as dispatch only queues the envelope.
func (s *Server) clickEphemeral(b ButtonClick, m *Message) string {
	blockID, label, value := findButton(m.Blocks, b.ActionID)
	name := s.users[b.UserID].Name
	payload := result{
		"type":                  "block_actions",
		"user":                  result{"id": b.UserID, "username": name, "name": name, "team_id": s.opts.TeamID},
		"container":             result{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": true},
		"team":                  result{"id": s.opts.TeamID, "domain": teamDomain},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               result{"id": m.Channel, "name": s.channelName(m.Channel)},
		"state":                 result{"values": result{}},
		"actions": []result{{
			"action_id": b.ActionID, "block_id": cmp(b.BlockID, blockID),
			"text":  result{"type": "plain_text", "text": cmp(label, b.ActionID), "emoji": true},
			"value": cmp(b.Value, value), "type": "button", "action_ts": s.nextTS(),
		}},
	}
	env := s.newEnvelope("interactive", false, payload)
	if u, err := url.Parse(payload["response_url"].(string)); err == nil {
		t := s.hooks[u.Path]
		t.ts = m.TS
		s.hooks[u.Path] = t
	}
	s.mu.Unlock()
	s.dispatch(env)
	s.mu.Lock()
	return env.id
}
