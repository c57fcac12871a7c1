// Package sshrunner runs the update recipe on hosts over SSH, through
// golang.org/x/crypto/ssh: one connection per host update, one exec session per
// recipe command, host keys always verified, every step bounded by a timeout.
// It implements rollout.Updater; it is the only package that imports x/crypto/ssh
// (with its simulator, fleetsim).
package sshrunner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Recipe is the update procedure, as shell commands run on each host.
// {version} in Update and Rollback is replaced by the validated, single-quoted
// version; nothing else is ever interpolated.
type Recipe struct {
	Version  string // prints the version the host runs
	Update   string // installs {version}
	Health   string // exits 0 when the host is healthy
	Rollback string // reinstalls the previous {version}
}

// VersionPlaceholder marks where the version goes in a command.
const VersionPlaceholder = "{version}"

// Validate names the command that is wrong.
func (r Recipe) Validate() error {
	for _, c := range []struct {
		name, cmd    string
		wantsVersion bool
	}{{"version", r.Version, false}, {"update", r.Update, true}, {"health", r.Health, false}, {"rollback", r.Rollback, true}} {
		switch {
		case strings.TrimSpace(c.cmd) == "":
			return fmt.Errorf("recipe.%s: the command is empty", c.name)
		case c.wantsVersion && !strings.Contains(c.cmd, VersionPlaceholder):
			return fmt.Errorf("recipe.%s: the command must contain %s", c.name, VersionPlaceholder)
		case !c.wantsVersion && strings.Contains(c.cmd, VersionPlaceholder):
			return fmt.Errorf("recipe.%s: the command must not contain %s", c.name, VersionPlaceholder)
		}
	}
	return nil
}

// Command returns cmd with the version validated and quoted in.
func Command(cmd, version string) (string, error) {
	if err := rollout.ValidateVersion(version); err != nil {
		return "", err
	}
	// The validated alphabet has no quote, so single quotes make it one inert word.
	return strings.ReplaceAll(cmd, VersionPlaceholder, "'"+version+"'"), nil
}

// Config configures the runner.
type Config struct {
	User            string // SSH user for hosts that name none
	KeyFile         string // private key (ed25519, RSA, ECDSA; OpenSSH or PEM)
	KeyPassphrase   string // for an encrypted KeyFile; a secret
	UseAgent        bool   // also offer the keys of the agent at SSH_AUTH_SOCK
	KnownHostsFile  string // verify host keys against it
	TrustOnFirstUse bool   // pin unknown hosts' keys in the store on first use

	ConnectTimeout time.Duration // TCP connect plus SSH handshake (default 10s)
	CommandTimeout time.Duration // each command (default 5m)
	KeepAlive      time.Duration // keepalive interval; a connection that misses one is closed (default 15s)
	OutputTail     int           // bytes of output kept for failure reports (default 4096)

	// HostDir is the directory on each host, relative to the login's home
	// unless absolute, where the host keeps its lock and fence (default
	// ".rolloutbot"): every recipe command runs inside the wrapper in fence.go.
	// {address} in it is the host's address, for inventories whose entries
	// share one home but are separate machines (a test fleet on one sshd).
	HostDir string

	Recipe Recipe
}

// KeyStore pins host keys for trust on first use.
type KeyStore interface {
	PinnedHostKey(ctx context.Context, addr string) (string, error)
	// PinHostKey pins key unless one is pinned, and returns the pinned key.
	PinHostKey(ctx context.Context, addr, key string) (string, error)
}

// Runner connects to hosts. It is safe for concurrent use.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	key   *watchedFile[ssh.Signer]  // the key file, re-read when it changes; nil without one
	agent string                    // the agent's socket, asked afresh for each connection
	known *watchedFile[*knownHosts] // re-read when it changes; nil without a file
	pins  KeyStore
}

var _ rollout.Updater = (*Runner)(nil)

// New checks the configuration and loads the key, the agent and known_hosts.
// Errors name the setting that is wrong. The key file and known_hosts are
// read again whenever they change, without a restart.
func New(cfg Config, pins KeyStore, log *slog.Logger) (*Runner, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 10*time.Second)
	cfg.CommandTimeout = cmp.Or(cfg.CommandTimeout, 5*time.Minute)
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, 15*time.Second)
	cfg.OutputTail = cmp.Or(cfg.OutputTail, 4096)
	cfg.HostDir = cmp.Or(cfg.HostDir, ".rolloutbot")
	if err := cfg.Recipe.Validate(); err != nil {
		return nil, err
	}
	if cfg.User == "" {
		return nil, errors.New("ssh.user: no SSH user given")
	}
	r := &Runner{cfg: cfg, log: log, pins: pins}
	if cfg.KeyFile != "" {
		// A key file that goes bad or away keeps the last good key: it is
		// the bot's credential, not a trust decision, and the hosts'
		// authorized_keys are where a key is revoked.
		parse := func(pem []byte) (ssh.Signer, error) { return loadKey(cfg.KeyFile, pem, cfg.KeyPassphrase) }
		describe := func(s ssh.Signer) []any { return []any{"key", ssh.FingerprintSHA256(s.PublicKey())} }
		k, err := watchFile("key file", cfg.KeyFile, parse, describe, false, log)
		if err != nil {
			return nil, fmt.Errorf("ssh.key_file: %w", err)
		}
		r.key = k
	}
	if cfg.UseAgent {
		r.agent = os.Getenv("SSH_AUTH_SOCK")
		if r.agent == "" {
			return nil, errors.New("ssh.agent: SSH_AUTH_SOCK is not set")
		}
		// Checked now, so a wrong socket fails at start, not at the first host.
		nc, err := net.Dial("unix", r.agent)
		if err != nil {
			return nil, fmt.Errorf("ssh.agent: %w", err)
		}
		nc.Close()
	}
	if r.key == nil && r.agent == "" {
		return nil, errors.New("ssh.key_file: no key file and no agent: give one of them")
	}
	if cfg.KnownHostsFile != "" {
		// A known_hosts file that goes away refuses every host (see
		// watchedFile.reload): the keys it listed may be the ones the
		// operator meant to stop trusting.
		parse := func(data []byte) (*knownHosts, error) { return loadKnownHosts(cfg.KnownHostsFile, data) }
		describe := func(k *knownHosts) []any { return []any{"entries", k.entries} }
		k, err := watchFile("known_hosts", cfg.KnownHostsFile, parse, describe, true, log)
		if err != nil {
			return nil, fmt.Errorf("ssh.known_hosts: %w", err)
		}
		r.known = k
	}
	if r.known == nil && !cfg.TrustOnFirstUse {
		return nil, errors.New("ssh.known_hosts: host keys are always verified: give a known_hosts file or turn on trust_on_first_use")
	}
	if cfg.TrustOnFirstUse && pins == nil {
		return nil, errors.New("ssh.trust_on_first_use: no store to pin host keys in")
	}
	return r, nil
}

// auth returns the client authentication for one connection, and what to
// call once its handshake is over. The agent is dialled per connection:
// a restarted agent serves the next host, and connections do not queue on
// one agent socket.
func (r *Runner) auth(ctx context.Context) ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	done := func() {}
	if r.key != nil {
		s, err := r.key.get(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh.key_file: %w", err)
		}
		signers = append(signers, s)
	}
	if r.agent != "" {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", r.agent)
		switch {
		case err == nil:
			done = func() { nc.Close() }
			fromAgent, err := agent.NewClient(nc).Signers()
			if err != nil && len(signers) == 0 {
				nc.Close()
				return nil, nil, fmt.Errorf("ssh-agent at %s: %w", r.agent, err)
			}
			signers = append(slices.Clip(signers), fromAgent...)
		case len(signers) == 0:
			return nil, nil, fmt.Errorf("ssh-agent at %s: %w", r.agent, err)
		default:
			r.log.WarnContext(ctx, "ssh-agent unavailable; offering the key file only", "agent", r.agent, "err", err)
		}
	}
	// One publickey method offers the file's key and the agent's: x/crypto
	// tries each method name once, so a second publickey method would never
	// be tried after the first one's keys were refused.
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, done, nil
}

// loadKey parses pem, the content of the key file at path.
func loadKey(path string, pem []byte, passphrase string) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == "" {
			return nil, fmt.Errorf("%s is encrypted: set SSH_KEY_PASSPHRASE (or SSH_KEY_PASSPHRASE_FILE)", path)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Connect opens an SSH connection to h, verifying its host key, within the
// connect timeout. Its commands run on the host under fence.
func (r *Runner) Connect(ctx context.Context, h rollout.Host, fence rollout.Fence) (rollout.Conn, error) {
	addr := h.Addr()
	user := cmp.Or(h.User, r.cfg.User)
	hk := r.hostKeys(ctx, addr)
	auth, authDone, err := r.auth(ctx)
	if err != nil {
		return nil, err
	}
	defer authDone()
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(),
		Timeout:           r.cfg.ConnectTimeout,
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh dial %s: %w", addr, unwrapDial(err))
	}
	// The handshake is bounded by the same deadline, and by ctx.
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	stop()
	if err != nil {
		nc.Close()
		if hk.err != nil {
			return nil, hk.err
		}
		if parent.Err() != nil {
			return nil, fmt.Errorf("ssh handshake with %s: %w", addr, parent.Err())
		}
		// The socket deadline and ctx's timer expire together; either may win.
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("ssh handshake with %s: no answer within %s", addr, r.cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("ssh handshake with %s as %s: %w", addr, user, err)
	}
	_ = nc.SetDeadline(time.Time{})
	conn := &conn{r: r, addr: addr, fence: fence, hostDir: strings.ReplaceAll(r.cfg.HostDir, "{address}", h.Address),
		client: ssh.NewClient(c, chans, reqs), dead: make(chan struct{})}
	go conn.watch()
	return conn, nil
}

// unwrapDial drops net.OpError's repetition of the address.
func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("connect timed out")
		}
		return op.Err
	}
	return err
}

// conn is one host's connection.
type conn struct {
	r       *Runner
	addr    string
	fence   rollout.Fence
	hostDir string
	client  *ssh.Client
	dead    chan struct{} // closed when the connection ended
	// read is the version the last Version read found, which an update on
	// this connection records on the host as the version it started from.
	read string
}

// watch sends keepalives and closes a connection that stops answering them,
// so a host that hangs at the TCP level cannot hold a step past its timeout.
func (c *conn) watch() {
	tick := time.NewTicker(c.r.cfg.KeepAlive)
	defer tick.Stop()
	waited := make(chan struct{})
	go func() { c.client.Wait(); close(waited) }()
	defer close(c.dead)
	for {
		select {
		case <-waited:
			return
		case <-tick.C:
			answered := make(chan struct{})
			go func() {
				_, _, _ = c.client.SendRequest("keepalive@openssh.com", true, nil)
				close(answered)
			}()
			select {
			case <-answered:
			case <-waited:
				return
			case <-time.After(c.r.cfg.KeepAlive):
				c.r.log.Warn("ssh keepalive unanswered; closing connection", "host", c.addr)
				c.client.Close()
			}
		}
	}
}

func (c *conn) Close() error {
	err := c.client.Close()
	<-c.dead
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Version reads the host's version, and its record of the last update or
// rollback. It is the first command on a host and may wait for the lock,
// held by a command a previous driver left running, for up to the command
// timeout; then it has the command timeout of its own.
func (c *conn) Version(ctx context.Context) (rollout.HostState, error) {
	stdout := &headBuffer{max: 4096}
	out, err := c.run(ctx, rollout.StepVersion, c.r.cfg.Recipe.Version, stdout, c.lockWait()+c.r.cfg.CommandTimeout)
	if err != nil {
		return rollout.HostState{}, withOutput(err, out)
	}
	text := string(stdout.buf)
	first, rest, _ := strings.Cut(text, "\n")
	line, ok := strings.CutPrefix(first, lastPrefix)
	if !ok {
		return rollout.HostState{}, fmt.Errorf("%s: the fence wrapper printed no record line before the version", c.addr)
	}
	last, err := ParseLast(line)
	if err != nil {
		return rollout.HostState{}, err
	}
	v, _, _ := strings.Cut(strings.TrimSpace(rest), "\n")
	v = strings.TrimSpace(v)
	c.read = ""
	if rollout.ValidateVersion(v) == nil {
		c.read = v
	}
	return rollout.HostState{Version: v, Last: last}, nil
}

// lockWait is how long a command waits on the host for the command before
// it to end: the command timeout, in whole seconds as flock(1) takes it.
func (c *conn) lockWait() time.Duration {
	return max(time.Second, c.r.cfg.CommandTimeout.Round(time.Second))
}

// withOutput adds the first line of a failed version read's output to err,
// which has no other place to go.
func withOutput(err error, out string) error {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if line == "" || strings.Contains(err.Error(), line) {
		return err
	}
	return fmt.Errorf("%w: %s", err, line)
}

func (c *conn) Update(ctx context.Context, version string) (string, error) {
	cmd, err := Command(c.r.cfg.Recipe.Update, version)
	if err != nil {
		return "", err
	}
	return c.run(ctx, rollout.StepUpdate, cmd, nil, c.r.cfg.CommandTimeout)
}

func (c *conn) Health(ctx context.Context) (string, error) {
	return c.run(ctx, rollout.StepHealth, c.r.cfg.Recipe.Health, nil, c.r.cfg.CommandTimeout)
}

func (c *conn) Rollback(ctx context.Context, version string) (string, error) {
	cmd, err := Command(c.r.cfg.Recipe.Rollback, version)
	if err != nil {
		return "", err
	}
	return c.run(ctx, rollout.StepRollback, cmd, nil, c.r.cfg.CommandTimeout)
}

// run executes the recipe command cmd for step in a new session, inside the
// host's fence wrapper, within timeout, and returns the tail of its combined
// output; stdout, when given, also gets the stdout.
func (c *conn) run(ctx context.Context, step rollout.Step, cmd string, stdout io.Writer, timeout time.Duration) (string, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A host that went silent acknowledges neither a new session nor the
	// kill of a running one: once ctx is done, give it killGrace, then drop
	// the connection so that the step returns.
	returned := make(chan struct{})
	defer close(returned)
	var dropped atomic.Bool
	defer context.AfterFunc(ctx, func() {
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case <-returned:
		case <-t.C:
			dropped.Store(true)
			c.r.log.Warn("ssh host did not end the stopped command; closing the connection", "host", c.addr, "grace", killGrace)
			c.client.Close()
		}
	})()
	stopped := func() error {
		// The caller's cancel or deadline, as it is; else the command timeout.
		err := parent.Err()
		if err == nil {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		if dropped.Load() {
			return fmt.Errorf("%w (closed: %s did not end the command within %s of being stopped): %w", rollout.ErrConnLost, c.addr, killGrace, err)
		}
		return err
	}

	sess, err := c.client.NewSession()
	var refused *ssh.OpenChannelError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return "", stopped()
	case errors.As(err, &refused):
		// The connection is fine; sshd said no (MaxSessions, a ForceCommand
		// setup, a limit of the account).
		return "", fmt.Errorf("%s refused to open a session: %s", c.addr, refused.Message)
	default:
		return "", fmt.Errorf("%w: open session on %s: %w", rollout.ErrConnLost, c.addr, err)
	}
	defer sess.Close()
	tail := &tailBuffer{max: c.r.cfg.OutputTail}
	sess.Stderr = tail
	sess.Stdout = tail
	if stdout != nil {
		sess.Stdout = io.MultiWriter(stdout, tail)
	}
	stop := context.AfterFunc(ctx, func() {
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
	})
	wait := int(c.lockWait() / time.Second)
	f := Fenced{Dir: c.hostDir, Fence: c.fence, Step: step, LockWait: wait, Command: cmd}
	if step == rollout.StepUpdate {
		f.From = c.read
	}
	err = sess.Run(f.String())
	if !stop() {
		return tail.String(), stopped()
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return tail.String(), nil
	case errors.As(err, &exit):
		if exit.Signal() != "" {
			return tail.String(), fmt.Errorf("killed by signal %s", exit.Signal())
		}
		out := tail.String()
		if refusal := wrapperRefusal(exit.ExitStatus(), out); refusal != nil {
			return out, refusal
		}
		return out, fmt.Errorf("exited with status %d", exit.ExitStatus())
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return tail.String(), fmt.Errorf("%w: %s closed the connection mid-command", rollout.ErrConnLost, c.addr)
	default:
		return tail.String(), err
	}
}

// wrapperRefusal explains an exit of the fence wrapper's own, or returns nil
// for the command's.
func wrapperRefusal(status int, out string) error {
	i := strings.LastIndex(out, "rolloutbot: ")
	if i < 0 || status < exitFenced || status > exitNoSetup {
		return nil
	}
	msg, _, _ := strings.Cut(out[i+len("rolloutbot: "):], "\n")
	switch status {
	case exitFenced:
		return fmt.Errorf("%w: %s", rollout.ErrFenced, msg)
	case exitLockHeld:
		return errors.New(msg)
	}
	return fmt.Errorf("the host is not set up for rolloutbot: %s", msg)
}

// killGrace is how long a host may take to end a stopped command before its
// connection is dropped.
const killGrace = time.Second

// tailBuffer keeps the last max bytes written to it. Stdout and stderr are
// copied into it by two goroutines, hence the lock.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, cut := t.buf, t.cut
	if len(b) > t.max {
		b, cut = b[len(b)-t.max:], true
	}
	if cut {
		// Drop the rest of a character the cut went through.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
		return "…" + string(b)
	}
	return string(b)
}

// headBuffer keeps the first max bytes written to it and drops the rest.
type headBuffer struct {
	buf []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
