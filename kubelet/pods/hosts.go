package pods

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// The pod's /etc/hosts and /etc/hostname, as kubelet (makeMounts,
// ensureHostsFile) and containerd's CRI plugin (the sandbox's hostname
// file) make them: one file of each per pod, kept beside its volumes and
// bind-mounted into every container that does not mount that path itself.

// The first line of a managed hosts file: kubelet's, word for word (its
// conformance test looks for it).
const (
	managedHostsHeader                = "# Kubernetes-managed hosts file.\n"
	managedHostsHeaderWithHostNetwork = "# Kubernetes-managed hosts file (host network).\n"
)

// etcHostsPath is the node's hosts file, the base of a hostNetwork pod's.
var etcHostsPath = "/etc/hosts"

// managedHostsContent is the hosts file of a pod on the pod network, as
// kubelet's managedHostsFileContent writes it: localhost, the IPv6 names,
// a line per pod IP naming the pod (hostname.domain first when the pod has
// a subdomain), then the hostAliases.
func managedHostsContent(ips []string, host, domain string, aliases []corev1.HostAlias) []byte {
	var b bytes.Buffer
	b.WriteString(managedHostsHeader)
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range ips {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, host, domain, host)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, host)
		}
	}
	b.Write(hostAliasesContent(aliases))
	return b.Bytes()
}

// nodeHostsContent is the hosts file of a hostNetwork pod: the node's own,
// under kubelet's host-network header, then the hostAliases.
func nodeHostsContent(path string, aliases []corev1.HostAlias) ([]byte, error) {
	node, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the node's hosts file: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(managedHostsHeaderWithHostNetwork)
	b.Write(node)
	b.Write(hostAliasesContent(aliases))
	return b.Bytes(), nil
}

// hostAliasesContent is kubelet's section of hostAliases: one line per
// alias, its names tab-separated.
func hostAliasesContent(aliases []corev1.HostAlias) []byte {
	if len(aliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}

// hostDomain is the pod's domain in its hosts file, as kubelet's
// GeneratePodHostNameAndDomain: <subdomain>.<namespace>.svc.<cluster
// domain> when it has a subdomain, else "".
func hostDomain(pod *corev1.Pod, clusterDomain string) string {
	if pod.Spec.Subdomain == "" {
		return ""
	}
	if clusterDomain = strings.TrimSuffix(clusterDomain, "."); clusterDomain == "" {
		clusterDomain = "cluster.local"
	}
	return pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + clusterDomain
}

// mountsPath reports whether c mounts a volume at path itself.
func mountsPath(c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == path {
			return true
		}
	}
	return false
}

// podFilesDir is the pod's directory beside its volumes, as kubelet's
// /var/lib/kubelet/pods/<uid>.
func (w *worker) podFilesDir() string {
	return filepath.Join(w.p.cfg.StateDir, "pods", string(w.uid))
}

// etcFilesMounts writes the pod's hosts and hostname files, as kubelet
// does before each container start, and returns their mounts for c: none
// where c mounts the path itself, no hosts file while a pod on the pod
// network has no IP yet (kubelet's shouldMountHostsFile). ips are the pod's
// addresses (the node's for a hostNetwork pod); host is its hostname.
func (w *worker) etcFilesMounts(pod *corev1.Pod, c *corev1.Container, ips []string, host string) ([]specs.Mount, error) {
	dir := w.podFilesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	var mounts []specs.Mount
	if (len(ips) > 0 || pod.Spec.HostNetwork) && !mountsPath(c, "/etc/hosts") {
		var content []byte
		if pod.Spec.HostNetwork {
			var err error
			if content, err = nodeHostsContent(etcHostsPath, pod.Spec.HostAliases); err != nil {
				return nil, err
			}
		} else {
			h, _ := splitHostname(host)
			content = managedHostsContent(ips, h, hostDomain(pod, w.p.cfg.DNS.ClusterDomain), pod.Spec.HostAliases)
		}
		path := filepath.Join(dir, "etc-hosts")
		if err := writeFileMode(path, content, 0o644); err != nil {
			return nil, fmt.Errorf("pod hosts file: %w", err)
		}
		// Writable, as kubelet mounts it.
		mounts = append(mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: path, Options: []string{"rbind", "rw"}})
	}
	if !mountsPath(c, "/etc/hostname") {
		path := filepath.Join(dir, "hostname")
		if err := writeFileMode(path, []byte(host+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("pod hostname file: %w", err)
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: path, Options: []string{"rbind", "rw"}})
	}
	return mounts, nil
}

// splitHostname splits a hostname that setHostnameAsFQDN made fully
// qualified into its first label and the rest.
func splitHostname(host string) (string, string) {
	h, d, _ := strings.Cut(host, ".")
	return h, d
}

// writeFileMode writes path in place, as kubelet's ensureHostsFile does, so
// that every container of the pod, which all mount this one file, sees the
// new content; its mode is set exactly.
func writeFileMode(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
