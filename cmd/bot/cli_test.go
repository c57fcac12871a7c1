package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/sshrunner/fleetsim"
)

// The terminal commands, run in this process: bad input gets a clear error
// and changes nothing.

// inProc runs rolloutbot in this process with the fixture's configuration
// (from ROLLOUTBOT_CONFIG, so args are exactly what a user types) and
// environment, and returns what it printed and its error.
func (f *fixture) inProc(args ...string) (string, error) {
	f.t.Helper()
	var out syncBuffer
	m := &Main{Stdout: &out, Stderr: &out, Getenv: f.cliGetenv}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := m.Run(ctx, args)
	return out.String(), err
}

func (f *fixture) cliGetenv(name string) string {
	v := ""
	if name == "ROLLOUTBOT_CONFIG" {
		v = f.cfg
	}
	for _, e := range f.env {
		if s, ok := strings.CutPrefix(e, name+"="); ok {
			v = s
		}
	}
	return v
}

// mustInProc runs a command that must succeed.
func (f *fixture) mustInProc(args ...string) string {
	f.t.Helper()
	out, err := f.inProc(args...)
	if err != nil {
		f.t.Fatalf("rolloutbot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliStoreFixture is a fixture whose hosts are managed with `rolloutbot
// hosts` (inventory.source: store) instead of read from its file.
func cliStoreFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, fixtureOptions{hosts: 1})
	data, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "  source: file\n  file: hosts.yaml\n", "  source: store\n", 1)
	if cfg == string(data) {
		t.Fatal("the fixture's configuration has no file inventory to replace")
	}
	if err := os.WriteFile(f.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) writeFile(name, data string) string {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return path
}

// assertFleetUntouched fails when anything connected to the simulated fleet.
func (f *fixture) assertFleetUntouched(what string) {
	f.t.Helper()
	if st := f.fleet.Totals(); st != (fleetsim.Stats{}) {
		f.t.Errorf("%s: the fleet was contacted: %+v", what, st)
	}
}

// assertNoRollouts fails when a rollout was recorded.
func (f *fixture) assertNoRollouts(what string) {
	f.t.Helper()
	rs, err := f.store().Rollouts(context.Background(), 10)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(rs) != 0 {
		f.t.Errorf("%s: %d rollouts recorded: %+v", what, len(rs), rs[0])
	}
}

// A malformed import file is refused with its line, and imports nothing: the
// hosts from before are all there, unchanged.
func TestCLIImportBadFileChangesNothing(t *testing.T) {
	f := cliStoreFixture(t)
	good := f.writeFile("good.csv", "id,address,port,user,label\n"+
		"web-1,10.0.0.1,22,,acme\nweb-2,10.0.0.2,2222,deploy,globex\nweb-3,10.0.0.3,,,initech\n")
	if out := f.mustInProc("hosts", "import", good); !strings.Contains(out, "imported 3 hosts") {
		t.Fatalf("import: %s", out)
	}
	f.mustInProc("hosts", "disable", "web-2")
	before := f.mustInProc("hosts", "list")
	for _, w := range []string{"web-1", "10.0.0.2:2222", "deploy", "globex", "disabled", "initech", "3 hosts"} {
		if !strings.Contains(before, w) {
			t.Fatalf("hosts list does not show %q:\n%s", w, before)
		}
	}

	// Each bad file first changes a host and adds one, so a partial import would show.
	for _, tc := range []struct {
		name, file, data string
		want             []string
	}{
		{"csv bad port", "bad-port.csv", "id,address,port\nweb-1,10.9.9.1,22\nnew-1,10.9.9.9,22\nnew-2,10.9.9.8,twenty-two\n",
			[]string{"line 4", "port", "twenty-two"}},
		{"csv missing address", "no-address.csv", "id,address,port\nweb-1,10.9.9.1,22\nnew-1,10.9.9.9,22\nnew-2,,22\n",
			[]string{"line 4", "new-2", "address is empty"}},
		{"csv duplicate id", "dup.csv", "id,address\nweb-1,10.9.9.1\nnew-1,10.9.9.9\nweb-1,10.9.9.2\n",
			[]string{"line 4", "web-1", "line 2"}},
		{"csv unknown column", "column.csv", "id,address,hostname\nweb-1,10.9.9.1,a\nnew-1,10.9.9.9,b\n",
			[]string{"line 1", "hostname"}},
		{"yaml unknown key", "key.yaml", "hosts:\n  - id: web-1\n    address: 10.9.9.1\n  - id: new-1\n    address: 10.9.9.9\n    hostname: n1\n",
			[]string{"line 6", "hostname"}},
		{"yaml bad port type", "port.yml", "- id: web-1\n  address: 10.9.9.1\n- id: new-1\n  address: 10.9.9.9\n  port: ssh\n",
			[]string{"line 5", "ssh"}},
		{"yaml duplicate id", "dup.yaml", "- {id: web-1, address: 10.9.9.1}\n- {id: new-1, address: 10.9.9.9}\n- {id: new-1, address: 10.9.9.8}\n",
			[]string{"line 3", "new-1", "line 2"}},
		{"csv one machine twice", "machine.csv", "id,address,port\nweb-1,10.9.9.1,22\nnew-1,10.9.9.9,\nnew-2,10.9.9.9,22\n",
			[]string{"line 4", "hosts new-1 and new-2 have the same address 10.9.9.9:22", "line 3"}},
		{"yaml one machine twice", "machine.yaml", "- {id: web-1, address: 10.9.9.1}\n- {id: new-1, address: Box.Example.com}\n- {id: new-2, address: box.example.com, port: 22}\n",
			[]string{"line 3", "hosts new-1 and new-2 have the same address", "line 2"}},
		{"a stored host's machine", "stored.csv", "id,address,port\nweb-1,10.9.9.1,22\nnew-1,10.9.9.9,22\nnew-2,10.0.0.3,22\n",
			[]string{"hosts web-3 and new-2 have the same address 10.0.0.3:22"}},
		{"csv port 0", "port0.csv", "id,address,port\nweb-1,10.9.9.1,22\nnew-1,10.9.9.9,22\nnew-2,10.9.9.8,0\n",
			[]string{"line 4", "host new-2: port 0"}},
		{"yaml port 0", "port0.yaml", "- {id: web-1, address: 10.9.9.1}\n- {id: new-1, address: 10.9.9.9}\n- {id: new-2, address: 10.9.9.8, port: 0}\n",
			[]string{"line 3", "host new-2: port 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := f.writeFile(tc.file, tc.data)
			out, err := f.inProc("hosts", "import", path)
			if err == nil {
				t.Fatalf("imported:\n%s", out)
			}
			if errors.Is(err, errUsage) {
				t.Errorf("a bad file is not a usage error: %v", err)
			}
			for _, w := range append(tc.want, tc.file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(out, "imported") {
				t.Errorf("output says it imported:\n%s", out)
			}
			if after := f.mustInProc("hosts", "list"); after != before {
				t.Errorf("hosts changed by a failed import:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}

	// A file that does not exist, or an invalid host on the command line, changes nothing either.
	if _, err := f.inProc("hosts", "import", filepath.Join(f.dir, "missing.csv")); err == nil {
		t.Error("importing a missing file succeeded")
	}
	if _, err := f.inProc("hosts", "add", "new-3", "10.0.0.9 10.0.0.8"); err == nil {
		t.Error("adding a host with a bad address succeeded")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hosts", "add", "new-3", "10.0.0.9", "--port", "0"}, "host new-3: port 0"},
		{[]string{"hosts", "add", "new-3", "10.0.0.2", "--port", "2222"}, "hosts web-2 and new-3 have the same address 10.0.0.2:2222"},
		{[]string{"hosts", "add", "new-3", "10.0.0.1"}, "hosts web-1 and new-3 have the same address 10.0.0.1:22"},
		{[]string{"hosts", "add", "web-1", "10.0.0.3"}, "hosts web-1 and web-3 have the same address 10.0.0.3:22"},
	} {
		if out, err := f.inProc(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q\n%s", tc.args, err, tc.want, out)
		}
	}
	if after := f.mustInProc("hosts", "list"); after != before {
		t.Errorf("hosts changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// What a user sees from the real program: the message on stderr, exit 1.
	dup := f.writeFile("dup-machine.csv", "id,address\nnew-1,10.9.9.9\nnew-2,10.9.9.9\n")
	if code, out := f.run("hosts", "import", dup); code != 1 ||
		!strings.Contains(out, "rolloutbot: "+dup+": line 3: hosts new-1 and new-2 have the same address 10.9.9.9:22") {
		t.Errorf("rolloutbot hosts import %s exited %d:\n%s", dup, code, out)
	}
	if after := f.mustInProc("hosts", "list"); after != before {
		t.Errorf("hosts changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// And a good file after all that imports: the comparisons above were not vacuous.
	f.mustInProc("hosts", "import", f.writeFile("more.yaml", "hosts:\n  - {id: web-1, address: 10.9.9.1}\n  - {id: new-1, address: 10.9.9.9}\n"))
	after := f.mustInProc("hosts", "list")
	for _, w := range []string{"10.9.9.1:22", "new-1", "web-2", "web-3", "4 hosts"} {
		if !strings.Contains(after, w) {
			t.Errorf("after a good import, hosts list does not show %q:\n%s", w, after)
		}
	}
	f.assertFleetUntouched("hosts commands")
}

// With inventory.source: file the hosts are managed in the file: the hosts
// commands that would change the store's list are refused, naming the setting.
func TestCLIHostsCommandsFollowTheInventorySource(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2})
	good := f.writeFile("good.csv", "id,address\nweb-1,10.0.0.1\n")
	for _, args := range [][]string{{"hosts", "import", good}, {"hosts", "add", "web-1", "10.0.0.1"}, {"hosts", "remove", "host-0"}} {
		if _, err := f.inProc(args...); err == nil || !strings.Contains(err.Error(), "inventory.source") {
			t.Errorf("%v: %v", args, err)
		}
	}
	// list shows the file's hosts.
	if out := f.mustInProc("hosts", "list"); !strings.Contains(out, "2 hosts") {
		t.Errorf("hosts list:\n%s", out)
	}
}

// A file inventory with one machine entered twice starts nothing: both
// entries and the address are named, and no host is contacted.
func TestCLIFileInventoryOneMachineTwice(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2})
	h := f.fleet.Hosts()[0]
	f.writeFile("hosts.yaml", fmt.Sprintf("hosts:\n  - {id: a, address: %s, port: %d}\n  - {id: b, address: %s, port: %d}\n",
		h.Address, h.Port, h.Address, h.Port))
	want := fmt.Sprintf("hosts a and b have the same address %s:%d", h.Address, h.Port)
	for _, cmd := range []string{"start", "plan"} {
		if out, err := f.inProc("rollout", cmd, "v2"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rollout %s v2: %v, want an error containing %q\n%s", cmd, err, want, out)
		}
	}
	f.assertFleetUntouched("one machine twice")
	f.assertNoRollouts("one machine twice")
}

// A wrong DATABASE_URL fails at start, naming DATABASE_URL and the host,
// never printing the password.
func TestCLIBadDatabaseURLHidesThePassword(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2})
	commands := [][]string{
		{"migrate"}, {"rollout", "status"}, {"rollout", "history"}, {"rollout", "start", "v2"}, {"rollout", "plan", "v2"},
		{"rollout", "halt"}, {"rollout", "resume"}, {"rollout", "rollback"}, {"rollout", "plan", "--rollback"},
		{"hosts", "list"}, {"config", "check", "--connect"},
	}
	check := func(t *testing.T, wantHost bool) {
		for _, args := range commands {
			out, err := f.inProc(args...)
			if err == nil {
				t.Errorf("%v: no error\n%s", args, out)
				continue
			}
			msg := err.Error() + "\n" + out
			if strings.Contains(msg, "s3cret") {
				t.Errorf("%v: the password is shown:\n%s", args, msg)
			}
			if !strings.Contains(err.Error(), "DATABASE_URL") {
				t.Errorf("%v: error %q does not name DATABASE_URL", args, err)
			}
			if wantHost && !strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("%v: error %q does not name the host", args, err)
			}
		}
	}
	t.Run("unreachable", func(t *testing.T) {
		f.env = []string{"DATABASE_URL=postgres://bob:s3cret@127.0.0.1:1/x"}
		check(t, true)
	})
	t.Run("from a file", func(t *testing.T) {
		f.env = []string{"DATABASE_URL_FILE=" + f.writeFile("database_url", "postgresql://bob:s3cret@127.0.0.1:1/x?sslmode=disable\n")}
		check(t, true)
	})
	t.Run("unparsable", func(t *testing.T) {
		f.env = []string{"DATABASE_URL=postgres://bob:s3cret@127.0.0.1:port/x"}
		check(t, false)
	})
	t.Run("not postgres", func(t *testing.T) {
		f.env = []string{"DATABASE_URL=mysql://bob:s3cret@127.0.0.1/x"}
		check(t, false)
	})
	f.assertFleetUntouched("a start without a store")

	// What a user sees from the real program: the message on stderr, exit 1.
	f.env = []string{"DATABASE_URL=postgres://bob:s3cret@127.0.0.1:1/x"}
	for _, args := range [][]string{{"migrate"}, {"rollout", "status"}} {
		code, out := f.run(args...)
		if code != 1 || strings.Contains(out, "s3cret") || !strings.Contains(out, "rolloutbot: DATABASE_URL") || !strings.Contains(out, "127.0.0.1") {
			t.Errorf("rolloutbot %v exited %d:\n%s", args, code, out)
		}
	}
}

// An empty inventory gives a clear message, from start and from plan.
func TestCLIEmptyInventory(t *testing.T) {
	check := func(t *testing.T, f *fixture) {
		t.Helper()
		for _, cmd := range []string{"start", "plan"} {
			out, err := f.inProc("rollout", cmd, "v2")
			if !errors.Is(err, rollout.ErrNoHosts) || !strings.Contains(err.Error(), "no active hosts") {
				t.Errorf("rollout %s v2: %v\n%s", cmd, err, out)
			}
		}
		f.assertFleetUntouched("empty inventory")
		f.assertNoRollouts("empty inventory")
	}
	t.Run("empty file", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{hosts: 1})
		f.writeFile("hosts.yaml", "hosts: []\n")
		check(t, f)
	})
	t.Run("every host disabled", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{hosts: 1})
		h := f.fleet.Hosts()[0]
		f.writeFile("hosts.yaml", "hosts:\n  - {id: a, address: "+h.Address+", disabled: true}\n")
		check(t, f)
	})
	t.Run("empty store", func(t *testing.T) {
		f := cliStoreFixture(t)
		if out := f.mustInProc("hosts", "list"); !strings.Contains(out, "0 hosts") {
			t.Errorf("hosts list:\n%s", out)
		}
		check(t, f)
	})
}

// An invalid version is refused before any host is touched or anything recorded.
func TestCLIStartRefusesInvalidVersion(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 3})
	for _, v := range []string{"v1; rm -rf /", "$(reboot)", "v1 v2", "v1\nreboot", "'v1'", ".v1", "v1/../x", strings.Repeat("a", 200)} {
		for _, args := range [][]string{{"rollout", "start", v}, {"rollout", "start", "--version", v}, {"rollout", "plan", v}} {
			out, err := f.inProc(args...)
			if !errors.Is(err, rollout.ErrInvalidVersion) {
				t.Errorf("%q: %v\n%s", args, err, out)
			}
		}
	}
	// No version at all, and no latest_version_command to ask.
	for _, args := range [][]string{{"rollout", "start", ""}, {"rollout", "start"}, {"rollout", "plan"}} {
		if out, err := f.inProc(args...); !errors.Is(err, rollout.ErrNoVersion) {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	f.assertFleetUntouched("invalid versions")
	f.assertNoRollouts("invalid versions")

	// Bad settings on the command line are refused the same way, naming the flag.
	for _, args := range [][]string{
		{"rollout", "start", "v2", "--stages", "10,50"}, {"rollout", "start", "v2", "--stages", "ten"},
		{"rollout", "start", "v2", "--threshold", "101"},
	} {
		if out, err := f.inProc(args...); err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	f.assertFleetUntouched("invalid settings")
	f.assertNoRollouts("invalid settings")
}

// halt with nothing running and resume with nothing halted say so, before
// any rollout and after one completed.
func TestCLIHaltAndResumeWithNothingToDo(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 3})
	nothing := func(when string) {
		t.Helper()
		if out, err := f.inProc("rollout", "halt", "because"); !errors.Is(err, rollout.ErrNotRunning) || !strings.Contains(err.Error(), "no rollout is running") {
			t.Errorf("%s: halt: %v\n%s", when, err, out)
		}
		if out, err := f.inProc("rollout", "resume"); !errors.Is(err, rollout.ErrNotHalted) || !strings.Contains(err.Error(), "no halted rollout") {
			t.Errorf("%s: resume: %v\n%s", when, err, out)
		}
	}
	nothing("before any rollout")
	if out, err := f.inProc("rollout", "status"); err == nil || !strings.Contains(err.Error(), "no rollouts yet") {
		t.Errorf("status: %v\n%s", err, out)
	}
	f.assertFleetUntouched("halt and resume with nothing to do")

	if out := f.mustInProc("rollout", "start", "v2"); !strings.Contains(out, "completed") {
		t.Fatalf("start:\n%s", out)
	}
	nothing("after a completed rollout")
	if st := f.fleet.Totals(); st.Updates != 3 {
		t.Errorf("%d updates, want 3 (resume must not run the completed rollout again)", st.Updates)
	}
	if out := f.mustInProc("rollout", "history"); !strings.Contains(out, "v2") {
		t.Errorf("history:\n%s", out)
	}
	if out, err := f.inProc("rollout", "status", "--id", "99"); err == nil || !strings.Contains(err.Error(), "no rollout #99") {
		t.Errorf("status --id 99: %v\n%s", err, out)
	}
}

// Unknown commands and bad flags or arguments exit with usage, say what is
// wrong, and touch nothing.
func TestCLIUsageErrors(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 1})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: rolloutbot"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"--config"}, "unknown command"},
		{[]string{"rollout"}, "usage: rolloutbot rollout"},
		{[]string{"rollout", "frob"}, `unknown command "frob"`},
		{[]string{"rollout", "--version", "v2"}, "unknown command"},
		{[]string{"hosts"}, "usage: rolloutbot hosts"},
		{[]string{"hosts", "frob"}, `unknown command "frob"`},
		{[]string{"config"}, "usage: rolloutbot config COMMAND"},
		{[]string{"config", "frob"}, `unknown command "frob"`},
		{[]string{"rollout", "start", "v2", "--bogus"}, "-bogus"},
		{[]string{"rollout", "plan", "v2", "--concurrency", "many"}, "-concurrency"},
		{[]string{"rollout", "status", "--id", "abc"}, "-id"},
		{[]string{"rollout", "halt", "--nope"}, "-nope"},
		{[]string{"rollout", "resume", "--nope"}, "-nope"},
		{[]string{"rollout", "history", "--limit", "x"}, "-limit"},
		{[]string{"rollout", "history", "x"}, `"x"`},
		{[]string{"rollout", "history", "0"}, `"0"`},
		{[]string{"hosts", "list", "--nope"}, "-nope"},
		{[]string{"hosts", "add", "only-id"}, "2 argument(s), got 1"},
		{[]string{"hosts", "import"}, "1 argument(s), got 0"},
		{[]string{"hosts", "list", "extra"}, "0 argument(s), got 1"},
		{[]string{"migrate", "--nope"}, "-nope"},
		{[]string{"config", "check", "--nope"}, "-nope"},
	} {
		out, err := f.inProc(tc.args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error\n%s", tc.args, err, out)
			continue
		}
		// main prints nothing more for a usage error: what is wrong must be in the output.
		if !strings.Contains(out, tc.want) {
			t.Errorf("%q: the output does not say %q:\n%s", tc.args, tc.want, out)
		}
	}
	// -h is help, not an error.
	for _, args := range [][]string{{"help"}, {"--help"}} {
		if out, err := f.inProc(args...); err != nil || !strings.Contains(out, "rollout start [VERSION]") {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	if _, err := f.inProc("rollout", "start", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("rollout start -h: %v", err)
	}
	f.assertFleetUntouched("usage errors")
	f.assertNoRollouts("usage errors")

	// The real program exits 2.
	if code, out := f.run("rollout", "frob"); code != 2 || !strings.Contains(out, `unknown command "frob"`) {
		t.Errorf("rolloutbot rollout frob exited %d:\n%s", code, out)
	}
}

// config check reports the file's mistakes with their line and setting.
func TestCLIConfigCheck(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 1})
	if out := f.mustInProc("config", "check"); !strings.Contains(out, "configuration is valid") || !strings.Contains(out, "inventory: file") {
		t.Errorf("config check:\n%s", out)
	}
	if out, err := f.inProc("config", "check", "--serve"); err == nil ||
		!strings.Contains(err.Error(), "SLACK_BOT_TOKEN") || !strings.Contains(err.Error(), "slack.channel") {
		t.Errorf("config check --serve without Slack: %v\n%s", err, out)
	}
	data, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(data), "\n")
	f.writeFile(filepath.Base(f.cfg), string(data)+"http:\n  adress: 127.0.0.1:9\n")
	out, err := f.inProc("config", "check")
	if err == nil || !strings.Contains(err.Error(), "adress") || !strings.Contains(err.Error(), "line "+strconv.Itoa(lines+2)) {
		t.Errorf("config check with a typo on line %d: %v\n%s", lines+2, err, out)
	}
	f.writeFile(filepath.Base(f.cfg), string(data)+"http:\n  addr: nowhere\n")
	if out, err := f.inProc("config", "check"); err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Errorf("config check with a bad http.addr: %v\n%s", err, out)
	}
}
