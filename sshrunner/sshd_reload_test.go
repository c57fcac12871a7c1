package sshrunner_test

import (
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/sshrunner/sshdtest"
)

// known_hosts edited while the runner runs, against a real sshd: a revoked
// key is refused from the next connection on, and a key rotated in the file
// (to another kind, which the runner must then ask the server for) is used.
func TestSSHDKnownHostsReload(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.Options{})
	other := sshdtest.Keygen(t, t.TempDir(), "other", "-t", "ed25519")
	host := s.Hosts[0].Host
	addr, ed, rsa := host.Addr(), s.HostKeys["ed25519"], s.HostKeys["rsa"]
	line := func(k ssh.PublicKey) string { return knownhosts.Line([]string{addr}, k) }
	cfg := sshdConfig(t, s)
	path := cfg.KnownHostsFile
	runReloadSteps(t, newRunner(t, cfg, nil), host, path, []reloadStep{
		{"listed", nil, nil},
		{"revoked", replaced(line(ed), "@revoked * "+authorizedKey(ed)),
			[]string{"host key of " + addr + " (" + ssh.FingerprintSHA256(ed) + ") is revoked in " + path}},
		{"revocation taken back", replaced(line(ed)), nil},
		{"rotated to the RSA key", replaced(line(rsa)), nil},
		{"rotated to a key the server does not have", rewritten(line(sshdtest.ReadPublicKey(t, other+".pub"))),
			[]string{"host key of " + addr + " changed", ssh.FingerprintSHA256(ed)}},
		{"the right key again", replaced(line(ed)), nil},
	})
}
