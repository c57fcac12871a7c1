package sshdtest_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/sshrunner/sshdtest"
)

func dial(t *testing.T, s *sshdtest.Server, addr string) *ssh.Client {
	t.Helper()
	key, err := os.ReadFile(s.ClientKeys["ed25519"])
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Every host key the server has, so whichever kind is negotiated is
	// listed.
	check, err := knownhosts.New(s.KnownHosts(t, s.HostKeys["ed25519"], s.HostKeys["rsa"], s.HostKeys["ecdsa"]))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: check,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// Each host is a machine of its own: its own HOME, which is also where its
// sessions start (the login shell here is bash), so relative paths and
// $HOME/... are both per machine.
func TestHosts(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.Options{Hosts: 3})
	if len(s.Hosts) != 3 {
		t.Fatalf("%d hosts, want 3", len(s.Hosts))
	}
	for i, h := range s.Hosts {
		t.Run(h.ID, func(t *testing.T) {
			for j, o := range s.Hosts {
				if j != i && (o.Home == h.Home || o.Port == h.Port) {
					t.Fatalf("%s shares a home or port with %s", h.ID, o.ID)
				}
			}
			c := dial(t, s, h.Addr())
			if got, want := run(t, c, `echo "$HOME"; pwd`), h.Home+"\n"+h.Home+"\n"; got != want {
				t.Fatalf("HOME and working directory = %q, want %q", got, want)
			}
			run(t, c, "echo "+h.ID+" > version; echo "+h.ID+"-home > \"$HOME/version-home\"")
			for file, want := range map[string]string{"version": h.ID, "version-home": h.ID + "-home"} {
				if b, err := os.ReadFile(filepath.Join(h.Home, file)); err != nil || string(b) != want+"\n" {
					t.Errorf("%s = %q, %v; want %q", file, b, err, want)
				}
			}
			// The command's shell is sshd's own child, the process sshd
			// signals on a timeout.
			if got := run(t, c, "cat /proc/$PPID/comm"); got != "sshd\n" {
				t.Errorf("the command's parent is %q, want sshd", got)
			}
			// A bash script the command runs, even as its last step (which
			// bash execs), stays where it was started.
			for _, cmd := range []string{"cd / && bash -c pwd", "cd / && bash -c pwd; true"} {
				if got := run(t, c, cmd); got != "/\n" {
					t.Errorf("%q prints %q, want /", cmd, got)
				}
			}
			// The exit status and stderr come through unchanged.
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			out, err := sess.CombinedOutput("echo oops >&2; exit 3")
			var exit *ssh.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 3 || string(out) != "oops\n" {
				t.Errorf("exit 3 = %v, %q", err, out)
			}
		})
	}

	t.Run("no sessions", func(t *testing.T) {
		c := dial(t, s, s.NoSessions.Addr())
		if sess, err := c.NewSession(); err == nil {
			sess.Close()
			t.Fatal("a session opened where MaxSessions is 0")
		}
	})

	t.Run("known_hosts lists every port", func(t *testing.T) {
		b, err := os.ReadFile(s.KnownHosts(t, s.HostKeys["ed25519"]))
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{s.Hosts[0].Addr(), s.Hosts[1].Addr(), s.Hosts[2].Addr(), s.NoSessions.Addr()} {
			host, port, _ := net.SplitHostPort(addr)
			if !strings.Contains(string(b), "["+host+"]:"+port) {
				t.Errorf("known_hosts lacks %s:\n%s", addr, b)
			}
		}
	})
}
