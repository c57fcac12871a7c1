// Package sshdtest gives tests a real OpenSSH sshd on loopback, with its own
// host keys, authorized keys and configuration in a temporary directory, as
// pgtest does for PostgreSQL. The login user is the one running the tests.
//
// One sshd can stand in for several machines: each Host is its own loopback
// port, and a session on that port gets HOME set to the host's own directory.
// Recipes in tests should keep their files at "$HOME/...": sshd starts every
// session in the passwd home, which all hosts share, and only when the login
// shell is bash (through the host's ~/.bashrc) does the session move to the
// host's HOME, making relative paths ("cat version") per machine too.
//
// When OpenSSH is not installed, Start fails the test with how to install it:
// it never skips.
package sshdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// sshdPath is started by absolute path: sshd re-executes itself and refuses
// a relative one.
const sshdPath = "/usr/sbin/sshd"

const installHint = "the SSH runner is tested against a real OpenSSH server: apt-get install -y openssh-server"

// Options shape a server.
type Options struct {
	// Hosts is how many machines the server stands in for; 0 means 1.
	Hosts int
	// Extra returns lines appended to the global part of sshd_config, given
	// the server's directory, where it may write files they name. A SetEnv
	// there is ignored on the hosts' ports: each host's Match block sets its
	// own, and sshd takes a Match block's over global ones.
	Extra func(dir string) []string
}

// Server is a running sshd.
type Server struct {
	Dir   string // the server's files; removed at cleanup
	User  string // the login user: the one running the tests
	Hosts []Host // one per machine, IDs "sshd-1", "sshd-2", …
	// NoSessions is the same server on one more port, where MaxSessions is
	// 0: logins work, sessions are refused.
	NoSessions rollout.Host
	HostKeys   map[string]ssh.PublicKey // by ssh-keygen type: ed25519, rsa, ecdsa
	// ClientKeys are private key files whose public keys are authorized, by
	// ssh-keygen type; the RSA one is in PEM, the format older tools write.
	ClientKeys map[string]string

	log string
}

// Host is one machine the server stands in for.
type Host struct {
	rollout.Host
	// Home is the machine's HOME and, when the login shell is bash, its
	// sessions' working directory.
	Home string
}

// Start starts sshd for t and returns once every port accepts connections;
// the server is stopped and its directory removed at t's cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s: %v; %s", sshdPath, err, installHint)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatalf("ssh-keygen: %v; %s", err, installHint)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// Privilege separation chroots into this directory; it must exist.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("privilege separation directory: %v", err)
		}
	}
	// Not t.TempDir: its name comes from the test's, which may hold spaces
	// that sshd_config would need quoted.
	dir, err := os.MkdirTemp("", "sshdtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Dir: dir, User: u.Username, HostKeys: map[string]ssh.PublicKey{}, ClientKeys: map[string]string{}, log: filepath.Join(dir, "sshd.log")}

	n := max(opts.Hosts, 1)
	for i := range n {
		home := filepath.Join(dir, "home", strconv.Itoa(i+1))
		if err := os.MkdirAll(home, 0o755); err != nil {
			t.Fatal(err)
		}
		// sshd starts every session in the passwd home. Bash run by sshd
		// sources ~/.bashrc, in the same process, before the command; here
		// that is this file, and the cd makes relative paths per machine.
		// Once per session: a bash script the command execs sources it
		// too, and must stay where it was started. Not a ForceCommand
		// wrapper: sshd refuses to signal a forced-command session, and
		// timeout tests rely on signals.
		bashrc := "[ -n \"${SSHDTEST_IN_HOME-}\" ] || { export SSHDTEST_IN_HOME=1; cd \"$HOME\"; }\n"
		if err := os.WriteFile(filepath.Join(home, ".bashrc"), []byte(bashrc), 0o644); err != nil {
			t.Fatal(err)
		}
		s.Hosts = append(s.Hosts, Host{Host: rollout.Host{ID: "sshd-" + strconv.Itoa(i+1), Address: "127.0.0.1"}, Home: home})
	}

	// Host keys of three types, so the server offers several; RSA is the
	// slow one, so the keys are made in parallel.
	keyArgs := map[string][]string{
		"ed25519": {"-t", "ed25519"},
		"rsa":     {"-t", "rsa", "-b", "2048"},
		"ecdsa":   {"-t", "ecdsa", "-b", "256"},
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var hostKeyLines, authorized []string
	for typ, args := range keyArgs {
		wg.Go(func() {
			hk, err := keygen(dir, "host_"+typ, args...)
			if err != nil {
				t.Error(err)
				return
			}
			if typ == "rsa" {
				args = append(args, "-m", "PEM")
			}
			ck, err := keygen(dir, "client_"+typ, args...)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			s.ClientKeys[typ] = ck
			hostKeyLines = append(hostKeyLines, "HostKey "+hk)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(hostKeyLines) // the same config for the same keys, run to run
	for typ, ck := range s.ClientKeys {
		s.HostKeys[typ] = ReadPublicKey(t, filepath.Join(dir, "host_"+typ+".pub"))
		authorized = append(authorized, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ReadPublicKey(t, ck+".pub")))))
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(strings.Join(authorized, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var extra []string
	if opts.Extra != nil {
		extra = opts.Extra(dir)
	}

	// A free port can be taken between the check and sshd's bind: try again.
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, n+1) // the hosts', then NoSessions'
		var listen, match []string
		for i, p := range ports {
			listen = append(listen, "ListenAddress 127.0.0.1:"+strconv.Itoa(p))
			if i == n {
				break
			}
			// Match blocks run to the end of the file, so they come last.
			// SetEnv overrides the HOME sshd sets (OpenSSH 9.2); the home's
			// .bashrc then moves the session there.
			match = append(match,
				"Match LocalPort "+strconv.Itoa(p),
				"SetEnv HOME="+s.Hosts[i].Home)
		}
		match = append(match, "Match LocalPort "+strconv.Itoa(ports[n]), "MaxSessions 0")
		conf := filepath.Join(dir, "sshd_config")
		lines := slices.Concat(hostKeyLines, listen, []string{
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"PermitRootLogin prohibit-password",
			"AllowUsers " + s.User,
			"UseDNS no",
			"X11Forwarding no",
			"PrintMotd no",
			"LogLevel VERBOSE",
		}, extra, match)
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		// The log is a file, not a pipe: sshd's children inherit it, and a
		// pipe would make Wait wait for them too.
		cmd := exec.Command(sshdPath, "-D", "-e", "-f", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start %s: %v", sshdPath, err)
		}
		logf.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for _, p := range ports {
			if err = waitForPort(p, exited, 5*time.Second); err != nil {
				break
			}
		}
		if err == nil {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					s.DumpLog(t)
				}
			})
			for i := range s.Hosts {
				s.Hosts[i].Port = ports[i]
			}
			s.NoSessions = rollout.Host{ID: "sshd-no-sessions", Address: "127.0.0.1", Port: ports[n]}
			return s
		}
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if attempt == 3 || !strings.Contains(s.Log(), "Address already in use") {
			s.DumpLog(t)
			t.Fatalf("sshd did not come up: %v", err)
		}
	}
}

// freePorts returns n distinct free ports. The listeners stay open until all
// are chosen: one closed before the next is opened may hand its port out again.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// waitForPort polls until port accepts, sshd exits, or timeout passes.
func waitForPort(port int, exited <-chan error, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited: %v", err)
		case <-deadline.C:
			return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
		case <-tick.C:
		}
	}
}

// Log is sshd's own log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// DumpLog logs sshd's log to t; Start does so itself when the test fails.
func (s *Server) DumpLog(t testing.TB) {
	t.Helper()
	t.Logf("sshd log:\n%s", s.Log())
}

// KnownHosts writes a known_hosts file in t's temporary directory that lists
// keys for every host's address and NoSessions', and returns its path.
func (s *Server) KnownHosts(t testing.TB, keys ...ssh.PublicKey) string {
	t.Helper()
	addrs := []string{s.NoSessions.Addr()}
	for _, h := range s.Hosts {
		addrs = append(addrs, h.Addr())
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line(addrs, k) + "\n")
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Keygen runs ssh-keygen to make an unencrypted key at dir/name, with args
// such as "-t", "ed25519", and returns its path; the public key is at
// path+".pub".
func Keygen(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	path, err := keygen(dir, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// keygen is Keygen for goroutines, which must not call t.Fatal.
func keygen(dir, name string, args ...string) (string, error) {
	path := filepath.Join(dir, name)
	out, err := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-C", name, "-f", path}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path, nil
}

// ReadPublicKey reads a public key file in authorized_keys form.
func ReadPublicKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}
