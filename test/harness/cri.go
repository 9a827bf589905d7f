package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// CRIOptions enable containerd's CRI plugin, as on a kubelet node.
type CRIOptions struct {
	// Runtimes maps runtime handlers (what a RuntimeClass's handler names)
	// to containerd runtime types, e.g. "osv": "io.containerd.osv.v1". The
	// default handler "runc" (io.containerd.runc.v2) is always there.
	Runtimes map[string]string
	// Network is the pod network, from Env.CNINetwork.
	Network *CNINetwork
	// SandboxImage is the pod sandbox (pause) image CRI uses, pinned.
	SandboxImage string
	// RegistryConfigDir holds a hosts.toml per registry host, as
	// containerd's registry config_path reads them (see PlainHTTPHosts).
	RegistryConfigDir string
}

var criConfig = template.Must(template.New("cri").Parse(`
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.SandboxImage}}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{.RegistryConfigDir}}"

[plugins.'io.containerd.cri.v1.runtime']
  # The test machine denies CAP_SYS_RESOURCE: no OOM score below
  # containerd's own (a sandbox asks for -998).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
{{- range $name, $type := .Runtimes}}
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{{$name}}]
      runtime_type = "{{$type}}"
{{- if and $.VMSnapshotter (eq $type "io.containerd.osv.v1")}}
      snapshotter = "{{$.VMSnapshotter}}"
{{- end}}
{{- end}}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.BinDir}}"]
    conf_dir = "{{.ConfDir}}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`))

// config renders the CRI plugin's tables, "" when o is nil. Runtimes of
// type io.containerd.osv.v1 use snapshotter vmSnapshotter, unless "".
func (o *CRIOptions) config(dir, vmSnapshotter string) (string, error) {
	if o == nil {
		return "", nil
	}
	if o.Network == nil {
		return "", fmt.Errorf("CRI needs a pod network (Env.CNINetwork)")
	}
	runtimes := map[string]string{"runc": "io.containerd.runc.v2"}
	maps.Copy(runtimes, o.Runtimes)
	var b strings.Builder
	err := criConfig.Execute(&b, struct {
		SandboxImage, RegistryConfigDir, BinDir, ConfDir, VMSnapshotter string
		Runtimes                                                        map[string]string
	}{o.SandboxImage, o.RegistryConfigDir, CNIBinDir, o.Network.ConfDir, vmSnapshotter, runtimes})
	return b.String(), err
}

// Socket is the CRI endpoint of the daemon: its gRPC socket, as a kubelet's
// containerRuntimeEndpoint or crictl's --runtime-endpoint names it.
func (c *Containerd) Socket() string { return "unix://" + c.Address }

// Crictl runs crictl (built by `make deps`) against this daemon's CRI
// plugin and returns its standard output; the error carries its standard
// error.
func (c *Containerd) Crictl(ctx context.Context, args ...string) (string, error) {
	bin, err := Bin("crictl")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--runtime-endpoint", c.Socket(), "--image-endpoint", c.Socket(),
		"--timeout", "30s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// PlainHTTPHosts writes into dir a hosts.toml for each registry host
// (host:port) that says to pull from it over plain HTTP, as containerd's
// registry config_path reads them, and returns dir.
func PlainHTTPHosts(dir string, hosts ...string) (string, error) {
	for _, h := range hosts {
		d := filepath.Join(dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
		toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+h, "http://"+h)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// CNIBinDir is where Debian's containernetworking-plugins installs the
// plugins.
const CNIBinDir = "/usr/lib/cni"

// CNINetwork is a pod network of its own for one Env: a bridge with a
// unique name and a /24 that no interface of the host uses, its conflist
// in ConfDir, host-local's leases under the Env's directory. Env.Close
// deletes the bridge.
type CNINetwork struct {
	// ConfDir holds the conflist, for containerd's CRI conf_dir.
	ConfDir string
	// Bridge is the host bridge; Subnet the pods' subnet, whose first
	// address, Gateway, the bridge holds: the pods' gateway and an address
	// of this host a kubelet can take as its node IP (a node IP cannot be
	// a loopback address).
	Bridge  string
	Subnet  *net.IPNet
	Gateway net.IP
}

// CNINetwork makes the bridge with its gateway address, writes a bridge +
// host-local conflist (no masquerading and no port mapping, so no iptables
// rule is made) and returns the network. It fails t if the plugins are
// missing (skips without FEATHER_E2E=required).
func (e *Env) CNINetwork() *CNINetwork {
	e.t.Helper()
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		_, err := os.Stat(filepath.Join(CNIBinDir, p))
		Prerequisite(e.t, err == nil, "CNI plugin "+p+" not found in "+CNIBinDir+": run `make deps` (Debian package containernetworking-plugins)")
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	n := &CNINetwork{ConfDir: filepath.Join(e.Dir, "cni", "net.d"), Bridge: "fcri" + hex.EncodeToString(suffix)}
	subnet, err := freeSubnet()
	if err != nil {
		e.t.Fatalf("harness: cni: %v", err)
	}
	n.Subnet = subnet
	n.Gateway = slices.Clone(subnet.IP.To4())
	n.Gateway[3] = 1
	e.onClose(n.remove)
	ones, _ := subnet.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", n.Gateway.String() + "/" + strconv.Itoa(ones), "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			e.t.Fatalf("harness: cni: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Bridge,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": subnet.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(e.Dir, "cni", "ipam"),
			},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		e.t.Fatalf("harness: cni: %v", err)
	}
	if err := os.MkdirAll(n.ConfDir, 0o755); err != nil {
		e.t.Fatalf("harness: cni: %v", err)
	}
	if err := os.WriteFile(filepath.Join(n.ConfDir, "10-"+n.Bridge+".conflist"), b, 0o644); err != nil {
		e.t.Fatalf("harness: cni: %v", err)
	}
	return n
}

// remove deletes the network namespaces CRI left with an address in the
// subnet (each a leak: CRI removes a pod's when it stops the pod's
// sandbox), then the bridge (the bridge plugin never deletes it).
func (n *CNINetwork) remove() error {
	var errs []error
	nss, _ := filepath.Glob("/var/run/netns/cni-*")
	for _, ns := range nss {
		name := filepath.Base(ns)
		out, err := exec.Command("ip", "-n", name, "-4", "-o", "addr", "show").Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			if ip, _, err := net.ParseCIDR(f); err == nil && n.Subnet.Contains(ip) {
				_ = exec.Command("ip", "netns", "delete", name).Run()
				errs = append(errs, fmt.Errorf("leaked network namespace %s (pod IP %s), deleted", ns, ip))
				break
			}
		}
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %v: %s", n.Bridge, err, out))
		}
	}
	return errors.Join(errs...)
}

// freeSubnet picks a 10.89.X.0/24 that no address of the host falls in,
// so that concurrent Envs (and other networks here) do not collide.
func freeSubnet() (*net.IPNet, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 1)
	for _, x := range slices.Collect(func(yield func(int) bool) {
		_, _ = rand.Read(b)
		for i := range 254 {
			if !yield((int(b[0])+i)%254 + 1) {
				return
			}
		}
	}) {
		_, subnet, _ := net.ParseCIDR("10.89." + strconv.Itoa(x) + ".0/24")
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
				used = true
				break
			}
		}
		if !used {
			return subnet, nil
		}
	}
	return nil, fmt.Errorf("no free 10.89.X.0/24 subnet")
}
