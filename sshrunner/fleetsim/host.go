package fleetsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner"
)

// host is one simulated machine: a listener, its keys and its mutable state.
type host struct {
	f     *Fleet
	info  HostInfo
	conf  *ssh.ServerConfig // presents known
	known ssh.PublicKey     // the key KnownHosts lists
	stats counters

	mu       sync.Mutex
	version  string
	behavior Behavior
	dropped  bool              // Drop has dropped once since it was set
	altConf  *ssh.ServerConfig // for ChangedKey: presents a key nobody knows
	rng      *rand.Rand        // jitter; nil without Options.Jitter
	ln       net.Listener      // nil while unreachable
	conns    map[net.Conn]struct{}
	closed   bool
	running  int64 // recipe commands running now

	// The host's side of sshrunner's fence wrapper: its lock, the newest
	// fence it ran a command under, and its record of the last update or
	// rollback.
	lock  chan struct{}
	fence rollout.Fence
	last  rollout.LastCommand
}

// counters are a host's Stats, updated without locks on the hot path.
type counters struct {
	connections, sessions, versions, updates, healthChecks, rollbacks atomic.Int64
	fenced, maxRunning                                                atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Connections:  c.connections.Load(),
		Sessions:     c.sessions.Load(),
		Versions:     c.versions.Load(),
		Updates:      c.updates.Load(),
		HealthChecks: c.healthChecks.Load(),
		Rollbacks:    c.rollbacks.Load(),
		Fenced:       c.fenced.Load(),
		MaxRunning:   c.maxRunning.Load(),
	}
}

// newHost binds host i's port, the one after *lastPort if it is free; its
// accept loop is started by the caller.
func (f *Fleet) newHost(i, width int, lastPort *int) (*host, error) {
	b := f.opts.Behaviors[i]
	if b == "" {
		b = OK
	}
	h := &host{f: f, version: f.opts.InitialVersion, behavior: b, conns: map[net.Conn]struct{}{}, lock: make(chan struct{}, 1)}
	var err error
	if h.conf, h.known, err = f.newServerConfig(); err != nil {
		return nil, err
	}
	if b == ChangedKey {
		if h.altConf, _, err = f.newServerConfig(); err != nil {
			return nil, err
		}
	}
	if f.opts.Jitter > 0 {
		h.rng = rand.New(rand.NewPCG(uint64(f.opts.Seed), uint64(i)))
	}
	if h.ln, err = listen(lastPort); err != nil {
		return nil, fmt.Errorf("fleetsim: listen for host %d: %w", i, err)
	}
	h.info = HostInfo{
		Index:   i,
		Name:    fmt.Sprintf("sim-%0*d", width, i+1),
		Address: "127.0.0.1",
		Port:    h.ln.Addr().(*net.TCPAddr).Port,
	}
	return h, nil
}

// listen binds a loopback port. Letting the kernel pick (port 0) slows to
// about half a millisecond a bind once thousands of ports are taken, so ports
// are claimed in sequence after the last one, skipping taken ones (closed
// client connections hold many for a minute), and the kernel is asked only
// when a long run of them is taken.
func listen(lastPort *int) (net.Listener, error) {
	for p := *lastPort + 1; *lastPort > 0 && p <= min(*lastPort+100, 65535); p++ {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			*lastPort = p
			return ln, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	*lastPort = ln.Addr().(*net.TCPAddr).Port
	return ln, nil
}

func (h *host) setBehavior(b Behavior) error {
	if _, err := ParseBehavior(string(b)); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if b == ChangedKey && h.altConf == nil {
		var err error
		if h.altConf, _, err = h.f.newServerConfig(); err != nil {
			return err
		}
	}
	h.behavior, h.dropped = b, false
	switch {
	case h.closed:
	case b == Unreachable && h.ln != nil:
		return h.closeLocked()
	case b != Unreachable && h.ln == nil:
		ln, err := net.Listen("tcp", net.JoinHostPort(h.info.Address, strconv.Itoa(h.info.Port)))
		if err != nil {
			return fmt.Errorf("listen again: %w", err)
		}
		h.ln = ln
		h.f.wg.Add(1)
		go h.accept(ln)
	}
	return nil
}

// shutdown closes the host for good.
func (h *host) shutdown() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return h.closeLocked()
}

// closeLocked closes the listener and every live connection; h.mu is held.
func (h *host) closeLocked() error {
	var err error
	if h.ln != nil {
		err = h.ln.Close()
		h.ln = nil
	}
	for c := range h.conns {
		c.Close()
	}
	return err
}

// accept is the host's one accept loop.
func (h *host) accept(ln net.Listener) {
	defer h.f.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Running out of file descriptors passes once clients hang up:
			// back off instead of spinning or giving the host up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if !h.f.wait(backoff) {
				return
			}
			continue
		}
		backoff = 0
		h.mu.Lock()
		if h.closed || h.ln != ln {
			h.mu.Unlock()
			nc.Close()
			continue
		}
		h.conns[nc] = struct{}{}
		b, conf := h.behavior, h.conf
		if b == ChangedKey {
			conf = h.altConf
		}
		h.mu.Unlock()
		h.f.wg.Add(1)
		go h.serve(nc, b, conf)
	}
}

// serve runs one connection: the handshake, then its channels and global requests.
func (h *host) serve(nc net.Conn, b Behavior, conf *ssh.ServerConfig) {
	defer h.f.wg.Done()
	defer func() {
		h.mu.Lock()
		delete(h.conns, nc)
		h.mu.Unlock()
		nc.Close()
	}()
	h.stats.connections.Add(1)
	if b == HangConnect {
		// Hold the connection, never answering, until the client gives up or the fleet closes.
		io.Copy(io.Discard, nc)
		return
	}
	cc := &corkConn{Conn: nc}
	sc, chans, reqs, err := ssh.NewServerConn(cc, conf)
	if err != nil {
		h.f.log.Debug("fleetsim: handshake", "host", h.info.Name, "err", err)
		return
	}
	defer sc.Close()
	// One loop for both streams saves the goroutine per connection that
	// ssh.DiscardRequests would cost.
	for chans != nil || reqs != nil {
		select {
		case nch, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			if nch.ChannelType() != "session" {
				nch.Reject(ssh.UnknownChannelType, "only session channels")
				continue
			}
			h.f.wg.Add(1)
			go h.session(cc, nch)
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			// OpenSSH answers unknown global requests (keepalive@openssh.com) with failure.
			r.Reply(false, nil)
		}
	}
}

// session serves one session channel: env is accepted, one exec runs, the
// rest is refused, until the client closes the channel.
func (h *host) session(cc *corkConn, nch ssh.NewChannel) {
	defer h.f.wg.Done()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	closed := make(chan struct{}) // the client closed the session
	defer close(closed)
	h.stats.sessions.Add(1)
	ran := false
	for r := range reqs {
		switch {
		case r.Type == "env":
			r.Reply(true, nil)
		case r.Type == "exec" && !ran:
			cmd, ok := execCommand(r.Payload)
			if !ok {
				r.Reply(false, nil)
				continue
			}
			ran = true
			r.Reply(true, nil)
			h.exec(ch, cc, cmd, closed)
		default:
			r.Reply(false, nil)
		}
	}
}

// exec runs one command and answers like OpenSSH does: output, EOF,
// exit-status, close. A hanging command returns without answering; the
// session loop then waits for the client to close the channel, which ends
// the command (as a signal from a non-root login would). A command inside
// sshrunner's fence wrapper runs as the wrapper runs it on a real host:
// under the host's lock for its whole run, refused when its fence is older
// than the host's, its update or rollback recorded, and a version read
// printing that record first.
func (h *host) exec(ch ssh.Channel, cc *corkConn, cmd string, closed <-chan struct{}) {
	fc, fenced := sshrunner.ParseFenced(cmd)
	if fenced {
		cmd = fc.Command
	}
	verb, arg := parseCommand(cmd)
	h.mu.Lock()
	b := h.behavior
	d := h.f.opts.Latency
	if h.rng != nil {
		d += time.Duration(h.rng.Int64N(int64(h.f.opts.Jitter) + 1))
	}
	h.mu.Unlock()
	if b == Slow {
		d += h.f.opts.SlowDelay
	}
	if verb == "update" {
		d += h.f.opts.UpdateDelay
	}
	var last string
	if fenced {
		held := false
		select {
		case h.lock <- struct{}{}:
			held = true
		case <-time.After(time.Duration(fc.LockWait) * time.Second):
		case <-h.f.done:
			return
		}
		if !held {
			h.answer(ch, cc, result{stderr: fmt.Sprintf("rolloutbot: ~/%s/lock is still held after %ds by an earlier command (last recorded: %s)\n",
				fc.Dir, fc.LockWait, h.lastRecord()), status: 121})
			return
		}
		unlock := func() { <-h.lock }
		if verb == "update" && b == Hang {
			go func() { <-closed; unlock() }()
		} else {
			defer unlock()
		}
		h.mu.Lock()
		newer := h.fence.Store == fc.Fence.Store &&
			(h.fence.Rollout > fc.Fence.Rollout || (h.fence.Rollout == fc.Fence.Rollout && h.fence.Epoch > fc.Fence.Epoch))
		if !newer {
			h.fence = fc.Fence
			last = sshrunner.FormatLast(h.last)
			if verb == "update" || verb == "rollback" {
				h.last = rollout.LastCommand{Fence: fc.Fence, Step: rollout.Step(verb), From: fc.From}
			}
		}
		fence := h.fence
		h.mu.Unlock()
		if newer {
			h.stats.fenced.Add(1)
			h.answer(ch, cc, result{stderr: fmt.Sprintf("rolloutbot: fenced: this host was since commanded by rollout %d epoch %d, not %d epoch %d\n",
				fence.Rollout, fence.Epoch, fc.Fence.Rollout, fc.Fence.Epoch), status: 120})
			return
		}
	}
	switch verb {
	case "version":
		h.stats.versions.Add(1)
	case "update":
		h.stats.updates.Add(1)
	case "health":
		h.stats.healthChecks.Add(1)
	case "rollback":
		h.stats.rollbacks.Add(1)
	}
	h.mu.Lock()
	h.running++
	if h.running > h.stats.maxRunning.Load() {
		h.stats.maxRunning.Store(h.running)
	}
	h.mu.Unlock()
	// It ends before its answer leaves, as a process exits before sshd
	// reports its status: a client's next command may come at once.
	var once sync.Once
	ended := func() {
		once.Do(func() {
			h.mu.Lock()
			h.running--
			h.mu.Unlock()
		})
	}
	defer ended()
	if verb == "update" && b == Hang {
		return
	}
	if !h.f.wait(d) || ((verb == "update" || verb == "rollback") && !h.f.waitHeld()) {
		return
	}
	r := h.run(b, verb, arg, cmd)
	ended()
	if fenced && (verb == "update" || verb == "rollback") {
		h.mu.Lock()
		h.last.Finished, h.last.Exit = true, int(r.status)
		h.mu.Unlock()
	}
	if fenced && verb == "version" {
		r.stdout = "rolloutbot-last: " + last + "\n" + r.stdout
	}
	if r.drop {
		cc.Close()
		return
	}
	h.answer(ch, cc, r)
}

// lastRecord is the host's record of its last update or rollback, as the wrapper prints it.
func (h *host) lastRecord() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := sshrunner.FormatLast(h.last); l != "" {
		return l
	}
	return "none"
}

// answer sends a command's output, EOF, exit status and close in one write.
func (h *host) answer(ch ssh.Channel, cc *corkConn, r result) {
	cc.cork()
	defer cc.uncork()
	if r.stdout != "" {
		ch.Write([]byte(r.stdout))
	}
	if r.stderr != "" {
		ch.Stderr().Write([]byte(r.stderr))
	}
	ch.CloseWrite()
	ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, r.status))
	ch.Close()
}

// corkConn lets a command's whole answer (output, EOF, exit-status, close)
// leave in one write, as OpenSSH's output buffer does, instead of one write
// per SSH packet: about 10% of a zero-latency rollout. x/crypto/ssh queues
// writes made during a key re-exchange without blocking up to 64 packets, and
// a corked answer is at most 5, so a key exchange message held back here
// cannot stall the writer that holds it.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked int // sessions of this connection writing an answer
	buf    []byte
	err    error // of the last flush, returned by the next Write
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked > 0 {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked++
	c.mu.Unlock()
}

func (c *corkConn) uncork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked--; c.corked == 0 && len(c.buf) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(c.buf)
		c.buf = c.buf[:0]
	}
}

// result is what a command prints and exits with.
type result struct {
	stdout, stderr string
	status         uint32
	drop           bool // close the TCP connection instead of answering
}

// run applies one command to the host's state under behaviour b.
func (h *host) run(b Behavior, verb, arg, cmd string) result {
	h.mu.Lock()
	defer h.mu.Unlock()
	initial := h.f.opts.InitialVersion
	// Drop behaves like HealthFails once it has dropped its update.
	unhealthy := (b == HealthFails || b == RollbackFails || b == Drop) && h.version != initial
	switch {
	case verb == "version":
		return result{stdout: h.version + "\n"}
	case (verb == "update" || verb == "rollback") && arg == "":
		return result{stderr: "usage: fleetctl " + verb + " VERSION\n", status: 2}
	case verb == "update" && b == UpdateFails:
		return result{stderr: "E: update to " + arg + " failed on " + h.info.Name + "\n", status: 1}
	case verb == "update" && b == Drop && !h.dropped:
		h.version, h.dropped = arg, true
		return result{drop: true}
	case verb == "update":
		h.version = arg
		return result{stdout: "fetching " + arg + "\nswitched " + h.info.Name + " to " + arg + "\n"}
	case verb == "health" && unhealthy:
		return result{stderr: "unhealthy: " + h.info.Name + " runs " + h.version + "\n", status: 1}
	case verb == "health":
		return result{}
	case verb == "rollback" && b == RollbackFails:
		return result{stderr: "E: rollback to " + arg + " failed on " + h.info.Name + "\n", status: 1}
	case verb == "rollback":
		h.version = arg
		return result{}
	}
	first, _, _ := strings.Cut(strings.TrimSpace(cmd), " ")
	return result{stderr: "sh: 1: " + first + ": not found\n", status: 127}
}

// execCommand decodes an exec request's payload: one SSH string.
func execCommand(payload []byte) (string, bool) {
	if len(payload) < 4 || int64(binary.BigEndian.Uint32(payload)) != int64(len(payload)-4) {
		return "", false
	}
	return string(payload[4:]), true
}

// parseCommand splits "[PROGRAM] VERB [ARG]" into a known verb and its
// unquoted argument; verb is "" for anything else.
func parseCommand(cmd string) (verb, arg string) {
	words := strings.Fields(cmd)
	if len(words) > 0 && !isVerb(words[0]) {
		words = words[1:]
	}
	if len(words) == 0 || len(words) > 2 || !isVerb(words[0]) {
		return "", ""
	}
	if len(words) == 2 {
		arg = words[1]
		if len(arg) >= 2 && arg[0] == '\'' && arg[len(arg)-1] == '\'' {
			arg = arg[1 : len(arg)-1]
		}
	}
	return words[0], arg
}

func isVerb(w string) bool {
	return w == "version" || w == "update" || w == "health" || w == "rollback"
}
