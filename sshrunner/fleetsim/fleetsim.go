// Package fleetsim serves many simulated SSH hosts on loopback for tests, the
// demo and benchmarks. Each host has its own listener, port, ed25519 host key,
// version and scripted behaviour, and speaks real SSH through x/crypto/ssh.
package fleetsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Behavior is how a simulated host answers the recipe.
type Behavior string

// The behaviours a host can be given. "Unhealthy" means health exits 1
// while the version differs from Options.InitialVersion.
const (
	OK            Behavior = "ok"             // every command succeeds
	UpdateFails   Behavior = "update-fails"   // update exits 1, version unchanged
	HealthFails   Behavior = "health-fails"   // update succeeds, then unhealthy
	RollbackFails Behavior = "rollback-fails" // like HealthFails, and rollback exits 1
	Hang          Behavior = "hang"           // update never answers until the client closes
	HangConnect   Behavior = "hang-connect"   // accepts TCP, never speaks SSH
	Drop          Behavior = "drop"           // the first update applies, then the TCP connection closes; after that like HealthFails
	Slow          Behavior = "slow"           // every command waits Options.SlowDelay first
	ChangedKey    Behavior = "changed-key"    // presents a key KnownHosts does not list
	Unreachable   Behavior = "unreachable"    // nothing listens: connects are refused
)

// ParseBehavior returns the Behavior named s.
func ParseBehavior(s string) (Behavior, error) {
	switch b := Behavior(s); b {
	case OK, UpdateFails, HealthFails, RollbackFails, Hang, HangConnect, Drop, Slow, ChangedKey, Unreachable:
		return b, nil
	}
	return "", fmt.Errorf("fleetsim: unknown behavior %q", s)
}

// Options configures a simulated fleet. Zero values take the documented defaults.
type Options struct {
	Hosts          int              // number of hosts
	InitialVersion string           // default "v1"
	Behaviors      map[int]Behavior // by host index; default OK
	User           string           // the only username accepted (default "fleet")
	Latency        time.Duration    // added to every command; 0 answers at once
	Jitter         time.Duration    // random extra up to Jitter per command
	SlowDelay      time.Duration    // for Slow (default 2s)
	// UpdateDelay is added to every update command, so an update can
	// outlast a driver's lease.
	UpdateDelay time.Duration
	Seed        int64        // for jitter; deterministic per host
	Logger      *slog.Logger // may be nil (discard)
}

// HostInfo says where a simulated host listens.
type HostInfo struct {
	Index   int
	Name    string // "sim-0001": Index+1, zero padded to the width of the host count (min 4)
	Address string // "127.0.0.1"
	Port    int
}

// Stats counts what a host served. Connections counts accepted TCP connections
// (also those that fail the handshake), Sessions accepted session channels,
// and Versions to Rollbacks the commands run per verb. Fenced counts
// commands the host refused because a newer driver had commanded it, and
// MaxRunning is the most recipe commands that ever ran on it at once: the
// host's own proof that commands never overlapped.
type Stats struct {
	Connections, Sessions, Versions, Updates, HealthChecks, Rollbacks int64
	Fenced, MaxRunning                                                int64
}

// Fleet is a running set of simulated hosts.
type Fleet struct {
	opts      Options
	log       *slog.Logger
	hosts     []*host
	clientPEM []byte

	authMu     sync.RWMutex
	authorized map[string]bool // by ssh.PublicKey.Marshal

	holdMu sync.Mutex
	held   chan struct{} // non-nil between Hold and Release; closed by Release

	done      chan struct{} // closed by Close: ends waits, accept back-offs
	stopCtx   func() bool
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // accept, connection and session goroutines
}

// Start brings up opts.Hosts listeners on 127.0.0.1. All of them accept when
// it returns; cancelling ctx or calling Close stops the fleet.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Hosts <= 0 {
		return nil, fmt.Errorf("fleetsim: Options.Hosts must be positive, got %d", opts.Hosts)
	}
	for i, b := range opts.Behaviors {
		if i < 0 || i >= opts.Hosts {
			return nil, fmt.Errorf("fleetsim: Options.Behaviors: host index %d out of range [0,%d)", i, opts.Hosts)
		}
		if _, err := ParseBehavior(string(b)); err != nil {
			return nil, fmt.Errorf("fleetsim: Options.Behaviors[%d]: %w", i, err)
		}
	}
	if opts.InitialVersion == "" {
		opts.InitialVersion = "v1"
	}
	if opts.User == "" {
		opts.User = "fleet"
	}
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = 2 * time.Second
	}
	f := &Fleet{opts: opts, log: opts.Logger, authorized: map[string]bool{}, done: make(chan struct{})}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	started := time.Now()

	_, clientKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: client key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(clientKey, "fleetsim client")
	if err != nil {
		return nil, fmt.Errorf("fleetsim: marshal client key: %w", err)
	}
	f.clientPEM = pem.EncodeToMemory(block)
	clientPub, err := ssh.NewPublicKey(clientKey.Public())
	if err != nil {
		return nil, fmt.Errorf("fleetsim: client public key: %w", err)
	}
	f.AuthorizeKey(clientPub)

	width := max(4, len(strconv.Itoa(opts.Hosts)))
	f.hosts = make([]*host, opts.Hosts)
	lastPort := 0
	for i := range f.hosts {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, fmt.Errorf("fleetsim: start: %w", err)
		}
		h, err := f.newHost(i, width, &lastPort)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.hosts[i] = h
	}
	// Unreachable ports are closed only after every port is bound, so no other
	// host of this fleet can be given one of them.
	for _, h := range f.hosts {
		if h.behavior == Unreachable {
			h.ln.Close()
			h.ln = nil
		} else {
			f.wg.Add(1)
			go h.accept(h.ln)
		}
	}
	f.stopCtx = context.AfterFunc(ctx, func() { f.Close() })
	f.log.Info("fleet started", "hosts", opts.Hosts, "duration", time.Since(started))
	return f, nil
}

// Close stops the listeners, closes live connections and waits for every
// goroutine the fleet started. It is safe to call more than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		if f.stopCtx != nil {
			f.stopCtx()
		}
		close(f.done)
		var errs []error
		for _, h := range f.hosts {
			if h == nil {
				continue
			}
			if err := h.shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		f.wg.Wait()
		if len(errs) > 0 {
			f.closeErr = fmt.Errorf("fleetsim: close: %w", errors.Join(errs...))
		}
	})
	return f.closeErr
}

// Hosts lists every host, unreachable ones included.
func (f *Fleet) Hosts() []HostInfo {
	out := make([]HostInfo, len(f.hosts))
	for i, h := range f.hosts {
		out[i] = h.info
	}
	return out
}

// KnownHosts returns OpenSSH known_hosts text with one line per host. For a
// changed-key host it lists the key it had before, not the one it presents.
func (f *Fleet) KnownHosts() []byte {
	var buf bytes.Buffer
	for _, h := range f.hosts {
		addr := net.JoinHostPort(h.info.Address, strconv.Itoa(h.info.Port))
		buf.WriteString(knownhosts.Line([]string{addr}, h.known))
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// ClientKeyPEM returns the fleet's client key as an unencrypted OpenSSH private key.
func (f *Fleet) ClientKeyPEM() []byte { return bytes.Clone(f.clientPEM) }

// AuthorizeKey makes every host accept pub as well (for ssh-agent tests).
func (f *Fleet) AuthorizeKey(pub ssh.PublicKey) {
	f.authMu.Lock()
	f.authorized[string(pub.Marshal())] = true
	f.authMu.Unlock()
}

// HostKey returns the key KnownHosts lists for host i.
func (f *Fleet) HostKey(i int) ssh.PublicKey { return f.hosts[i].known }

// Version returns host i's current version.
func (f *Fleet) Version(i int) string {
	h := f.hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

// SetVersion sets host i's current version; its initial version stays what
// health checks compare against.
func (f *Fleet) SetVersion(i int, v string) {
	h := f.hosts[i]
	h.mu.Lock()
	h.version = v
	h.mu.Unlock()
}

// Behavior returns host i's behaviour.
func (f *Fleet) Behavior(i int) Behavior {
	h := f.hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.behavior
}

// SetBehavior changes host i's behaviour for new commands and connections
// (ChangedKey for new handshakes). Commands already running keep the old one.
// Switching to Unreachable closes the listener and the host's live
// connections; switching away from it listens on the same port again, which
// is logged and otherwise ignored if another process took the port meanwhile.
// Setting Drop again re-arms it for one more dropped update.
func (f *Fleet) SetBehavior(i int, b Behavior) {
	if err := f.hosts[i].setBehavior(b); err != nil {
		f.log.Warn("fleetsim: set behavior", "host", f.hosts[i].info.Name, "behavior", string(b), "err", err)
	}
}

// Hold makes every update and rollback, once its latency and delays are
// over, wait until Release before it takes effect and answers, as a long
// real one would. A test that needs them still running at some point holds
// them there instead of betting on a delay. A held command keeps running
// when its client goes away, as a process on a real host does.
func (f *Fleet) Hold() {
	f.holdMu.Lock()
	defer f.holdMu.Unlock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
}

// Release lets the held commands, and those to come, go on.
func (f *Fleet) Release() {
	f.holdMu.Lock()
	defer f.holdMu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// waitHeld blocks while commands are held, unless the fleet closes first,
// which it reports as false.
func (f *Fleet) waitHeld() bool {
	f.holdMu.Lock()
	held := f.held
	f.holdMu.Unlock()
	if held == nil {
		return true
	}
	select {
	case <-held:
		return true
	case <-f.done:
		return false
	}
}

// Stats returns what host i served so far.
func (f *Fleet) Stats(i int) Stats { return f.hosts[i].stats.snapshot() }

// Totals sums Stats over every host.
func (f *Fleet) Totals() Stats {
	var t Stats
	for _, h := range f.hosts {
		s := h.stats.snapshot()
		t.Connections += s.Connections
		t.Sessions += s.Sessions
		t.Versions += s.Versions
		t.Updates += s.Updates
		t.HealthChecks += s.HealthChecks
		t.Rollbacks += s.Rollbacks
		t.Fenced += s.Fenced
		t.MaxRunning = max(t.MaxRunning, s.MaxRunning)
	}
	return t
}

// WriteFiles writes dir/known_hosts and dir/client_ed25519 (mode 0600) so a
// separate process can reach the fleet.
func (f *Fleet) WriteFiles(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), f.KnownHosts(), 0o644); err != nil {
		return fmt.Errorf("fleetsim: write known_hosts: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client_ed25519"), f.clientPEM, 0o600); err != nil {
		return fmt.Errorf("fleetsim: write client key: %w", err)
	}
	return nil
}

// checkKey is every host's PublicKeyCallback: one user, the authorized keys.
func (f *Fleet) checkKey(conn ssh.ConnMetadata, pub ssh.PublicKey) (*ssh.Permissions, error) {
	if conn.User() != f.opts.User {
		return nil, fmt.Errorf("fleetsim: user %q not allowed", conn.User())
	}
	f.authMu.RLock()
	ok := f.authorized[string(pub.Marshal())]
	f.authMu.RUnlock()
	if !ok {
		return nil, errors.New("fleetsim: unknown public key")
	}
	return nil, nil
}

// wait blocks for d unless the fleet closes first, which it reports as false.
func (f *Fleet) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.done:
		return false
	}
}

// newServerConfig returns a host's server config presenting a fresh ed25519 key.
func (f *Fleet) newServerConfig() (*ssh.ServerConfig, ssh.PublicKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("fleetsim: host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("fleetsim: host signer: %w", err)
	}
	conf := &ssh.ServerConfig{PublicKeyCallback: f.checkKey}
	conf.AddHostKey(signer)
	return conf, signer.PublicKey(), nil
}
