package config

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// ReadHostsFile reads an inventory file: YAML (.yaml, .yml) or CSV (.csv);
// other extensions are refused rather than guessed at. A byte-order mark,
// as spreadsheets write one, is skipped. Any bad entry fails the whole file
// with its line, so an import is all or nothing.
func ReadHostsFile(path string) ([]rollout.Host, error) {
	var parse func([]byte) ([]rollout.Host, error)
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".yaml", ".yml":
		parse = ParseHostsYAML
	case ".csv":
		parse = ParseHostsCSV
	default:
		return nil, fmt.Errorf("%s: the extension %q is not .csv, .yaml or .yml: inventory files are CSV or YAML", path, ext)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	hosts, err := parse(bytes.TrimPrefix(data, []byte("\ufeff")))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hosts, nil
}

// SplitAddress takes a port written into an address (10.0.0.9:2222,
// [2001:db8::1]:2222) out of it, and removes the brackets of [v6]. port is
// the port given beside the address; given says whether one was. The two
// must agree. With no port anywhere the port is 22.
func SplitAddress(address string, port int, given bool) (string, int, error) {
	a := strings.TrimSpace(address)
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		a = a[1 : len(a)-1]
	} else if host, p, err := net.SplitHostPort(a); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("address %q: %q is not a port number", address, p)
		}
		if given && port != n {
			return "", 0, fmt.Errorf("address %q has port %d, and port %d is given beside it: keep one", address, n, port)
		}
		return host, n, nil
	}
	if !given {
		port = 22
	}
	return a, port, nil
}

type yamlHost struct {
	ID       string `yaml:"id"`
	Address  string `yaml:"address"`
	Port     *int   `yaml:"port"` // nil when left out, which means 22; a written 0 is refused
	User     string `yaml:"user"`
	Label    string `yaml:"label"`
	Disabled bool   `yaml:"disabled"`
}

func (yh yamlHost) host() (rollout.Host, error) {
	h := rollout.Host{ID: yh.ID, User: yh.User, Label: yh.Label, Disabled: yh.Disabled}
	port := 0
	if yh.Port != nil {
		port = *yh.Port
	}
	var err error
	h.Address, h.Port, err = SplitAddress(yh.Address, port, yh.Port != nil)
	if err != nil {
		return h, fmt.Errorf("host %s: %w", yh.ID, err)
	}
	return h, nil
}

// ParseHostsYAML reads a list of hosts, either at the top level or under "hosts:".
func ParseHostsYAML(data []byte) ([]rollout.Host, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	list := doc.Content[0]
	if list.Kind == yaml.MappingNode {
		list = nil
		for i := 0; i+1 < len(doc.Content[0].Content); i += 2 {
			if k := doc.Content[0].Content[i]; k.Value == "hosts" {
				list = doc.Content[0].Content[i+1]
			} else {
				return nil, fmt.Errorf("line %d: unknown key %q (want a list of hosts under hosts:)", k.Line, k.Value)
			}
		}
		if list == nil {
			return nil, nil
		}
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: want a list of hosts", list.Line)
	}
	c := newCollector()
	for _, item := range list.Content {
		// Decode the node itself, not a re-marshalled copy: its errors then
		// name the line in the file. Node.Decode has no KnownFields, so
		// unknown keys are looked for here.
		if item.Kind == yaml.MappingNode {
			for i := 0; i < len(item.Content); i += 2 {
				if k := item.Content[i]; !yamlHostKeys[k.Value] {
					return nil, fmt.Errorf("line %d: unknown key %q (want id, address, port, user, label, disabled)", k.Line, k.Value)
				}
			}
		}
		var yh yamlHost
		if err := item.Decode(&yh); err != nil {
			return nil, err
		}
		h, err := yh.host()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", item.Line, err)
		}
		if err := c.add(item.Line, h); err != nil {
			return nil, err
		}
	}
	return c.done()
}

var yamlHostKeys = map[string]bool{"id": true, "address": true, "port": true, "user": true, "label": true, "disabled": true}

// ParseHostsCSV reads hosts with a header naming the columns: id and address
// are required; port, user, label and disabled may follow in any order.
func ParseHostsCSV(data []byte) ([]rollout.Host, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		switch name {
		case "id", "address", "port", "user", "label", "disabled":
			col[name] = i
		default:
			return nil, fmt.Errorf("line 1: unknown column %q (want id, address, port, user, label, disabled)", h)
		}
	}
	if _, ok := col["id"]; !ok {
		return nil, errors.New("line 1: the header has no id column")
	}
	if _, ok := col["address"]; !ok {
		return nil, errors.New("line 1: the header has no address column")
	}
	c := newCollector()
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := r.FieldPos(0)
		if err != nil {
			return nil, err
		}
		if len(rec) != len(header) {
			return nil, fmt.Errorf("line %d: %d fields, the header has %d", line, len(rec), len(header))
		}
		get := func(name string) string {
			if i, ok := col[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		h := rollout.Host{ID: get("id"), User: get("user"), Label: get("label")}
		port := 0
		if p := get("port"); p != "" {
			if port, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("line %d: port %q is not a number", line, p)
			}
		}
		if h.Address, h.Port, err = SplitAddress(get("address"), port, get("port") != ""); err != nil {
			return nil, fmt.Errorf("line %d: host %s: %w", line, h.ID, err)
		}
		if d := get("disabled"); d != "" {
			if h.Disabled, err = strconv.ParseBool(d); err != nil {
				return nil, fmt.Errorf("line %d: disabled %q is not true or false", line, d)
			}
		}
		if err := c.add(line, h); err != nil {
			return nil, err
		}
	}
	return c.done()
}

// collector validates hosts as they are read and refuses two entries for
// one host, naming the lines. The readers set a port left out to 22 before
// add, so an explicit 0 fails validation.
type collector struct {
	hosts   []rollout.Host
	lines   []int          // the line of each host
	idLines map[string]int // the line of each id
}

func newCollector() *collector { return &collector{idLines: map[string]int{}} }

func (c *collector) add(line int, h rollout.Host) error {
	if err := h.Validate(); err != nil {
		return fmt.Errorf("line %d: %w", line, err)
	}
	if first, dup := c.idLines[h.ID]; dup {
		return fmt.Errorf("line %d: host %s is already on line %d", line, h.ID, first)
	}
	c.idLines[h.ID] = line
	c.hosts = append(c.hosts, h)
	c.lines = append(c.lines, line)
	return nil
}

// done returns the hosts, or the first two that are one machine.
func (c *collector) done() ([]rollout.Host, error) {
	var de *rollout.DuplicateError
	if err := rollout.CheckDistinct(c.hosts); errors.As(err, &de) {
		return nil, fmt.Errorf("line %d: %w (%s is on line %d)", c.lines[de.Indexes[1]], err, de.Hosts[0].ID, c.lines[de.Indexes[0]])
	} else if err != nil {
		return nil, err
	}
	return c.hosts, nil
}

// FileInventory is an inventory read from a file at each rollout start.
type FileInventory struct{ Path string }

var _ rollout.Inventory = FileInventory{}

// ActiveHosts reads the file and returns its enabled hosts.
func (f FileInventory) ActiveHosts(context.Context) ([]rollout.Host, error) {
	hosts, err := ReadHostsFile(f.Path)
	if err != nil {
		return nil, err
	}
	out := hosts[:0]
	for _, h := range hosts {
		if !h.Disabled {
			out = append(out, h)
		}
	}
	return out, nil
}

// WriteHostsYAML writes hosts in the format ParseHostsYAML reads.
func WriteHostsYAML(w io.Writer, hosts []rollout.Host) error {
	list := make([]yamlHost, len(hosts))
	for i, h := range hosts {
		port := h.SSHPort()
		list[i] = yamlHost{ID: h.ID, Address: h.Address, Port: &port, User: h.User, Label: h.Label, Disabled: h.Disabled}
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	return enc.Encode(map[string]any{"hosts": list})
}
