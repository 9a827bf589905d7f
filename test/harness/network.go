package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// AgentNetwork is the pod network of one harness agent: the agent writes
// its default CNI configuration (bridge, host-local, portmap, loopback) into
// ConfDir, with a bridge, subnet and network name of its own, so that agents
// of concurrent tests on one host never share one.
type AgentNetwork struct {
	// ConfDir is the agent's --cni-conf-dir: a test may drop its own
	// configuration there.
	ConfDir string
	// Name, Bridge and Subnet are the default network's name, host bridge
	// and pod CIDR.
	Name, Bridge string
	Subnet       *net.IPNet
}

// newAgentNetwork picks a random name, bridge and /24 in 10.200.0.0–
// 10.249.255.0 that no host interface or route uses.
func newAgentNetwork(confDir string) (*AgentNetwork, error) {
	for range 20 {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		suffix := hex.EncodeToString(b)
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]))
		if used, err := subnetUsed(subnet); err != nil {
			return nil, err
		} else if used {
			continue
		}
		return &AgentNetwork{ConfDir: confDir, Name: "feather-e2e-" + suffix, Bridge: "fe2e" + suffix, Subnet: subnet}, nil
	}
	return nil, fmt.Errorf("no free /24 in 10.200.0.0/13 for the pod network")
}

// subnetUsed reports whether a route of the host overlaps s.
func subnetUsed(s *net.IPNet) (bool, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones > 0 && (r.Dst.Contains(s.IP) || s.Contains(r.Dst.IP)) {
			return true, nil
		}
	}
	return false, nil
}

// args are the agent's flags for n.
func (n *AgentNetwork) args() []string {
	return []string{"--cni-conf-dir", n.ConfDir, "--cni-bridge", n.Bridge, "--cni-network", n.Name, "--pod-cidr", n.Subnet.String()}
}

// Leftovers lists what the network's plugins hold on the host for pods:
// iptables nat rules that name the network (the bridge plugin's
// masquerading, portmap's DNAT) and veths on its bridge. Once every pod is
// deleted there should be none.
func (n *AgentNetwork) Leftovers() ([]string, error) {
	rules, err := n.natRules()
	if err != nil {
		return nil, err
	}
	out := rules
	if br, err := netlink.LinkByName(n.Bridge); err == nil {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				out = append(out, "veth "+l.Attrs().Name+" on bridge "+n.Bridge)
			}
		}
	}
	return out, nil
}

// natRules returns the iptables-save lines of the nat table that name the
// network, or belong to a chain that one of those jumps to.
func (n *AgentNetwork) natRules() ([]string, error) {
	if _, err := exec.LookPath("iptables-save"); err != nil {
		return nil, nil
	}
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, `\"`+n.Name+`\"`) {
			rules = append(rules, l)
		}
	}
	return rules, nil
}

// remove deletes what the network left on the host: its nat rules and the
// per-pod chains they jump to (all of which DEL removes for a pod that was
// deleted), and its bridge. The chains CNI-HOSTPORT-* that portmap shares
// between all networks of the host stay, as they would with containerd.
func (n *AgentNetwork) remove() error {
	rules, err := n.natRules()
	if err != nil {
		return err
	}
	var chains []string
	for _, r := range rules {
		f := strings.Fields(r)
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "CNI-") && !strings.HasPrefix(f[i+1], "CNI-HOSTPORT-") {
			chains = append(chains, f[i+1])
		}
		args := append([]string{"-w", "-t", "nat", "-D"}, splitRule(strings.TrimPrefix(r, "-A "))...)
		_ = exec.Command("iptables", args...).Run()
	}
	for _, c := range chains {
		_ = exec.Command("iptables", "-w", "-t", "nat", "-F", c).Run()
		_ = exec.Command("iptables", "-w", "-t", "nat", "-X", c).Run()
	}
	if l, err := netlink.LinkByName(n.Bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("remove bridge %s: %w", n.Bridge, err)
		}
	}
	return nil
}

// splitRule splits an iptables-save rule into arguments, honouring the
// double quotes (with \" inside) of comments.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			quoted, have = !quoted, true
		case c == ' ' && !quoted:
			if have || cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteByte(c)
		}
	}
	if have || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
