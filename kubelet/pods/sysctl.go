package pods

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Sysctls, as kubelet admits them (pkg/kubelet/sysctl): a pod may set the
// safe sysctls and those the node allows with --allowed-unsafe-sysctls
// (names, or prefixes ending in *); a pod with any other is rejected at
// admission, phase Failed with reason SysctlForbidden. A sysctl of the
// network namespace is refused to a hostNetwork pod, one of the IPC
// namespace to a hostIPC pod.

// reasonSysctlForbidden is kubelet's reason for a rejected sysctl.
const reasonSysctlForbidden = "SysctlForbidden"

// safeSysctls are kubelet v1.37's safe sysctls: namespaced, and without
// effect on other pods. (kubelet drops the newer ones on kernels older than
// they are; the agent's kernels have them all.)
var safeSysctls = []string{
	"kernel.shm_rmid_forced",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem",
	"net.ipv4.tcp_slow_start_after_idle",
	"net.ipv4.tcp_notsent_lowat",
}

// sysctlNamespace is the namespace a sysctl lives in, as kubelet knows them:
// "IPC", "Net", "UTS", "User", or "" when it is not known to be namespaced.
func sysctlNamespace(name string) string {
	switch name {
	case "kernel.domainname":
		return "UTS"
	case "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.shm",
		"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.msg":
		return "IPC"
	}
	for p, ns := range map[string]string{"net": "Net", "fs.mqueue": "IPC", "user": "User"} {
		if strings.HasPrefix(name, p+".") {
			return ns
		}
	}
	return ""
}

// normalizeSysctl writes a sysctl with '.' separators, as kubelet's
// NormalizeName: in "net/ipv4/conf/eth0.100/rp_filter" '.' and '/' swap.
func normalizeSysctl(name string) string {
	i := strings.IndexAny(name, "./")
	if i == -1 || name[i] == '.' {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
}

// sysctlAllowlist is the sysctls a node allows: exact names and prefixes,
// each with its namespace.
type sysctlAllowlist struct {
	names, prefixes map[string]string
}

// newSysctlAllowlist is the safe sysctls plus unsafe, the node's
// --allowed-unsafe-sysctls. A pattern not known to be namespaced is an
// error, as in kubelet.
func newSysctlAllowlist(unsafe []string) (*sysctlAllowlist, error) {
	a := &sysctlAllowlist{names: map[string]string{}, prefixes: map[string]string{}}
	for _, s := range append(append([]string{}, safeSysctls...), unsafe...) {
		s = normalizeSysctl(s)
		prefix, prefixed := strings.CutSuffix(s, "*")
		ns := sysctlNamespace(prefix)
		if ns == "" {
			return nil, fmt.Errorf("the sysctls %q are not known to be namespaced", prefix)
		}
		if prefixed {
			a.prefixes[prefix] = ns
		} else {
			a.names[s] = ns
		}
	}
	return a, nil
}

// admit is kubelet's sysctl admission of pod: nil, or why it may not run.
func (a *sysctlAllowlist) admit(pod *corev1.Pod) *Rejection {
	psc := pod.Spec.SecurityContext
	if psc == nil || len(psc.Sysctls) == 0 {
		return nil
	}
	hostUsers := pod.Spec.HostUsers == nil || *pod.Spec.HostUsers
	for _, s := range psc.Sysctls {
		if err := a.validate(s.Name, pod.Spec.HostNetwork, pod.Spec.HostIPC, hostUsers); err != nil {
			return &Rejection{Reason: reasonSysctlForbidden, Message: fmt.Sprintf("forbidden sysctl: %v", err)}
		}
	}
	return nil
}

func (a *sysctlAllowlist) validate(name string, hostNet, hostIPC, hostUsers bool) error {
	name = normalizeSysctl(name)
	check := func(ns string) error {
		if (ns == "IPC" && hostIPC) || (ns == "Net" && hostNet) || (ns == "User" && hostUsers) {
			return fmt.Errorf("%q not allowed with host %s enabled", name, ns)
		}
		return nil
	}
	if ns, ok := a.names[name]; ok {
		return check(ns)
	}
	for p, ns := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return check(ns)
		}
	}
	return fmt.Errorf("%q not allowlisted", name)
}
