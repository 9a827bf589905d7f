package nodeinfo

import (
	"errors"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

func testConfig() Config {
	return Config{
		Name:              "feather-1",
		Backends:          []string{"osv", "container", "osv"},
		ContainerdVersion: "v2.4.2",
	}
}

func TestBuild(t *testing.T) {
	m := testMonitor(filepath.Join("testdata", "v2"))
	n, err := build(testConfig(), m, Health{}, time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "feather-1" {
		t.Errorf("name %q", n.Name)
	}
	wantLabels := map[string]string{
		"kubernetes.io/os":              runtime.GOOS,
		"kubernetes.io/arch":            runtime.GOARCH,
		"kubernetes.io/hostname":        "feather-1",
		"feather.dev/backends":          "container.osv",
		"feather.dev/backend.osv":       "true",
		"feather.dev/backend.container": "true",
	}
	if !maps.Equal(n.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", n.Labels, wantLabels)
	}
	if !equality.Semantic.DeepEqual(n.Spec.Taints, DefaultTaints()) ||
		n.Spec.Taints[0].Key != "virtual-kubelet.io/provider" || n.Spec.Taints[0].Value != "feather" || n.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("taints = %v", n.Spec.Taints)
	}
	info := n.Status.NodeInfo
	if info.KubeletVersion != DefaultKubeletVersion || info.ContainerRuntimeVersion != "containerd://v2.4.2" ||
		info.KernelVersion != "6.1.0-18-amd64" || info.OSImage != "Debian GNU/Linux 12 (bookworm)" ||
		info.OperatingSystem != runtime.GOOS || info.Architecture != runtime.GOARCH || info.MachineID == "" || info.BootID == "" {
		t.Errorf("nodeInfo = %+v", info)
	}
	wantAddrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeHostName, Address: "feather-1"}}
	if !equality.Semantic.DeepEqual(n.Status.Addresses, wantAddrs) {
		t.Errorf("addresses = %v, want %v", n.Status.Addresses, wantAddrs)
	}
	if p := n.Status.DaemonEndpoints.KubeletEndpoint.Port; p != 10250 {
		t.Errorf("kubelet port %d, want 10250", p)
	}
	capacity := Resources{CPUMilli: 500, MemoryBytes: gi, Pods: 110, EphemeralStorageBytes: 100 * gi}
	if got := ResourcesFromList(n.Status.Capacity); got != capacity {
		t.Errorf("capacity = %+v, want %+v", got, capacity)
	}
	if got, want := n.Status.Capacity.Cpu().String(), "500m"; got != want {
		t.Errorf("capacity cpu %s, want %s", got, want)
	}
	if got, want := ResourcesFromList(n.Status.Allocatable), m.Allocatable(capacity); got != want {
		t.Errorf("allocatable = %+v, want %+v", got, want)
	}
	if len(n.Status.Conditions) != 5 {
		t.Errorf("conditions = %v", n.Status.Conditions)
	}
	for k := range n.Labels {
		if forbiddenNodeLabel(k) {
			t.Errorf("Build sets label %s, which NodeRestriction forbids", k)
		}
	}
}

func TestBuildConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		check  func(t *testing.T, n *corev1.Node)
	}{
		{name: "no taints", change: func(c *Config) { c.Taints = []corev1.Taint{} }, check: func(t *testing.T, n *corev1.Node) {
			if len(n.Spec.Taints) != 0 {
				t.Errorf("taints = %v, want none", n.Spec.Taints)
			}
		}},
		{name: "own taints", change: func(c *Config) {
			c.Taints = []corev1.Taint{{Key: "feather.dev/edge", Effect: corev1.TaintEffectNoExecute}, {Key: "a", Value: "b", Effect: corev1.TaintEffectPreferNoSchedule}}
		}, check: func(t *testing.T, n *corev1.Node) {
			if len(n.Spec.Taints) != 2 || n.Spec.Taints[0].Key != "feather.dev/edge" {
				t.Errorf("taints = %v", n.Spec.Taints)
			}
		}},
		{name: "labels added and override", change: func(c *Config) {
			c.Labels = map[string]string{"topology.kubernetes.io/zone": "shelf-3", "node.kubernetes.io/instance-type": "rpi5", "example.com/x": "y", "kubernetes.io/hostname": "pi"}
		}, check: func(t *testing.T, n *corev1.Node) {
			if n.Labels["topology.kubernetes.io/zone"] != "shelf-3" || n.Labels["node.kubernetes.io/instance-type"] != "rpi5" ||
				n.Labels["example.com/x"] != "y" || n.Labels["kubernetes.io/hostname"] != "pi" || n.Labels["kubernetes.io/os"] != runtime.GOOS {
				t.Errorf("labels = %v", n.Labels)
			}
		}},
		{name: "hostname, port, IP and versions", change: func(c *Config) {
			c.Hostname, c.KubeletPort, c.InternalIP, c.KubeletVersion = "Edge-Box", 10260, "10.0.0.7", "v1.37.2-feather.1"
		}, check: func(t *testing.T, n *corev1.Node) {
			want := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.7"}, {Type: corev1.NodeHostName, Address: "Edge-Box"}}
			if !equality.Semantic.DeepEqual(n.Status.Addresses, want) || n.Labels["kubernetes.io/hostname"] != "edge-box" ||
				n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10260 || n.Status.NodeInfo.KubeletVersion != "v1.37.2-feather.1" {
				t.Errorf("addresses %v, labels %v, endpoints %v, info %+v", n.Status.Addresses, n.Labels, n.Status.DaemonEndpoints, n.Status.NodeInfo)
			}
		}},
		{name: "no backends", change: func(c *Config) { c.Backends = nil }, check: func(t *testing.T, n *corev1.Node) {
			for k := range n.Labels {
				if strings.HasPrefix(k, "feather.dev/") {
					t.Errorf("label %s without backends", k)
				}
			}
		}},
		{name: "no containerd version", change: func(c *Config) { c.ContainerdVersion = "" }, check: func(t *testing.T, n *corev1.Node) {
			if v := n.Status.NodeInfo.ContainerRuntimeVersion; v != "" {
				t.Errorf("containerRuntimeVersion %q, want empty", v)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			n, err := Build(cfg, testMonitor(filepath.Join("testdata", "v1")), Health{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, n)
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{name: "virtual-kubelet's role label", change: func(c *Config) { c.Labels = map[string]string{"kubernetes.io/role": "agent"} }, want: "kubernetes.io/role"},
		{name: "node-role label", change: func(c *Config) { c.Labels = map[string]string{"node-role.kubernetes.io/edge": ""} }, want: "node-role.kubernetes.io/edge"},
		{name: "node-restriction label", change: func(c *Config) { c.Labels = map[string]string{"node-restriction.kubernetes.io/pool": "a"} }, want: "node-restriction"},
		{name: "k8s.io label", change: func(c *Config) { c.Labels = map[string]string{"feather.k8s.io/x": "a"} }, want: "feather.k8s.io/x"},
		{name: "bad label value", change: func(c *Config) { c.Labels = map[string]string{"a": "no spaces"} }, want: "label a="},
		{name: "bad label key", change: func(c *Config) { c.Labels = map[string]string{"-a": "b"} }, want: `label key "-a"`},
		{name: "backend with a dot", change: func(c *Config) { c.Backends = []string{"osv.v1"} }, want: `backend "osv.v1"`},
		{name: "upper-case backend", change: func(c *Config) { c.Backends = []string{"OSV"} }, want: `backend "OSV"`},
		{name: "backends too long", change: func(c *Config) {
			c.Backends = []string{strings.Repeat("a", 31), strings.Repeat("b", 31), "c"}
		}, want: "do not fit"},
		{name: "no name", change: func(c *Config) { c.Name = "" }, want: "no node name"},
		{name: "bad name", change: func(c *Config) { c.Name = "Feather_1" }, want: "node name"},
		{name: "long name makes a bad hostname label", change: func(c *Config) { c.Name = strings.Repeat("a", 70) }, want: "kubernetes.io/hostname"},
		{name: "bad taint effect", change: func(c *Config) { c.Taints = []corev1.Taint{{Key: "a", Effect: "Never"}} }, want: "effect"},
		{name: "bad taint key", change: func(c *Config) { c.Taints = []corev1.Taint{{Key: "a b", Effect: corev1.TaintEffectNoSchedule}} }, want: "taint key"},
		{name: "bad IP", change: func(c *Config) { c.InternalIP = "10.0.0" }, want: "InternalIP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			_, err := Build(cfg, testMonitor(filepath.Join("testdata", "v1")), Health{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Build() error = %v, want an invalid-argument error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestBuildNeedsAnAddress(t *testing.T) {
	root := copyTree(t, "v1")
	writeFile(t, root, "proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n")
	_, err := Build(testConfig(), testMonitor(root), Health{})
	if err == nil || !strings.Contains(err.Error(), "InternalIP") {
		t.Fatalf("Build() without a default route: error = %v, want one that says to set InternalIP", err)
	}
}

func TestForbiddenNodeLabel(t *testing.T) {
	// The keys NodeRestriction (k8s.io/kubernetes/plugin/pkg/admission/noderestriction, v1.37) lets a node set or
	// refuses.
	for key, forbidden := range map[string]bool{
		"kubernetes.io/role":                       true,
		"node-role.kubernetes.io/worker":           true,
		"node-role.kubernetes.io":                  false, // no prefix: an unqualified key
		"node-restriction.kubernetes.io/a":         true,
		"x.node-restriction.kubernetes.io/a":       true,
		"kubernetes.io/other":                      true,
		"k8s.io/a":                                 true,
		"foo.k8s.io/a":                             true,
		"foo.kubernetes.io/a":                      true,
		"kubernetes.io/hostname":                   false,
		"kubernetes.io/os":                         false,
		"kubernetes.io/arch":                       false,
		"beta.kubernetes.io/os":                    false,
		"beta.kubernetes.io/arch":                  false,
		"beta.kubernetes.io/instance-type":         false,
		"node.kubernetes.io/instance-type":         false,
		"topology.kubernetes.io/zone":              false,
		"topology.kubernetes.io/region":            false,
		"failure-domain.beta.kubernetes.io/zone":   false,
		"failure-domain.beta.kubernetes.io/region": false,
		"node.kubernetes.io/anything":              false,
		"foo.node.kubernetes.io/anything":          false,
		"kubelet.kubernetes.io/anything":           false,
		"feather.dev/backends":                     false,
		"type":                                     false,
	} {
		if got := forbiddenNodeLabel(key); got != forbidden {
			t.Errorf("forbiddenNodeLabel(%q) = %v, want %v", key, got, forbidden)
		}
	}
}

func TestUpdate(t *testing.T) {
	root := copyTree(t, "v2")
	m := testMonitor(root)
	cfg := testConfig()
	t0 := time.Unix(1000, 0)
	n, err := build(cfg, m, Health{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	labels := maps.Clone(n.Labels)

	// Less memory available, a tighter quota, and the default route gone: conditions and capacity follow, the
	// InternalIP stays.
	writeFile(t, root, "proc/meminfo", "MemTotal: 4194304 kB\nMemAvailable: 51200 kB\n")
	writeFile(t, root, "sys/fs/cgroup/feather.slice/agent.service/cpu.max", "25000 100000\n")
	writeFile(t, root, "proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n")
	t1 := time.Unix(2000, 0)
	if err := update(n, cfg, m, Health{}, t1); err != nil {
		t.Fatal(err)
	}
	if got := n.Status.Capacity.Cpu().MilliValue(); got != 250 {
		t.Errorf("capacity cpu %dm, want 250m", got)
	}
	if n.Status.Addresses[0].Address != "192.0.2.10" {
		t.Errorf("addresses %v: InternalIP not kept", n.Status.Addresses)
	}
	if !maps.Equal(n.Labels, labels) {
		t.Errorf("Update changed labels: %v", n.Labels)
	}
	for _, c := range n.Status.Conditions {
		switch c.Type {
		case corev1.NodeMemoryPressure:
			if c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Time.Equal(t1) {
				t.Errorf("MemoryPressure = %+v, want True since %v", c, t1)
			}
		default:
			if !c.LastTransitionTime.Time.Equal(t0) || !c.LastHeartbeatTime.Time.Equal(t1) {
				t.Errorf("%s = %+v, want unchanged since %v, heartbeat %v", c.Type, c, t0, t1)
			}
		}
	}

	// A failed measurement leaves the node as it was.
	before := n.DeepCopy()
	writeFile(t, root, "sys/devices/system/cpu/online", "garbage\n")
	if err := Update(n, cfg, m, Health{}); err == nil {
		t.Fatal("Update() with unreadable CPUs: no error")
	}
	if !equality.Semantic.DeepEqual(n, before) {
		t.Error("failed Update() changed the node")
	}
}
