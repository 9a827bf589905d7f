package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/cni"
	"github.com/feather-edge/feather/kubelet/dns"
	"github.com/feather-edge/feather/kubelet/pods"
)

// podNetwork is the pods provider's Network: the cni package's Manager,
// fed with Kubernetes pods.
type podNetwork struct{ m *cni.Manager }

var _ pods.Network = podNetwork{}

// newNetwork writes the default network into the CNI configuration
// directory unless it holds one, and returns the pod network. A broken or
// missing configuration is no error here: the node reports it
// (NetworkUnavailable) and pods wait until it is fixed.
func newNetwork(ctx context.Context, cfg Config, nodeIP string) (podNetwork, error) {
	m := cni.New(cni.Config{ConfDir: cfg.CNIConfDir, BinDirs: cfg.CNIBinDirs, StateDir: filepath.Join(cfg.StateDir, "cni")})
	def := cni.DefaultNetwork{Name: cfg.CNINetwork, Bridge: cfg.CNIBridge, Subnets: cfg.PodCIDRs, DataDir: m.NetworksDir(), MTU: mtuOf(nodeIP)}
	wrote, err := cni.InstallDefault(cfg.CNIConfDir, def)
	if err != nil {
		return podNetwork{}, fmt.Errorf("pod network: %w", err)
	}
	if wrote {
		log.G(ctx).WithField("dir", cfg.CNIConfDir).WithField("subnets", strings.Join(cfg.PodCIDRs, ",")).
			WithField("bridge", cfg.CNIBridge).Info("wrote the default CNI network configuration")
	}
	if err := m.Ready(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("pod network not ready: pods wait until it is")
	}
	return podNetwork{m: m}, nil
}

func (n podNetwork) Setup(ctx context.Context, pod *corev1.Pod, netns string) ([]string, error) {
	res, err := n.m.Setup(ctx, cni.Pod{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name, NetNS: netns,
		PortMappings: portMappings(pod)})
	if err != nil {
		return nil, err
	}
	ips := make([]string, len(res.IPs))
	for i, ip := range res.IPs {
		ips[i] = ip.String()
	}
	return ips, nil
}

func (n podNetwork) Teardown(ctx context.Context, uid types.UID, netns string) error {
	return n.m.Teardown(ctx, cni.Pod{UID: string(uid), NetNS: netns})
}

func (n podNetwork) Collect(ctx context.Context, keep map[types.UID]bool) error {
	live := make(map[string]bool, len(keep))
	for uid := range keep {
		live[string(uid)] = true
	}
	return n.m.Collect(ctx, live)
}

// portMappings are the hostPorts of pod's containers, as kubelet gives them
// to CNI's portMappings capability.
func portMappings(pod *corev1.Pod) []cni.PortMapping {
	var out []cni.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, cni.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return out
}

// mtuOf returns the MTU of the interface holding ip, or 0 for the plugin's
// default when that is loopback or unknown.
func mtuOf(ip string) int {
	want := net.ParseIP(ip)
	ifs, err := net.Interfaces()
	if err != nil || want == nil || want.IsLoopback() {
		return 0
	}
	for _, i := range ifs {
		addrs, err := i.Addrs()
		if err != nil || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return i.MTU
			}
		}
	}
	return 0
}

// dnsConfig is the pods' DNS configuration from the agent's flags.
func dnsConfig(cfg Config) dns.Config {
	host := cfg.ResolvConf
	if host == "" {
		host = "-"
	}
	return dns.Config{ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, HostResolvConf: host}
}
