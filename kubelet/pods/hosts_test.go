package pods

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const localHosts = "# Kubernetes-managed hosts file.\n" +
	"127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"fe00::0\tip6-mcastprefix\n" +
	"fe00::1\tip6-allnodes\n" +
	"fe00::2\tip6-allrouters\n"

func TestManagedHostsContent(t *testing.T) {
	aliases := []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.remote", "bar.remote"}}, {IP: "127.0.0.1", Hostnames: []string{"foo.local"}}}
	for _, tc := range []struct {
		name         string
		ips          []string
		host, domain string
		aliases      []corev1.HostAlias
		want         string
	}{
		{"pod IP", []string{"10.244.0.5"}, "web", "", nil, localHosts + "10.244.0.5\tweb\n"},
		{"dual stack with a subdomain", []string{"10.244.0.5", "fd00::5"}, "web", "sub.ns.svc.cluster.local", nil,
			localHosts + "10.244.0.5\tweb.sub.ns.svc.cluster.local\tweb\nfd00::5\tweb.sub.ns.svc.cluster.local\tweb\n"},
		{"host aliases", []string{"10.244.0.5"}, "web", "", aliases,
			localHosts + "10.244.0.5\tweb\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n127.0.0.1\tfoo.local\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(managedHostsContent(tc.ips, tc.host, tc.domain, tc.aliases)); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestHostDomain(t *testing.T) {
	for _, tc := range []struct {
		sub, domain, want string
	}{
		{"", "cluster.local", ""},
		{"sub", "cluster.local", "sub.ns.svc.cluster.local"},
		{"sub", "", "sub.ns.svc.cluster.local"},
		{"sub", "edge.", "sub.ns.svc.edge"},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: corev1.PodSpec{Subdomain: tc.sub}}
		if got := hostDomain(pod, tc.domain); got != tc.want {
			t.Errorf("hostDomain(subdomain %q, domain %q) = %q, want %q", tc.sub, tc.domain, got, tc.want)
		}
	}
}

func TestEtcFilesMounts(t *testing.T) {
	node := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(node, []byte("127.0.0.1 localhost\n10.0.0.1 edge-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := etcHostsPath
	etcHostsPath = node
	t.Cleanup(func() { etcHostsPath = old })
	own := []corev1.VolumeMount{{Name: "h", MountPath: "/etc/hosts/"}}
	alias := []corev1.HostAlias{{IP: "1.2.3.4", Hostnames: []string{"a"}}}
	for _, tc := range []struct {
		name      string
		hostNet   bool
		mounts    []corev1.VolumeMount
		ips       []string
		wantHosts string // "" when /etc/hosts is not mounted
	}{
		{"pod network", false, nil, []string{"10.244.0.5"}, localHosts + "10.244.0.5\tp\n\n# Entries added by HostAliases.\n1.2.3.4\ta\n"},
		{"no IP yet", false, nil, nil, ""},
		{"the container mounts /etc/hosts", false, own, []string{"10.244.0.5"}, ""},
		{"host network", true, nil, []string{"10.0.0.1"},
			"# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 edge-1\n\n# Entries added by HostAliases.\n1.2.3.4\ta\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &worker{p: &Provider{cfg: Config{StateDir: t.TempDir()}}, uid: "uid1"}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{HostNetwork: tc.hostNet, HostAliases: alias}}
			c := &corev1.Container{Name: "c", VolumeMounts: tc.mounts}
			ms, err := w.etcFilesMounts(pod, c, tc.ips, "p")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, m := range ms {
				b, err := os.ReadFile(m.Source)
				if err != nil {
					t.Fatal(err)
				}
				if m.Options[1] != "rw" {
					t.Errorf("%s mounted %v, want rw as kubelet", m.Destination, m.Options)
				}
				got[m.Destination] = string(b)
			}
			if got["/etc/hosts"] != tc.wantHosts {
				t.Errorf("/etc/hosts:\n%q\nwant\n%q", got["/etc/hosts"], tc.wantHosts)
			}
			if got["/etc/hostname"] != "p\n" {
				t.Errorf("/etc/hostname = %q, want %q", got["/etc/hostname"], "p\n")
			}
		})
	}
}
