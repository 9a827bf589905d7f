package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultNetwork describes the network configuration the agent installs when
// the configuration directory has none: a host bridge with one veth per pod,
// host-local addresses from the pod CIDRs, hostPorts through portmap, and
// loopback.
type DefaultNetwork struct {
	// Name is the network's name (default "feather"); it names host-local's
	// store and the iptables rules of bridge and portmap.
	Name string
	// Bridge is the host bridge (default "feather0"), at most 15 bytes.
	Bridge string
	// Subnets are the pod CIDRs: one IPv4, and optionally one IPv6 for dual
	// stack. The bridge holds the first address of each.
	Subnets []string
	// DataDir is host-local's store of reserved addresses; empty: the
	// plugin's default, /var/lib/cni/networks.
	DataDir string
	// MTU of the bridge and the veths; 0: the plugin's default.
	MTU int
}

// DefaultFile is the name the default network configuration is written as.
const DefaultFile = "10-feather.conflist"

// Conflist returns the network configuration list of n (CNI spec 1.0.0, which
// Debian bookworm's plugins speak), or an error saying what is invalid.
func (n DefaultNetwork) Conflist() ([]byte, error) {
	if n.Name == "" {
		n.Name = "feather"
	}
	if n.Bridge == "" {
		n.Bridge = "feather0"
	}
	if len(n.Bridge) > 15 || strings.ContainsAny(n.Bridge, "/ :") {
		return nil, fmt.Errorf("bridge name %q: want at most 15 bytes, no '/', ':' or space", n.Bridge)
	}
	if len(n.Subnets) == 0 {
		return nil, errors.New("no pod CIDR: give at least one subnet")
	}
	var ranges [][]map[string]string
	var routes []map[string]string
	families := map[bool]bool{}
	for _, s := range n.Subnets {
		ip, ipn, err := net.ParseCIDR(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w", s, err)
		}
		if !ip.Equal(ipn.IP) {
			return nil, fmt.Errorf("pod CIDR %q: has host bits set (want %s)", s, ipn)
		}
		v4 := ip.To4() != nil
		if families[v4] {
			return nil, fmt.Errorf("pod CIDRs %s: at most one IPv4 and one IPv6 subnet", strings.Join(n.Subnets, ","))
		}
		families[v4] = true
		ones, bits := ipn.Mask.Size()
		if bits-ones < 2 {
			return nil, fmt.Errorf("pod CIDR %q: too small for a gateway and a pod", s)
		}
		ranges = append(ranges, []map[string]string{{"subnet": ipn.String()}})
		dst := "0.0.0.0/0"
		if !v4 {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	ipam := map[string]any{"type": "host-local", "ranges": ranges, "routes": routes}
	if n.DataDir != "" {
		ipam["dataDir"] = n.DataDir
	}
	bridge := map[string]any{
		"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true, "ipam": ipam,
	}
	if n.MTU > 0 {
		bridge["mtu"] = n.MTU
	}
	list := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []any{
			bridge,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
			map[string]any{"type": "loopback"},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// confExtensions are the files a configuration directory is read for, as
// kubelet and containerd read it.
var confExtensions = []string{".conflist", ".conf", ".json"}

// ConfFiles lists the network configuration files of dir in the order they
// are chosen: lexically; the first is the one used. A missing dir has none.
func ConfFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CNI configuration directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() || !slices.Contains(confExtensions, filepath.Ext(e.Name())) {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	slices.Sort(out)
	return out, nil
}

// InstallDefault writes n as DefaultFile into dir unless dir already holds a
// network configuration, which is then used as it is. It reports whether it
// wrote the file.
func InstallDefault(dir string, n DefaultNetwork) (bool, error) {
	files, err := ConfFiles(dir)
	if err != nil || len(files) > 0 {
		return false, err
	}
	b, err := n.Conflist()
	if err != nil {
		return false, fmt.Errorf("default network: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("CNI configuration directory: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, DefaultFile), b, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// writeFileAtomic writes b to path through a temporary file and a rename, so
// that a reader never sees half of it.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
