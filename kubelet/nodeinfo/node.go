package nodeinfo

import (
	"fmt"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// BackendsLabel lists the node's backends, sorted and joined by ".", e.g. "container.osv".
	BackendsLabel = "feather.dev/backends"
	// BackendLabelPrefix + name is set to "true" for each backend, e.g. feather.dev/backend.osv=true, so a
	// RuntimeClass's scheduling.nodeSelector (or a pod's) can ask for one backend.
	BackendLabelPrefix = "feather.dev/backend."
	// DefaultKubeletPort is the kubelet API port a node advertises unless Config.KubeletPort says otherwise.
	DefaultKubeletPort = 10250
	// DefaultKubeletVersion is the kubelet version a node reports unless Config.KubeletVersion says otherwise:
	// the Kubernetes API version Feather is built against, marked as Feather's.
	DefaultKubeletVersion = "v1.37.2-feather"
)

// DefaultTaints are the taints a node registers with when Config.Taints is nil: only pods that tolerate
// virtual-kubelet.io/provider=feather are scheduled on it.
func DefaultTaints() []corev1.Taint {
	return []corev1.Taint{{Key: "virtual-kubelet.io/provider", Value: "feather", Effect: corev1.TaintEffectNoSchedule}}
}

// Config is what the agent knows of its node before measuring the host.
type Config struct {
	// Name is the node's name (a DNS subdomain); required. The agent's identity is system:node:<Name>.
	Name string
	// Hostname is the kubernetes.io/hostname label and the Hostname address; "" means Name. (Not the machine's
	// host name: several agents may share a machine, and the label must tell nodes apart.)
	Hostname string
	// Labels are added to the node's labels and win over the defaults. Build refuses labels that the
	// NodeRestriction admission plugin forbids a node to set (kubernetes.io/role, node-role.kubernetes.io/*, …).
	Labels map[string]string
	// Taints are the node's taints at registration: nil means DefaultTaints, an empty non-nil slice none. A node
	// cannot change its own taints later (NodeRestriction).
	Taints []corev1.Taint
	// Backends name the node's runtimes, e.g. "container" (runc) and "osv": lower-case letters, digits and "-".
	Backends []string
	// KubeletPort is the port of the agent's kubelet API; 0 means DefaultKubeletPort.
	KubeletPort int32
	// ContainerdVersion is containerd's version as its Version API reports it, e.g. "v2.4.2"; reported as
	// nodeInfo.containerRuntimeVersion "containerd://v2.4.2".
	ContainerdVersion string
	// KubeletVersion is reported as nodeInfo.kubeletVersion; "" means DefaultKubeletVersion.
	KubeletVersion string
	// InternalIP is the node's InternalIP address; "" means the address of the default-route interface
	// (Monitor.InternalIP), looked up again at each Update.
	InternalIP string
}

// Build returns the node to register: name, labels, taints, and a status measured by m (Update) with the agent's
// health h. It fails, with an errdefs.ErrInvalidArgument error, on a config that the API server or
// NodeRestriction would refuse.
func Build(cfg Config, m *Monitor, h Health) (*corev1.Node, error) {
	return build(cfg, m, h, time.Now())
}

func build(cfg Config, m *Monitor, h Health, now time.Time) (*corev1.Node, error) {
	if err := validateConfig(cfg); err != nil {
		return nil, err
	}
	labels, err := nodeLabels(cfg)
	if err != nil {
		return nil, err
	}
	taints := DefaultTaints()
	if cfg.Taints != nil {
		taints = slices.Clone(cfg.Taints)
	}
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
	}
	if err := update(n, cfg, m, h, now); err != nil {
		return nil, err
	}
	return n, nil
}

// Update measures the node again and rewrites n's status: capacity, allocatable, conditions (keeping the
// transition times of unchanged ones), addresses, nodeInfo and daemon endpoints. On error n is unchanged; an
// address that cannot be found again keeps its old value.
func Update(n *corev1.Node, cfg Config, m *Monitor, h Health) error {
	return update(n, cfg, m, h, time.Now())
}

func update(n *corev1.Node, cfg Config, m *Monitor, h Health, now time.Time) error {
	capacity, err := m.Capacity()
	if err != nil {
		return fmt.Errorf("measure node %s: %w", cfg.Name, err)
	}
	addrs, err := addresses(n, cfg, m)
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	port := cfg.KubeletPort
	if port == 0 {
		port = DefaultKubeletPort
	}
	info := m.systemInfo()
	info.KubeletVersion = cfg.KubeletVersion
	if info.KubeletVersion == "" {
		info.KubeletVersion = DefaultKubeletVersion
	}
	if cfg.ContainerdVersion != "" {
		info.ContainerRuntimeVersion = "containerd://" + cfg.ContainerdVersion
	}

	n.Status.Capacity = capacity.List()
	n.Status.Allocatable = m.Allocatable(capacity).List()
	n.Status.Conditions = m.Conditions(n.Status.Conditions, h, now)
	n.Status.Addresses = addrs
	n.Status.NodeInfo = info
	n.Status.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}}
	return nil
}

// addresses are the node's InternalIP and Hostname addresses. An InternalIP that cannot be looked up again
// keeps n's current one.
func addresses(n *corev1.Node, cfg Config, m *Monitor) ([]corev1.NodeAddress, error) {
	ip := cfg.InternalIP
	if ip == "" {
		var err error
		if ip, err = m.InternalIP(); err != nil {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					ip = a.Address
				}
			}
			if ip == "" {
				return nil, err
			}
		}
	}
	return []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: ip},
		{Type: corev1.NodeHostName, Address: hostname(cfg)},
	}, nil
}

func hostname(cfg Config) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	return cfg.Name
}

// nodeLabels are the node's labels: kubernetes.io/os, kubernetes.io/arch, kubernetes.io/hostname, the backend
// labels, then cfg.Labels.
func nodeLabels(cfg Config) (map[string]string, error) {
	labels := map[string]string{
		corev1.LabelOSStable:   runtime.GOOS,
		corev1.LabelArchStable: runtime.GOARCH,
		corev1.LabelHostname:   strings.ToLower(hostname(cfg)),
	}
	backends := slices.Sorted(slices.Values(cfg.Backends))
	backends = slices.Compact(backends)
	if len(backends) > 0 {
		for _, b := range backends {
			if errs := validation.IsDNS1123Label(b); len(errs) > 0 {
				return nil, fmt.Errorf("backend %q: %s: %w", b, strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
			}
			labels[BackendLabelPrefix+b] = "true"
		}
		v := strings.Join(backends, ".")
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("backends %q do not fit in label %s: %s: %w", v, BackendsLabel, strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
		}
		labels[BackendsLabel] = v
	}
	maps.Copy(labels, cfg.Labels)
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if e := validation.IsQualifiedName(k); len(e) > 0 {
			errs = append(errs, fmt.Sprintf("label key %q: %s", k, strings.Join(e, ", ")))
			continue
		}
		if e := validation.IsValidLabelValue(labels[k]); len(e) > 0 {
			errs = append(errs, fmt.Sprintf("label %s=%q: %s", k, labels[k], strings.Join(e, ", ")))
			continue
		}
		if forbiddenNodeLabel(k) {
			errs = append(errs, fmt.Sprintf("label %s: a node may not set it (NodeRestriction); an admin can label the node instead", k))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("node labels: %s: %w", strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
	}
	return labels, nil
}

// forbiddenNodeLabel tells whether the NodeRestriction admission plugin refuses a node that sets label key on
// itself: node-restriction.kubernetes.io/*, and every kubernetes.io or k8s.io label (subdomains included) except
// those the kubelet sets (k8s.io/kubelet/pkg/apis IsKubeletLabel): kubernetes.io/hostname, kubernetes.io/os,
// kubernetes.io/arch, the instance-type, zone and region labels, and kubelet.kubernetes.io/*,
// node.kubernetes.io/*.
func forbiddenNodeLabel(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	under := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	if under(corev1.LabelNamespaceNodeRestriction) {
		return true
	}
	if !under("kubernetes.io") && !under("k8s.io") {
		return false
	}
	switch key {
	case corev1.LabelHostname,
		corev1.LabelTopologyZone,
		corev1.LabelTopologyRegion,
		corev1.LabelFailureDomainBetaZone,
		corev1.LabelFailureDomainBetaRegion,
		corev1.LabelInstanceType,
		corev1.LabelInstanceTypeStable,
		corev1.LabelOSStable,
		corev1.LabelArchStable,
		"beta.kubernetes.io/os",
		"beta.kubernetes.io/arch":
		return false
	}
	return !under(corev1.LabelNamespaceSuffixKubelet) && !under(corev1.LabelNamespaceSuffixNode)
}

// validateConfig checks what the API server would refuse in the node's name, taints and addresses.
func validateConfig(cfg Config) error {
	var errs []string
	if cfg.Name == "" {
		errs = append(errs, "no node name")
	} else if e := validation.IsDNS1123Subdomain(cfg.Name); len(e) > 0 {
		errs = append(errs, fmt.Sprintf("node name %q: %s", cfg.Name, strings.Join(e, ", ")))
	}
	for _, t := range cfg.Taints {
		if e := validation.IsQualifiedName(t.Key); len(e) > 0 {
			errs = append(errs, fmt.Sprintf("taint key %q: %s", t.Key, strings.Join(e, ", ")))
		}
		if e := validation.IsValidLabelValue(t.Value); len(e) > 0 {
			errs = append(errs, fmt.Sprintf("taint %s value %q: %s", t.Key, t.Value, strings.Join(e, ", ")))
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, fmt.Sprintf("taint %s effect %q: want NoSchedule, PreferNoSchedule or NoExecute", t.Key, t.Effect))
		}
	}
	if cfg.InternalIP != "" && net.ParseIP(cfg.InternalIP) == nil {
		errs = append(errs, fmt.Sprintf("InternalIP %q is not an IP address", cfg.InternalIP))
	}
	if cfg.KubeletPort < 0 {
		errs = append(errs, fmt.Sprintf("kubelet port %d out of range", cfg.KubeletPort))
	}
	if len(errs) > 0 {
		return fmt.Errorf("node config: %s: %w", strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
	}
	return nil
}
