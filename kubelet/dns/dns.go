// Package dns writes each pod's resolv.conf from its dnsPolicy and dnsConfig
// and the node's cluster DNS settings, as kubelet does.
package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kubelet's limits: glibc reads at most 3 nameservers; search paths are
// capped at 32 domains and 2048 characters.
const (
	maxNameservers  = 3
	maxSearches     = 32
	maxSearchLength = 2048
)

// Config is the node's DNS configuration (kubelet's --cluster-dns,
// --cluster-domain and --resolv-conf).
type Config struct {
	// ClusterDNS are the cluster's DNS servers (kube-dns's Service IP);
	// none means ClusterFirst pods fall back to the host's resolv.conf, as
	// kubelet does.
	ClusterDNS []string
	// ClusterDomain is the cluster's domain (default cluster.local).
	ClusterDomain string
	// HostResolvConf is the host's resolv.conf, the base of dnsPolicy
	// Default (default /etc/resolv.conf); "-" for none.
	HostResolvConf string
}

// Resolv is a resolv.conf's content.
type Resolv struct {
	Nameservers, Searches, Options []string
}

// Bytes renders r as a resolv.conf file.
func (r Resolv) Bytes() []byte {
	var b bytes.Buffer
	if len(r.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.Searches, " "))
	}
	for _, ns := range r.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(r.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.Options, " "))
	}
	return b.Bytes()
}

// ForPod returns pod's resolv.conf: its dnsPolicy's base — ClusterFirst
// (the default): the cluster DNS servers, search <ns>.svc.<domain>
// svc.<domain> <domain> and the host's search domains, ndots:5; Default: the
// host's; None: nothing — merged with its dnsConfig. A hostNetwork pod under
// ClusterFirst gets the host's, as in kubelet; ClusterFirstWithHostNet gives
// it the cluster's. warning, if not empty, says what was dropped or why the
// cluster DNS was not used (kubelet's DNSConfigForming event).
func (c Config) ForPod(pod *corev1.Pod) (r Resolv, warning string, err error) {
	host, err := c.host()
	if err != nil {
		return Resolv{}, "", err
	}
	domain := strings.TrimSuffix(c.ClusterDomain, ".")
	if domain == "" {
		domain = "cluster.local"
	}
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	var warnings []string
	cluster := policy == corev1.DNSClusterFirstWithHostNet || (policy == corev1.DNSClusterFirst && !pod.Spec.HostNetwork)
	if cluster && len(c.ClusterDNS) == 0 {
		warnings = append(warnings, fmt.Sprintf("pod %q has dnsPolicy %s but the node has no cluster DNS (--cluster-dns): using the host's resolv.conf", pod.Name, policy))
		cluster = false
	}
	switch {
	case policy == corev1.DNSNone:
	case cluster:
		r.Nameservers = slices.Clone(c.ClusterDNS)
		r.Searches = append([]string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}, host.Searches...)
		r.Options = []string{"ndots:5"}
	default:
		r = host
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		r.Nameservers = appendNew(r.Nameservers, dc.Nameservers...)
		r.Searches = appendNew(r.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			r.Options = setOption(r.Options, o.Name, opt)
		}
	}
	if len(r.Nameservers) > maxNameservers {
		warnings = append(warnings, fmt.Sprintf("Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: %s",
			strings.Join(r.Nameservers[:maxNameservers], " ")))
		r.Nameservers = r.Nameservers[:maxNameservers]
	}
	if n := searchFit(r.Searches); n < len(r.Searches) {
		r.Searches = r.Searches[:n]
		warnings = append(warnings, fmt.Sprintf("Search Line limits were exceeded, some search paths have been omitted, the applied search line is: %s",
			strings.Join(r.Searches, " ")))
	}
	return r, strings.Join(warnings, "; "), nil
}

// host reads the host's resolv.conf; a missing one is empty.
func (c Config) host() (Resolv, error) {
	path := c.HostResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	if path == "-" {
		return Resolv{}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Resolv{}, nil
	}
	if err != nil {
		return Resolv{}, fmt.Errorf("host resolv.conf: %w", err)
	}
	return Parse(b), nil
}

// Parse reads the nameserver, search (and domain) and options lines of a
// resolv.conf; the last search or domain line wins, as in glibc.
func Parse(b []byte) Resolv {
	var r Resolv
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			r.Nameservers = append(r.Nameservers, f[1])
		case "search", "domain":
			r.Searches = nil
			for _, s := range f[1:] {
				if s != "." {
					r.Searches = append(r.Searches, strings.TrimSuffix(s, "."))
				}
			}
		case "options":
			for _, o := range f[1:] {
				name, _, _ := strings.Cut(o, ":")
				r.Options = setOption(r.Options, name, o)
			}
		}
	}
	return r
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// setOption sets option name to opt ("name" or "name:value"), replacing one
// of the same name.
func setOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			opts[i] = opt
			return opts
		}
	}
	return append(opts, opt)
}

// searchFit returns how many of searches fit kubelet's limits.
func searchFit(searches []string) int {
	n, length := 0, 0
	for _, s := range searches {
		if n == maxSearches || length+len(s)+min(n, 1) > maxSearchLength {
			break
		}
		length += len(s) + min(n, 1)
		n++
	}
	return n
}
