package config_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestParseHostsCSV(t *testing.T) {
	data := `# the fleet, exported from the billing system
address, id, label, port, user, disabled
10.0.0.1, web-1, acme, 2222, deploy, false

10.0.0.2, web-2, "globex, inc", , ,
# a comment between hosts
db.example.com, db-1, , 22, root, true
`
	hosts, err := config.ParseHostsCSV([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Host{
		{ID: "web-1", Address: "10.0.0.1", Port: 2222, User: "deploy", Label: "acme"},
		{ID: "web-2", Address: "10.0.0.2", Port: 22, Label: "globex, inc"},
		{ID: "db-1", Address: "db.example.com", Port: 22, User: "root", Disabled: true},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got  %+v\nwant %+v", hosts, want)
	}

	// Only id and address are required; the port defaults to 22.
	hosts, err = config.ParseHostsCSV([]byte("id,address\na,10.0.0.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []rollout.Host{{ID: "a", Address: "10.0.0.9", Port: 22}}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got %+v, want %+v", hosts, want)
	}

	// An empty file is an empty inventory, not an error.
	for _, empty := range []string{"", "# nothing yet\n", "id,address\n"} {
		hosts, err := config.ParseHostsCSV([]byte(empty))
		if err != nil || len(hosts) != 0 {
			t.Errorf("%q: %v %+v", empty, err, hosts)
		}
	}
}

// Every bad CSV entry fails the whole file with the line it is on, counted
// in the file (comments and blank lines included), not in records.
func TestParseHostsCSVErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"bad port on line 4", "id,address,port\na,10.0.0.1,22\nb,10.0.0.2,2222\nc,10.0.0.3,twenty-two\nd,10.0.0.4,22\n",
			[]string{"line 4:", "port", "twenty-two"}},
		{"port out of range", "id,address,port\na,10.0.0.1,70000\n", []string{"line 2:", "port 70000"}},
		{"missing address", "id,address\na,10.0.0.1\nb,\n", []string{"line 3:", "address is empty"}},
		{"missing id", "id,address\na,10.0.0.1\n ,10.0.0.2\n", []string{"line 3:", "id is empty"}},
		{"address with a space", "id,address\na,10.0.0.1 rm\n", []string{"line 2:", "address"}},
		{"duplicate id", "id,address\na,10.0.0.1\nb,10.0.0.2\na,10.0.0.3\n", []string{"line 4:", "host a", "line 2"}},
		{"unknown column", "id,address,hostname\na,10.0.0.1,x\n", []string{"line 1:", `unknown column "hostname"`}},
		{"no address column", "id,port\na,22\n", []string{"line 1:", "address"}},
		{"no id column", "address,port\n10.0.0.1,22\n", []string{"line 1:", "id"}},
		{"too few fields", "id,address,port\na,10.0.0.1,22\nb,10.0.0.2\n", []string{"line 3:", "2 fields", "3"}},
		{"bad disabled", "id,address,disabled\na,10.0.0.1,maybe\n", []string{"line 2:", "disabled", "maybe"}},
		{"comments and blank lines count", "# fleet\nid,address,port\n\n# web\na,10.0.0.1,22\n\nb,10.0.0.2,x\n",
			[]string{"line 7:", "port"}},
		{"bare quote", "id,address\na,10.0.0.1\nb,10.0\"0.2\n", []string{"line 3"}},
		{"port 0", "id,address,port\na,10.0.0.1,22\nb,10.0.0.2,0\n", []string{"line 3:", "host b: port 0"}},
		{"same address and port", "id,address,port\nweb-1,10.0.0.4,22\nweb-2,10.0.0.5,22\nweb-7,10.0.0.4,22\n",
			[]string{"line 4:", "hosts web-1 and web-7 have the same address 10.0.0.4:22", "web-1 is on line 2"}},
		{"no port is 22", "id,address,port\na,10.0.0.4,\nb,10.0.0.4,22\n", []string{"line 3:", "hosts a and b", "10.0.0.4:22"}},
		{"names in any case", "id,address\na,Web1.Example.com\nb,web1.example.COM\n", []string{"line 3:", "hosts a and b"}},
		{"disabled entries count", "id,address,disabled\na,10.0.0.4,true\nb,10.0.0.4,false\n", []string{"line 3:", "hosts a and b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := config.ParseHostsCSV([]byte(tc.data))
			if err == nil {
				t.Fatalf("no error; hosts %+v", hosts)
			}
			if hosts != nil {
				t.Errorf("hosts returned with the error: %+v", hosts)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseHostsYAML(t *testing.T) {
	want := []rollout.Host{
		{ID: "web-1", Address: "10.0.0.1", Port: 2222, User: "deploy", Label: "acme"},
		{ID: "web-2", Address: "10.0.0.2", Port: 22},
		{ID: "db-1", Address: "db.example.com", Port: 22, Disabled: true},
	}
	list := `- id: web-1
  address: 10.0.0.1
  port: 2222
  user: deploy
  label: acme
- {id: web-2, address: 10.0.0.2}
- id: db-1
  address: db.example.com
  disabled: true
`
	underKey := "# the fleet\nhosts:\n" + indent(list, "  ")
	for name, data := range map[string]string{"top-level list": list, "hosts key": underKey} {
		t.Run(name, func(t *testing.T) {
			hosts, err := config.ParseHostsYAML([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(hosts, want) {
				t.Fatalf("got  %+v\nwant %+v", hosts, want)
			}
		})
	}
	for _, empty := range []string{"", "# nothing\n", "[]\n", "hosts: []\n"} {
		hosts, err := config.ParseHostsYAML([]byte(empty))
		if err != nil || len(hosts) != 0 {
			t.Errorf("%q: %v %+v", empty, err, hosts)
		}
	}
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// Every bad YAML entry fails the whole file with the line of the mistake.
func TestParseHostsYAMLErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
		notWant    []string
	}{
		{"unknown key", `hosts:
  - id: a
    address: 10.0.0.1
  - id: b
    address: 10.0.0.2
    hostname: b.example.com
`, []string{"line 6", "hostname"}, []string{"line 3"}},
		{"bad port type", `- id: a
  address: 10.0.0.1
- id: b
  address: 10.0.0.2
  user: deploy
  port: ssh
`, []string{"line 6", "ssh"}, []string{"line 4"}},
		{"port out of range", "- id: a\n  address: 10.0.0.1\n  port: 70000\n", []string{"line 1", "port 70000"}, nil},
		{"duplicate id", `- id: a
  address: 10.0.0.1
- id: b
  address: 10.0.0.2
- id: a
  address: 10.0.0.3
`, []string{"line 5", "host a", "line 1"}, nil},
		{"missing address", "- id: a\n  address: 10.0.0.1\n- id: b\n  port: 22\n", []string{"line 3", "address is empty"}, nil},
		{"unknown top-level key", "hosts:\n  - {id: a, address: 10.0.0.1}\nservers:\n  - {id: b, address: 10.0.0.2}\n",
			[]string{"line 3", `"servers"`}, nil},
		{"not a list", "hosts:\n  id: a\n  address: 10.0.0.1\n", []string{"line 2", "list"}, nil},
		{"a host that is not a mapping", "- id: a\n  address: 10.0.0.1\n- just-a-name\n", []string{"line 3"}, nil},
		{"key given twice", "- id: a\n  address: 10.0.0.1\n- id: b\n  address: 10.0.0.2\n  id: c\n", []string{"line 5", "id"}, nil},
		{"bad disabled", "- id: a\n  address: 10.0.0.1\n  disabled: maybe\n", []string{"line 3", "maybe"}, nil},
		{"bad syntax", "- id: a\n  address: [10.0.0.1\n", []string{"line"}, nil},
		{"port 0", "- id: a\n  address: 10.0.0.1\n- id: b\n  address: 10.0.0.2\n  port: 0\n", []string{"line 3", "host b: port 0"}, []string{"line 1"}},
		{"same address and port", `- {id: web-1, address: 10.0.0.4}
- {id: web-2, address: 10.0.0.5}
- {id: web-7, address: 10.0.0.4, port: 22}
`, []string{"line 3", "hosts web-1 and web-7 have the same address 10.0.0.4:22", "web-1 is on line 1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := config.ParseHostsYAML([]byte(tc.data))
			if err == nil {
				t.Fatalf("no error; hosts %+v", hosts)
			}
			if hosts != nil {
				t.Errorf("hosts returned with the error: %+v", hosts)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q names %q, a line without the mistake", err, w)
				}
			}
		})
	}
}

func TestHostsYAMLRoundTrip(t *testing.T) {
	hosts := []rollout.Host{
		{ID: "web-1", Address: "10.0.0.1", Port: 2222, User: "deploy", Label: "acme: the \"big\" one"},
		{ID: "web-2", Address: "2001:db8::2", Port: 22},
		{ID: "db-1", Address: "db.example.com", Port: 22, User: "root", Label: "- not a list", Disabled: true},
		{ID: "007", Address: "10.0.0.7", Port: 22, Label: "yes"},
	}
	var buf bytes.Buffer
	if err := config.WriteHostsYAML(&buf, hosts); err != nil {
		t.Fatal(err)
	}
	got, err := config.ParseHostsYAML(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(got, hosts) {
		t.Fatalf("got  %+v\nwant %+v\nfile:\n%s", got, hosts, buf.String())
	}

	// A CSV import written back as YAML reads the same.
	fromCSV, err := config.ParseHostsCSV([]byte("id,address,port,user,label,disabled\n" +
		"a,10.0.0.1,2200,deploy,\"acme, inc\",false\nb,10.0.0.2,,,,true\n"))
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := config.WriteHostsYAML(&buf, fromCSV); err != nil {
		t.Fatal(err)
	}
	if got, err := config.ParseHostsYAML(buf.Bytes()); err != nil || !reflect.DeepEqual(got, fromCSV) {
		t.Fatalf("got %+v %v, want %+v\nfile:\n%s", got, err, fromCSV, buf.String())
	}
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadHostsFile(t *testing.T) {
	dir := t.TempDir()
	want := []rollout.Host{{ID: "a", Address: "10.0.0.1", Port: 22}}
	for _, name := range []string{"hosts.yaml", "hosts.yml"} {
		got, err := config.ReadHostsFile(writeFile(t, filepath.Join(dir, name), "- {id: a, address: 10.0.0.1}\n"))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	for _, name := range []string{"hosts.csv", "HOSTS.CSV"} {
		got, err := config.ReadHostsFile(writeFile(t, filepath.Join(dir, name), "id,address\na,10.0.0.1\n"))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	// A byte-order mark, as spreadsheets write one, is skipped, in CSV and YAML.
	for name, data := range map[string]string{"bom.csv": "\ufeffid,address\na,10.0.0.1\n", "bom.yaml": "\ufeff- {id: a, address: 10.0.0.1}\n"} {
		got, err := config.ReadHostsFile(writeFile(t, filepath.Join(dir, name), data))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	// Another extension is refused, not guessed at: a JSON file is not read as CSV.
	for _, name := range []string{"hosts.txt", "hosts.json", "hosts"} {
		_, err := config.ReadHostsFile(writeFile(t, filepath.Join(dir, name), "id,address\na,10.0.0.1\n"))
		if err == nil || !strings.Contains(err.Error(), "is not .csv, .yaml or .yml") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Errors name the file and the line.
	bad := writeFile(t, filepath.Join(dir, "bad.csv"), "id,address,port\na,10.0.0.1,x\n")
	if _, err := config.ReadHostsFile(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad file: %v", err)
	}
	if _, err := config.ReadHostsFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// A port written into the address is the host's port, IPv6 in brackets
// too; one that disagrees with the port column is refused.
func TestHostsAddressWithPort(t *testing.T) {
	csv := "id,address,port\na,10.0.0.9:2222,\nb,[2001:db8::1]:2200,\nc,[2001:db8::2],\nd,2001:db8::3,2022\ne,box.example.com:2201,2201\n"
	got, err := config.ParseHostsCSV([]byte(csv))
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Host{{ID: "a", Address: "10.0.0.9", Port: 2222}, {ID: "b", Address: "2001:db8::1", Port: 2200},
		{ID: "c", Address: "2001:db8::2", Port: 22}, {ID: "d", Address: "2001:db8::3", Port: 2022}, {ID: "e", Address: "box.example.com", Port: 2201}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("csv:\n got %+v\nwant %+v", got, want)
	}
	got, err = config.ParseHostsYAML([]byte("- {id: a, address: '10.0.0.9:2222'}\n- {id: b, address: '[2001:db8::1]:2200'}\n"))
	if err != nil || !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("yaml: %+v %v", got, err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"csv disagrees", "id,address,port\na,10.0.0.9:2222,22\n", "line 2: host a: address \"10.0.0.9:2222\" has port 2222, and port 22 is given"},
		{"csv bad port", "id,address\na,10.0.0.9:ssh\n", `line 2: host a: address "10.0.0.9:ssh": "ssh" is not a port number`},
	} {
		if _, err := config.ParseHostsCSV([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := config.ParseHostsYAML([]byte("- {id: a, address: '10.0.0.9:2222', port: 22}\n")); err == nil ||
		!strings.Contains(err.Error(), "line 1: host a: address") {
		t.Errorf("yaml disagrees: %v", err)
	}
}

func TestFileInventory(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "hosts.yaml"), `hosts:
  - {id: a, address: 10.0.0.1}
  - {id: b, address: 10.0.0.2, disabled: true}
  - {id: c, address: 10.0.0.3, port: 2222, disabled: false}
`)
	inv := config.FileInventory{Path: path}
	got, err := inv.ActiveHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Host{{ID: "a", Address: "10.0.0.1", Port: 22}, {ID: "c", Address: "10.0.0.3", Port: 2222}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	// The file is read at each call: an edit shows at the next rollout start.
	writeFile(t, path, "- {id: b, address: 10.0.0.2}\n- {id: d, address: 10.0.0.4, disabled: true}\n")
	got, err = inv.ActiveHosts(context.Background())
	if want := []rollout.Host{{ID: "b", Address: "10.0.0.2", Port: 22}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after the edit: %+v %v, want %+v", got, err, want)
	}

	// Every host disabled: an empty inventory, not an error.
	writeFile(t, path, "- {id: b, address: 10.0.0.2, disabled: true}\n")
	if got, err := inv.ActiveHosts(context.Background()); err != nil || len(got) != 0 {
		t.Fatalf("all disabled: %+v %v", got, err)
	}

	// A broken file fails the rollout start rather than rolling out to part of it.
	writeFile(t, path, "- {id: b, address: 10.0.0.2}\n- {id: b, address: 10.0.0.3}\n")
	if got, err := inv.ActiveHosts(context.Background()); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("duplicate: %+v %v", got, err)
	}
	// So does a machine entered twice, even when one entry is disabled: it
	// could be enabled by the next edit.
	writeFile(t, path, "- {id: b, address: 10.0.0.2}\n- {id: c, address: 10.0.0.2, port: 22, disabled: true}\n")
	if got, err := inv.ActiveHosts(context.Background()); err == nil || !strings.Contains(err.Error(), "hosts b and c have the same address 10.0.0.2:22") {
		t.Fatalf("one machine twice: %+v %v", got, err)
	}
	if _, err := (config.FileInventory{Path: filepath.Join(t.TempDir(), "none.csv")}).ActiveHosts(context.Background()); err == nil {
		t.Fatal("a missing file gave no error")
	}
}
