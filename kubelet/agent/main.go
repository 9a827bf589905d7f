package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/containerd/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/stdio"
)

// Main runs the agent with command-line args (without the program name)
// and returns the exit code.
func Main(args []string) int {
	if len(args) > 0 && args[0] == stdio.Mode {
		return stdio.Main(args[1:]) // the helper of a container with stdin
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return criLog(args) // containerd's shim passes the pairs in any order
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("feather", flag.ContinueOnError)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig with the node's identity (system:node:NAME)")
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "the node's name")
	fs.StringVar(&cfg.InternalIP, "node-ip", "", "the node's InternalIP (default: the address of the default route)")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "port of the kubelet API (logs)")
	fs.StringVar(&cfg.Containerd, "containerd", cfg.Containerd, "containerd's socket")
	fs.StringVar(&cfg.Namespace, "containerd-namespace", cfg.Namespace, "containerd namespace of the pods' containers")
	fs.StringVar(&cfg.LogDir, "log-dir", cfg.LogDir, "directory of the pods' CRI log files")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory of pod volumes and the serving certificate")
	fs.StringVar(&cfg.RunDir, "run-dir", cfg.RunDir, "directory of runtime state (pod network namespaces)")
	fs.StringVar(&cfg.RegistryConfigDir, "registry-config-dir", cfg.RegistryConfigDir, "registry hosts.toml files as containerd's config_path: DIR/HOST/hosts.toml (mirrors, CAs, plain HTTP)")
	fs.StringVar(&cfg.ImageFsDir, "image-fs-dir", cfg.ImageFsDir, "a directory on the file system of images and containers' writable layers (containerd's root): the node's imageFs in its stats")
	fs.DurationVar(&cfg.StatsMaxAge, "stats-max-age", cfg.StatsMaxAge, "how long one gathering of stats answers /stats/summary and /metrics/resource (0: gather for every request); keep it below the scrape interval")
	logMaxSize := fs.String("container-log-max-size", "10Mi", "size at which a container's log file is rotated (a quantity: 10Mi, 500Ki), as kubelet's flag")
	fs.IntVar(&cfg.ContainerLog.MaxFiles, "container-log-max-files", cfg.ContainerLog.MaxFiles, "most log files of a container, the current one included (at least 2), as kubelet's flag")
	unsafeSysctls := fs.String("allowed-unsafe-sysctls", "", "unsafe sysctls (names, or prefixes ending in *) pods may set, comma-separated, as kubelet's flag; the safe ones always may")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "pods synced at once")
	qps := fs.Float64("kube-api-qps", float64(cfg.KubeAPIQPS), "requests per second to the API server, as kubelet's flag (events have as many of their own)")
	fs.IntVar(&cfg.KubeAPIBurst, "kube-api-burst", cfg.KubeAPIBurst, "requests to the API server in a burst beyond --kube-api-qps, as kubelet's flag")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", cfg.CNIConfDir, "CNI network configuration directory: its lexically first *.conflist, *.conf or *.json is used; the default network is written there when it has none")
	cniBin := fs.String("cni-bin-dir", strings.Join(cfg.CNIBinDirs, ","), "directories of CNI plugin binaries, comma-separated")
	podCIDR := fs.String("pod-cidr", strings.Join(cfg.PodCIDRs, ","), "subnets of the default network's pod IPs: one IPv4, optionally one IPv6, comma-separated")
	fs.StringVar(&cfg.CNIBridge, "cni-bridge", cfg.CNIBridge, "host bridge of the default network")
	fs.StringVar(&cfg.CNINetwork, "cni-network", cfg.CNINetwork, "name of the default network")
	clusterDNS := fs.String("cluster-dns", "", "cluster DNS server IPs, comma-separated (kube-dns's Service IP); none: ClusterFirst pods get the host's resolv.conf")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", cfg.ClusterDomain, "the cluster's DNS domain")
	fs.StringVar(&cfg.ResolvConf, "resolv-conf", cfg.ResolvConf, `the host's resolv.conf, the base of dnsPolicy Default; "" for none`)
	fs.StringVar(&cfg.Snapshotter, "snapshotter", cfg.Snapshotter, `containerd snapshotter of unikernel containers: a name; "" for containerd's default; auto: "feather" (Feather's snapshotter, which keeps each VM's disk writes on disk) when containerd has it, else the default`)
	runtimes := fs.String("runtimes", "", "extra HANDLER=RUNTIME pairs, comma-separated (defaults: runc=io.containerd.runc.v2,osv=io.containerd.osv.v1)")
	plain := fs.String("plain-http", "", "registry hosts pulled over plain HTTP, comma-separated (localhost always is)")
	taints := fs.String("taints", "virtual-kubelet.io/provider=feather:NoSchedule", `node taints KEY[=VALUE]:EFFECT, comma-separated; "" for none`)
	labels := fs.String("labels", "", "extra node labels KEY=VALUE, comma-separated")
	level := fs.String("log-level", "info", "log level")
	fs.BoolVar(&cfg.EnableProfiling, "profiling", cfg.EnableProfiling, "serve Go's CPU, heap and goroutine profiles at /debug/pprof/ on the kubelet API (nodes/proxy), as kubelet's enableProfilingHandler")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.KubeAPIQPS = float32(*qps)
	var err error
	if cfg.Taints, err = parseTaints(*taints); err == nil {
		cfg.Labels, err = parsePairs(*labels)
	}
	if err == nil {
		cfg.ContainerLog.MaxSize, err = parseSize(*logMaxSize)
	}
	if err == nil {
		err = cfg.ContainerLog.Validate()
	}
	if err == nil {
		var extra map[string]string
		if extra, err = parsePairs(*runtimes); err == nil {
			for k, v := range extra {
				cfg.Runtimes[k] = v
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "feather:", err)
		return 2
	}
	if *plain != "" {
		cfg.PlainHTTP = strings.Split(*plain, ",")
	}
	cfg.CNIBinDirs, cfg.PodCIDRs, cfg.ClusterDNS = splitList(*cniBin), splitList(*podCIDR), splitList(*clusterDNS)
	cfg.AllowedUnsafeSysctls = splitList(*unsafeSysctls)
	for _, ip := range cfg.ClusterDNS {
		if net.ParseIP(ip) == nil {
			fmt.Fprintf(os.Stderr, "feather: --cluster-dns: %q is not an IP address\n", ip)
			return 2
		}
	}
	_ = log.SetFormat(log.TextFormat) // nanosecond timestamps, as containerd logs
	if err := log.SetLevel(*level); err != nil {
		fmt.Fprintln(os.Stderr, "feather:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "feather:", err)
		return 1
	}
	return 0
}

// parseSize parses a size flag as kubelet does: a resource quantity.
func parseSize(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--container-log-max-size %q: %w", s, err)
	}
	return q.Value(), nil
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func parsePairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

func parseTaints(s string) ([]corev1.Taint, error) {
	out := []corev1.Taint{} // not nil: "" means no taints, not the default ones
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		kv, effect, ok := strings.Cut(t, ":")
		e := corev1.TaintEffect(effect)
		if !ok || (e != corev1.TaintEffectNoSchedule && e != corev1.TaintEffectPreferNoSchedule && e != corev1.TaintEffectNoExecute) {
			return nil, fmt.Errorf("taint %q: want KEY[=VALUE]:NoSchedule|PreferNoSchedule|NoExecute", t)
		}
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, corev1.Taint{Key: k, Value: v, Effect: e})
	}
	return out, nil
}

// criLog is the containerd logging binary (binary:// log URI, arguments
// "cri-log PATH [max-size BYTES max-files N]", the pairs in any order) built into
// the agent, used when feather-cri-log is not installed next to it: see
// [logs.BinaryLogger].
func criLog(args []string) int {
	path, rot, err := logs.ParseLoggerArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "feather cri-log:", err)
		fmt.Fprintln(os.Stderr, "usage: feather cri-log PATH [max-size BYTES max-files N]")
		return 2
	}
	if err := logs.BinaryLogger(path, rot); err != nil {
		fmt.Fprintln(os.Stderr, "feather cri-log:", err)
		return 1
	}
	return 0
}
