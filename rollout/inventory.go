package rollout

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DuplicateError says two entries of a host list are one host: the same id,
// or the same address and port. Two entries for one machine would have it
// updated twice at once, as two hosts.
type DuplicateError struct {
	Hosts   [2]Host // the two entries, in list order
	Indexes [2]int  // their positions in the list
	SameID  bool    // the same id; otherwise the same address and port
}

func (e *DuplicateError) Error() string {
	if e.SameID {
		return fmt.Sprintf("host id %s appears twice", e.Hosts[0].ID)
	}
	return fmt.Sprintf("hosts %s and %s have the same address %s", e.Hosts[0].ID, e.Hosts[1].ID, e.Hosts[0].Addr())
}

// AmbiguousHostError says a name given for one host is the address of
// several: the hosts' ids, in rollout order (at most a few).
type AmbiguousHostError struct {
	Name string
	IDs  []string
	More bool // more hosts have the address than IDs lists
}

func (e *AmbiguousHostError) Error() string {
	more := ""
	if e.More {
		more = ", …"
	}
	return fmt.Sprintf("%s is the address of several hosts (%s%s): name one by its id or as ADDRESS:PORT",
		e.Name, strings.Join(e.IDs, ", "), more)
}

// CheckDistinct returns a *DuplicateError for the first entry of hosts that
// repeats an earlier one's id or machine (see MachineKey), or nil.
func CheckDistinct(hosts []Host) error {
	ids := make(map[string]int, len(hosts))
	machines := make(map[string]int, len(hosts))
	for i, h := range hosts {
		if j, dup := ids[h.ID]; dup {
			return &DuplicateError{Hosts: [2]Host{hosts[j], h}, Indexes: [2]int{j, i}, SameID: true}
		}
		ids[h.ID] = i
		key := MachineKey(h)
		if j, dup := machines[key]; dup {
			return &DuplicateError{Hosts: [2]Host{hosts[j], h}, Indexes: [2]int{j, i}}
		}
		machines[key] = i
	}
	return nil
}

// MachineKey is host:port the way an operator compares two entries: a host
// name in any case and with or without its final dot, an IP address in any
// of its spellings (an IPv4-mapped IPv6 address as the IPv4 one), and no
// port as 22. Names are not resolved: two names for one machine are not
// found.
func MachineKey(h Host) string {
	a := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h.Address)), ".")
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if ip, err := netip.ParseAddr(a); err == nil {
		a = ip.Unmap().String()
	}
	return net.JoinHostPort(a, strconv.Itoa(h.SSHPort()))
}
