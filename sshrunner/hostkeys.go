package sshrunner

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHosts verifies host keys against a known_hosts file. x/crypto's
// knownhosts scans every line for every host, which at 10,000 hosts is 10^8
// pattern matches; plain "host" and "[host]:port" entries are indexed here
// instead, and everything else (hashed names, wildcards) goes to knownhosts.
type knownHosts struct {
	path     string
	entries  int // lines with a key, for the log
	index    map[string][]ssh.PublicKey
	complex  bool // hashed or wildcard entries exist: an index miss asks knownhosts
	full     ssh.HostKeyCallback
	disabled bool            // @revoked or @cert-authority lines: always ask knownhosts
	cas      map[string]bool // @cert-authority keys, marshalled
	probeKey ssh.PublicKey   // a key no file lists, for probe
}

// loadKnownHosts indexes data, the content of the file at path.
func loadKnownHosts(path string, data []byte) (*knownHosts, error) {
	// knownhosts reads the file itself: it must read what data holds, or the
	// index and the callback would disagree on, say, a key revoked between.
	full, err := knownhosts.New(path)
	if err != nil {
		return nil, err
	}
	if again, err := os.ReadFile(path); err != nil || !bytes.Equal(again, data) {
		return nil, errors.New("changed while being read")
	}
	k := &knownHosts{path: path, index: map[string][]ssh.PublicKey{}, cas: map[string]bool{}, full: full}
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var marker string
		var hosts []string
		var key ssh.PublicKey
		marker, hosts, key, _, rest, err = ssh.ParseKnownHosts(rest)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		k.entries++
		if marker != "" { // "revoked" or "cert-authority", without the @
			k.disabled = true
			if marker == "cert-authority" {
				k.cas[string(key.Marshal())] = true
			}
			continue
		}
		for _, h := range hosts {
			if strings.HasPrefix(h, "|") || strings.ContainsAny(h, "*?!") {
				k.complex = true
				continue
			}
			h = strings.ToLower(h)
			k.index[h] = append(k.index[h], key)
		}
	}
	if k.complex || k.disabled {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if k.probeKey, err = ssh.NewPublicKey(pub); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// hostCheck verifies the key of one host during one handshake, and keeps a
// clear reason when it refuses.
type hostCheck struct {
	r      *Runner
	ctx    context.Context
	addr   string
	known  *knownHosts     // known_hosts as it was when the connection began; nil without one
	noKeys error           // why known_hosts cannot vouch for any host now
	listed []ssh.PublicKey // the keys known_hosts's plain entries list for addr
	pinned string          // the key pinned on first use, if any
	pinErr error
	err    error
}

func (r *Runner) hostKeys(ctx context.Context, addr string) *hostCheck {
	h := &hostCheck{r: r, ctx: ctx, addr: addr}
	if r.known != nil {
		// One version for the whole handshake, whatever a reload does meanwhile.
		k, err := r.known.get(ctx)
		if err != nil {
			h.noKeys = err
			return h
		}
		h.known, h.listed = k, k.keysFor(addr)
	}
	if r.cfg.TrustOnFirstUse && len(h.listed) == 0 {
		h.pinned, h.pinErr = r.pins.PinnedHostKey(ctx, addr)
	}
	return h
}

func (k *knownHosts) keysFor(addr string) []ssh.PublicKey {
	if k.disabled {
		return nil
	}
	return k.index[knownhosts.Normalize(hostName(addr))]
}

// hostName is addr as known_hosts matches it: OpenSSH lowercases the name
// the user typed, and hashes that, so an inventory's "VPS1.example.com" is
// found under the "vps1.example.com" that ssh-keyscan wrote.
func hostName(addr string) string { return strings.ToLower(addr) }

// algorithms asks the server for the kinds of key we can verify, so a server
// with several host keys does not present one we do not know.
func (h *hostCheck) algorithms() []string {
	keys, certs := h.listed, false
	if len(keys) == 0 && h.known != nil {
		keys, certs = h.known.probe(h.addr)
	}
	if len(keys) == 0 && h.pinned != "" {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.pinned)); err == nil {
			keys = []ssh.PublicKey{k}
		}
	}
	var algos []string
	for _, k := range keys {
		if k.Type() == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		} else {
			algos = append(algos, k.Type())
		}
	}
	switch {
	case certs && len(algos) > 0:
		// A CA vouches for the host too: a certificate first, else the key listed.
		algos = append(slices.Clip(certAlgos), algos...)
	case !certs && len(algos) == 0 && h.r.cfg.TrustOnFirstUse:
		// About to pin: the host's own key, not a certificate, which is
		// reissued and would then read as a changed key.
		algos = plainAlgos
	}
	return algos
}

// plainAlgos are the host key algorithms without certificates.
var plainAlgos = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}

// certAlgos are the host certificate algorithms, as x/crypto prefers them.
var certAlgos = []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}

// probe returns the keys knownhosts lists for addr in entries the index
// does not hold (hashed, wildcard): it checks a key no file lists, and the
// refusal names the keys wanted. Without this a server with several host
// keys presents the kind x/crypto prefers (ECDSA), not the one listed, and
// the check fails as a changed key. certs says a @cert-authority line covers
// addr; its CA's key is not one the host presents, so it is left out. A host
// only a CA covers gets no hint, and x/crypto asks for certificates first.
func (k *knownHosts) probe(addr string) (keys []ssh.PublicKey, certs bool) {
	if k.probeKey == nil {
		return nil, false
	}
	// The remote address is only parsed: knownhosts matches addr first.
	var ke *knownhosts.KeyError
	if !errors.As(k.full(hostName(addr), &net.TCPAddr{IP: net.IPv4zero}, k.probeKey), &ke) {
		return nil, false
	}
	return k.hostKeysOf(ke)
}

// hostKeysOf splits the keys a refusal wanted into host keys and whether a
// CA was among them.
func (k *knownHosts) hostKeysOf(ke *knownhosts.KeyError) (keys []ssh.PublicKey, certs bool) {
	for _, w := range ke.Want {
		if k.cas[string(w.Key.Marshal())] {
			certs = true
		} else {
			keys = append(keys, w.Key)
		}
	}
	return keys, certs
}

func (h *hostCheck) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.err = h.verify(hostname, remote, key)
	return h.err
}

// changed is the refusal of a host whose key is not the one known_hosts lists.
func (h *hostCheck) changed(listed, presented ssh.PublicKey) error {
	path := h.known.path
	return fmt.Errorf("host key of %s changed: %s lists %s, the host presented %s %s; if the change is expected, update %s",
		h.addr, path, ssh.FingerprintSHA256(listed), presented.Type(), ssh.FingerprintSHA256(presented), path)
}

func (h *hostCheck) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	fp := ssh.FingerprintSHA256(key)
	if h.noKeys != nil {
		return fmt.Errorf("host key of %s not checked: %w", h.addr, h.noKeys)
	}
	if k := h.known; k != nil {
		presented := key.Marshal()
		for _, w := range h.listed {
			if bytes.Equal(w.Marshal(), presented) {
				return nil
			}
		}
		if len(h.listed) == 0 && (k.complex || k.disabled) {
			var ke *knownhosts.KeyError
			var re *knownhosts.RevokedError
			err := k.full(hostName(hostname), remote, key)
			switch {
			case err == nil:
				return nil
			case errors.As(err, &re):
				return fmt.Errorf("host key of %s (%s) is revoked in %s", h.addr, fp, k.path)
			case errors.As(err, &ke) && len(ke.Want) > 0:
				if keys, _ := k.hostKeysOf(ke); len(keys) > 0 {
					return h.changed(keys[0], key)
				}
				return fmt.Errorf("host %s presented a plain %s key (%s), but %s vouches for it only through a certificate authority",
					h.addr, key.Type(), fp, k.path)
			case !errors.As(err, &ke):
				return fmt.Errorf("check host key of %s: %w", h.addr, err)
			}
		} else if len(h.listed) > 0 {
			return h.changed(h.listed[0], key)
		}
		if !h.r.cfg.TrustOnFirstUse {
			return fmt.Errorf("host %s is not in %s (it presented %s %s); check the fingerprint and add it (ssh-keyscan)",
				h.addr, k.path, key.Type(), fp)
		}
	}
	if h.pinErr != nil {
		return fmt.Errorf("read pinned host key of %s: %w", h.addr, h.pinErr)
	}
	presented := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	pinned := h.pinned
	if pinned == "" {
		var err error
		if pinned, err = h.r.pins.PinHostKey(h.ctx, h.addr, presented); err != nil {
			return fmt.Errorf("pin host key of %s: %w", h.addr, err)
		}
		if pinned == presented {
			h.r.log.Info("pinned host key on first use", "host", h.addr, "key", fp)
		}
	}
	if pinned != presented {
		old := pinned
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned)); err == nil {
			old = ssh.FingerprintSHA256(k)
		}
		return fmt.Errorf("host key of %s changed: %s was pinned on first use, the host presented %s %s; "+
			"if the change is expected, unpin it (rolloutbot hosts unpin %s)", h.addr, old, key.Type(), fp, h.addr)
	}
	return nil
}
