package dns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestForPod(t *testing.T) {
	dir := t.TempDir()
	hostConf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(hostConf, []byte("# host\ndomain old.example\nsearch corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54 # second\noptions rotate timeout:2\n"), 0o644)
	cluster := Config{ClusterDNS: []string{"10.96.0.10"}, HostResolvConf: hostConf}
	five := "5"
	for _, tc := range []struct {
		name    string
		cfg     Config
		spec    corev1.PodSpec
		want    string
		warning string
	}{
		{name: "ClusterFirst", cfg: cluster, spec: corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst},
			want: "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{name: "empty policy is ClusterFirst, custom domain", cfg: Config{ClusterDNS: []string{"10.0.0.10", "fd00::10"}, ClusterDomain: "edge.local.", HostResolvConf: "-"},
			want: "search ns1.svc.edge.local svc.edge.local edge.local\nnameserver 10.0.0.10\nnameserver fd00::10\noptions ndots:5\n"},
		{name: "Default", cfg: cluster, spec: corev1.PodSpec{DNSPolicy: corev1.DNSDefault},
			want: "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions rotate timeout:2\n"},
		{name: "ClusterFirst without cluster DNS falls back to the host's", cfg: Config{HostResolvConf: hostConf},
			want:    "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions rotate timeout:2\n",
			warning: "no cluster DNS"},
		{name: "hostNetwork ClusterFirst is the host's", cfg: cluster, spec: corev1.PodSpec{HostNetwork: true, DNSPolicy: corev1.DNSClusterFirst},
			want: "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions rotate timeout:2\n"},
		{name: "ClusterFirstWithHostNet", cfg: cluster, spec: corev1.PodSpec{HostNetwork: true, DNSPolicy: corev1.DNSClusterFirstWithHostNet},
			want: "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{name: "None with dnsConfig", cfg: cluster, spec: corev1.PodSpec{DNSPolicy: corev1.DNSNone, DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []corev1.PodDNSConfigOption{{Name: "edns0"}}}},
			want: "search a.example\nnameserver 1.1.1.1\noptions edns0\n"},
		{name: "dnsConfig merged into ClusterFirst", cfg: cluster, spec: corev1.PodSpec{DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"10.96.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"}, Searches: []string{"cluster.local", "x.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &five}, {Name: "single-request"}}}},
			want:    "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example x.example\nnameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:5 single-request\n",
			warning: "Nameserver limits were exceeded"},
		{name: "missing host file", cfg: Config{HostResolvConf: filepath.Join(dir, "none")}, spec: corev1.PodSpec{DNSPolicy: corev1.DNSDefault}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: tc.spec}
			pod.Namespace, pod.Name = "ns1", "p"
			r, warning, err := tc.cfg.ForPod(pod)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(r.Bytes()); got != tc.want {
				t.Errorf("resolv.conf =\n%s\nwant\n%s", got, tc.want)
			}
			if (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
				t.Errorf("warning = %q, want %q", warning, tc.warning)
			}
		})
	}
}

func TestSearchLimits(t *testing.T) {
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, strings.Repeat("d", 10))
	}
	if n := searchFit(many); n != 32 {
		t.Errorf("searchFit(40 short) = %d, want 32", n)
	}
	if n := searchFit([]string{strings.Repeat("a", 2000), strings.Repeat("b", 100)}); n != 1 {
		t.Errorf("searchFit(long) = %d, want 1", n)
	}
}
