package rollout_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rolloutbot/rolloutbot/rollout"
)

func TestCheckDistinct(t *testing.T) {
	h := func(id, addr string, port int) rollout.Host { return rollout.Host{ID: id, Address: addr, Port: port} }
	for _, tc := range []struct {
		name  string
		hosts []rollout.Host
		want  string // "" for no error
		pair  [2]int // the indexes the error names
	}{
		{"empty", nil, "", [2]int{}},
		{"distinct", []rollout.Host{h("a", "10.0.0.1", 22), h("b", "10.0.0.2", 22), h("c", "10.0.0.1", 2222)}, "", [2]int{}},
		{"same address and port", []rollout.Host{h("web-1", "10.0.0.4", 22), h("web-2", "10.0.0.5", 22), h("web-7", "10.0.0.4", 22)},
			"hosts web-1 and web-7 have the same address 10.0.0.4:22", [2]int{0, 2}},
		{"no port is 22", []rollout.Host{h("a", "10.0.0.4", 0), h("b", "10.0.0.4", 22)}, "hosts a and b have the same address", [2]int{0, 1}},
		{"names in any case", []rollout.Host{h("a", "Web1.Example.COM", 22), h("b", "web1.example.com", 22)}, "hosts a and b", [2]int{0, 1}},
		{"a name's final dot", []rollout.Host{h("a", "web1.example.com.", 22), h("b", "web1.example.com", 22)}, "hosts a and b", [2]int{0, 1}},
		{"IPv6 spellings", []rollout.Host{h("a", "2001:DB8:0:0::1", 22), h("b", "2001:db8::1", 22)}, "hosts a and b", [2]int{0, 1}},
		{"IPv4-mapped IPv6", []rollout.Host{h("a", "10.0.0.4", 22), h("b", "::ffff:10.0.0.4", 22)}, "hosts a and b", [2]int{0, 1}},
		{"bracketed IPv6", []rollout.Host{h("a", "[2001:db8::1]", 22), h("b", "2001:db8::1", 22)}, "hosts a and b", [2]int{0, 1}},
		{"other port", []rollout.Host{h("a", "10.0.0.4", 2222), h("b", "10.0.0.4", 0)}, "", [2]int{}},
		{"same id", []rollout.Host{h("a", "10.0.0.1", 22), h("a", "10.0.0.2", 22)}, "host id a appears twice", [2]int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rollout.CheckDistinct(tc.hosts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var de *rollout.DuplicateError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DuplicateError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if de.Indexes != tc.pair || de.Hosts[0] != tc.hosts[tc.pair[0]] || de.Hosts[1] != tc.hosts[tc.pair[1]] {
				t.Errorf("error names entries %v (%+v), want %v", de.Indexes, de.Hosts, tc.pair)
			}
		})
	}
}

func TestHostValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		host rollout.Host
		want string // "" for valid
	}{
		{"valid", rollout.Host{ID: "a", Address: "10.0.0.1", Port: 22}, ""},
		{"highest port", rollout.Host{ID: "a", Address: "10.0.0.1", Port: 65535}, ""},
		{"port 0", rollout.Host{ID: "a", Address: "10.0.0.1", Port: 0}, "host a: port 0"},
		{"negative port", rollout.Host{ID: "a", Address: "10.0.0.1", Port: -1}, "port -1 is out of range"},
		{"port too high", rollout.Host{ID: "a", Address: "10.0.0.1", Port: 65536}, "port 65536 is out of range"},
		{"no id", rollout.Host{Address: "10.0.0.1", Port: 22}, "host id is empty"},
		{"no address", rollout.Host{ID: "a", Port: 22}, "host a: address is empty"},
		{"address with a space", rollout.Host{ID: "a", Address: "10.0.0.1 x", Port: 22}, "not a host name or IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.host.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
