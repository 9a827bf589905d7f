package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentPodContents checks what the agent puts into a pod as kubelet
// does: the managed /etc/hosts (pod IP, subdomain, hostAliases; the node's
// for hostNetwork; none where the container mounts its own) and
// /etc/hostname; terminationMessagePolicy FallbackToLogsOnError; the
// securityContext (user, groups, fsGroup on volumes, no_new_privs, read-only
// root, capabilities, seccomp, sysctls, privileged) and its refusals
// (runAsNonRoot, unsafe sysctls); and eviction for an emptyDir over its
// sizeLimit.
func TestAgentPodContents(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	// A Localhost seccomp profile under the agent's --state-dir: mkdir
	// fails with EPERM, everything else is allowed.
	profDir := filepath.Join(c.agent.Dir, "state", "seccomp")
	if err := os.MkdirAll(profDir, 0o755); err != nil {
		t.Fatal(err)
	}
	prof := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`
	if err := os.WriteFile(filepath.Join(profDir, "no-mkdir.json"), []byte(prof), 0o644); err != nil {
		t.Fatal(err)
	}

	hostFile := corev1.HostPathFile
	hosts := newPod("hosts", corev1.RestartPolicyNever,
		corev1.Container{Name: "managed", Image: c.busybox, Command: sh("cat /etc/hosts; echo ---; cat /etc/hostname")},
		corev1.Container{Name: "own", Image: c.busybox, Command: sh("cat /etc/hosts"),
			VolumeMounts: []corev1.VolumeMount{{Name: "node-hosts", MountPath: "/etc/hosts"}}})
	hosts.Spec.Subdomain = "sub"
	hosts.Spec.HostAliases = []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.remote", "bar.remote"}}}
	hosts.Spec.Volumes = []corev1.Volume{{Name: "node-hosts", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/hosts", Type: &hostFile}}}}
	hostNet := newPod("hosts-hostnet", corev1.RestartPolicyNever,
		corev1.Container{Name: "c", Image: c.busybox, Command: sh("cat /etc/hosts; echo ---; cat /etc/hostname")})
	hostNet.Spec.HostNetwork = true
	hostNet.Spec.HostAliases = []corev1.HostAlias{{IP: "10.9.9.9", Hostnames: []string{"alias.local"}}}

	fallback := newPod("fallback", corev1.RestartPolicyNever,
		corev1.Container{Name: "fails", Image: c.busybox, Command: sh("echo first; echo -n DONE; exit 1"),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError},
		corev1.Container{Name: "ok", Image: c.busybox, Command: sh("echo fine"),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError},
		corev1.Container{Name: "file", Image: c.busybox, Command: sh("echo -n from-file > /dev/termination-log; echo log; exit 2"),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError})

	sec := newPod("sec", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh(`grep -E '^(Uid|Gid|Groups|NoNewPrivs|Seccomp|CapBnd):' /proc/self/status | tr -s '\t ' ' ' | sed 's/ *$//'
echo shm=$(cat /proc/sys/kernel/shm_rmid_forced)
touch /rootfile 2>/dev/null && echo root-writable || echo root-readonly
touch /data/f && echo data=$(stat -c '%a %g' /data) file=$(stat -c '%g' /data/f)
echo cfg=$(stat -L -c '%g' /cfg/k)`),
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "cfg", MountPath: "/cfg"}}})
	sec.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrTo(int64(1000)), RunAsGroup: ptrTo(int64(3000)),
		FSGroup: ptrTo(int64(2000)), SupplementalGroups: []int64{4000},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		Sysctls:        []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}
	sec.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec-cfg"}}}},
	}
	local := newPod("seccomp-local", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command:         sh("mkdir /tmp/x 2>/dev/null && echo mkdir-ok || echo mkdir-blocked; grep Seccomp: /proc/self/status | tr -s '\t ' ' '"),
		SecurityContext: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptrTo("no-mkdir.json")}}})
	priv := newPod("priv", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command:         sh("grep -E '^(CapBnd|Seccomp):' /proc/self/status | tr -s '\t ' ' '; test -e /dev/kmsg && echo host-devices"),
		SecurityContext: &corev1.SecurityContext{Privileged: ptrTo(true)}})
	nonRoot := newPod("nonroot", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh("id")})
	nonRoot.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true)}
	unsafe := newPod("unsafe-sysctl", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh("true")})
	unsafe.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "10000"}}}

	limit := resource.MustParse("1Mi")
	fill := newPod("fill", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:      sh("dd if=/dev/zero of=/data/f bs=1M count=3 2>/dev/null; trap 'exit 0' TERM; while true; do sleep 0.2; done"),
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}})
	fill.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}}}}
	fillMem := newPod("fill-mem", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command:      sh("dd if=/dev/zero of=/data/f bs=1M count=3 2>/dev/null || echo full; df -k /data | tail -1 | tr -s ' ' | cut -d' ' -f2"),
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}})
	fillMem.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &limit}}}}

	// Upstream's KubeletManagedEtcHosts conformance spec, as it runs:
	// containers mounting the node's /etc/hosts at /etc/hosts-original,
	// one of them at /etc/hosts too, in a pod and a hostNetwork pod.
	etcHostsPod := func(name string, hostNetwork bool, n int) *corev1.Pod {
		mounts := []corev1.VolumeMount{{Name: "host-etc-hosts", MountPath: "/etc/hosts-original"}}
		var cs []corev1.Container
		for i := 1; i <= n; i++ {
			cs = append(cs, corev1.Container{Name: "busybox-" + strconv.Itoa(i), Image: c.busybox, Command: []string{"sleep", "900"}, VolumeMounts: mounts})
		}
		own := append(slices.Clone(mounts), corev1.VolumeMount{Name: "host-etc-hosts", MountPath: "/etc/hosts"})
		cs[n-1].VolumeMounts = own
		p := newPod(name, corev1.RestartPolicyAlways, cs...)
		p.Spec.HostNetwork = hostNetwork
		p.Spec.Volumes = []corev1.Volume{{Name: "host-etc-hosts", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/hosts"}}}}
		return p
	}

	// Unikernels: the fields that cannot apply to a VM are not applied (it
	// runs), runAsNonRoot is checked against the image, as kubelet does.
	ukRes := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}
	ukSec := newPod("uk-sec", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/args", "vm"}, Resources: ukRes,
		SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}})
	ukSec.Spec.RuntimeClassName = ptrTo("osv")
	ukSec.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrTo(int64(1000)), FSGroup: ptrTo(int64(2000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		Sysctls:        []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}}}
	ukNonRoot := newPod("uk-nonroot", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/args"}, Resources: ukRes})
	ukNonRoot.Spec.RuntimeClassName = ptrTo("osv")
	ukNonRoot.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true)}

	c.create(ctx, t, ukSec, ukNonRoot)
	c.create(ctx, t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "sec-cfg"}, Data: map[string]string{"k": "v"}},
		hosts, hostNet, fallback, sec, local, priv, nonRoot, unsafe, fill, fillMem,
		etcHostsPod("test-pod", false, 3), etcHostsPod("test-host-network-pod", true, 2))

	done := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	logOf := func(t *testing.T, pod, container string) string {
		t.Helper()
		out, err := c.logs(ctx, pod, &corev1.PodLogOptions{Container: container})
		if err != nil {
			t.Fatalf("logs of %s/%s: %v", pod, container, err)
		}
		return out
	}

	t.Run("managed /etc/hosts", func(t *testing.T) {
		p := c.waitPod(t, "hosts", 2*time.Minute, done)
		want := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n" +
			p.Status.PodIP + "\thosts.sub.default.svc.cluster.local\thosts\n" +
			"\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n---\nhosts\n"
		if got := logOf(t, "hosts", "managed"); got != want {
			t.Errorf("managed container's /etc/hosts and /etc/hostname:\n%s\nwant\n%s", got, want)
		}
		node, err := os.ReadFile("/etc/hosts")
		if err != nil {
			t.Fatal(err)
		}
		if got := logOf(t, "hosts", "own"); got != string(node) {
			t.Errorf("a container mounting /etc/hosts itself sees %q, want the node's file %q", got, node)
		}
	})

	t.Run("hostNetwork /etc/hosts", func(t *testing.T) {
		c.waitPod(t, "hosts-hostnet", 2*time.Minute, done)
		node, err := os.ReadFile("/etc/hosts")
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		want := "# Kubernetes-managed hosts file (host network).\n" + string(node) +
			"\n# Entries added by HostAliases.\n10.9.9.9\talias.local\n---\n" + host + "\n"
		if got := logOf(t, "hosts-hostnet", "c"); got != want {
			t.Errorf("hostNetwork pod's /etc/hosts and /etc/hostname:\n%s\nwant\n%s", got, want)
		}
	})

	t.Run("KubeletManagedEtcHosts", func(t *testing.T) {
		for _, tc := range []struct {
			pod, container string
			managed        bool
		}{
			{"test-pod", "busybox-1", true}, {"test-pod", "busybox-2", true}, {"test-pod", "busybox-3", false},
			{"test-host-network-pod", "busybox-1", false}, {"test-host-network-pod", "busybox-2", false},
		} {
			c.waitPod(t, tc.pod, 2*time.Minute, phase(corev1.PodRunning))
			hosts, err := c.kubectl(ctx, t, "exec", tc.pod, "-c", tc.container, "--", "cat", "/etc/hosts")
			if err != nil {
				t.Fatalf("exec %s/%s: %v", tc.pod, tc.container, err)
			}
			orig, err := c.kubectl(ctx, t, "exec", tc.pod, "-c", tc.container, "--", "cat", "/etc/hosts-original")
			if err != nil {
				t.Fatalf("exec %s/%s: %v", tc.pod, tc.container, err)
			}
			// The spec's rule, word for word.
			managed := strings.HasPrefix(hosts, "# Kubernetes-managed hosts file.") && hosts != orig
			if hosts == "" || orig == "" || managed != tc.managed {
				t.Errorf("%s/%s: /etc/hosts managed %v, want %v:\n%s", tc.pod, tc.container, managed, tc.managed, hosts)
			}
		}
	})

	t.Run("FallbackToLogsOnError", func(t *testing.T) {
		p := c.waitPod(t, "fallback", 2*time.Minute, done)
		want := map[string]string{"fails": "first\nDONE", "ok": "", "file": "from-file"}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				t.Errorf("%s not terminated: %+v", cs.Name, cs.State)
				continue
			}
			if got := cs.State.Terminated.Message; got != want[cs.Name] {
				t.Errorf("%s: termination message %q, want %q", cs.Name, got, want[cs.Name])
			}
		}
	})

	t.Run("securityContext", func(t *testing.T) {
		p := c.waitPod(t, "sec", 2*time.Minute, done)
		if p.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("phase %s: %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		got := logOf(t, "sec", "c")
		for _, line := range []string{
			"Uid: 1000 1000 1000 1000", "Gid: 3000 3000 3000 3000", "Groups: 2000 3000 4000",
			"NoNewPrivs: 1", "Seccomp: 2", "CapBnd: 0000000000000400",
			"shm=1", "root-readonly", "data=2777 2000 file=2000", "cfg=2000",
		} {
			if !strings.Contains(got, line+"\n") {
				t.Errorf("sec: no line %q in\n%s", line, got)
			}
		}
	})

	t.Run("seccomp Localhost", func(t *testing.T) {
		c.waitPod(t, "seccomp-local", 2*time.Minute, done)
		if got := logOf(t, "seccomp-local", "c"); got != "mkdir-blocked\nSeccomp: 2\n" {
			t.Errorf("seccomp-local: %q, want mkdir blocked by the node's profile", got)
		}
	})

	t.Run("privileged", func(t *testing.T) {
		c.waitPod(t, "priv", 2*time.Minute, done)
		got := logOf(t, "priv", "c")
		var bnd uint64
		for _, l := range strings.Split(got, "\n") {
			if v, ok := strings.CutPrefix(l, "CapBnd: "); ok {
				bnd, _ = strconv.ParseUint(v, 16, 64)
			}
		}
		const sysAdmin = 21
		if bnd&(1<<sysAdmin) == 0 || !strings.Contains(got, "Seccomp: 0\n") || !strings.Contains(got, "host-devices\n") {
			t.Errorf("privileged container: %q; want CAP_SYS_ADMIN, no seccomp, the host's devices", got)
		}
	})

	t.Run("runAsNonRoot refused", func(t *testing.T) {
		p := c.waitPod(t, "nonroot", time.Minute, func(p *corev1.Pod) bool {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
					return true
				}
			}
			return false
		})
		want := `container has runAsNonRoot and image will run as root (pod: "nonroot_default(` + string(p.UID) + `)", container: c)`
		if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; msg != want {
			t.Errorf("waiting message %q, want kubelet's %q", msg, want)
		}
		c.waitEvent(t, "nonroot", "Failed", "image will run as root", 30*time.Second)
	})

	t.Run("unikernel", func(t *testing.T) {
		p := c.waitPod(t, "uk-sec", 3*time.Minute, done)
		if p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("uk-sec: phase %s, want Succeeded (the container-only fields are not applied to a VM): %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		p = c.waitPod(t, "uk-nonroot", time.Minute, func(p *corev1.Pod) bool {
			cs := p.Status.ContainerStatuses
			return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CreateContainerConfigError"
		})
		if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "container has runAsNonRoot and image will run as root") {
			t.Errorf("uk-nonroot: %q, want kubelet's refusal", msg)
		}
	})

	t.Run("unsafe sysctl rejected", func(t *testing.T) {
		p := c.waitPod(t, "unsafe-sysctl", time.Minute, phase(corev1.PodFailed))
		if p.Status.Reason != "SysctlForbidden" || p.Status.Message != `forbidden sysctl: "kernel.msgmax" not allowlisted` {
			t.Errorf("reason %q, message %q; want kubelet's SysctlForbidden", p.Status.Reason, p.Status.Message)
		}
	})

	t.Run("emptyDir over its sizeLimit evicts", func(t *testing.T) {
		p := c.waitPod(t, "fill", time.Minute, phase(corev1.PodFailed))
		const msg = `Usage of EmptyDir volume "data" exceeds the limit "1Mi". `
		if p.Status.Reason != "Evicted" || p.Status.Message != msg {
			t.Errorf("reason %q, message %q; want Evicted, %q", p.Status.Reason, p.Status.Message, msg)
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].RestartCount != 0 {
			t.Errorf("container after eviction: %+v", cs)
		}
		c.waitEvent(t, "fill", "Evicted", msg, 30*time.Second)
	})

	t.Run("memory emptyDir is a tmpfs of its sizeLimit", func(t *testing.T) {
		c.waitPod(t, "fill-mem", 2*time.Minute, done)
		if got := logOf(t, "fill-mem", "c"); got != "full\n1024\n" {
			t.Errorf("fill-mem: %q, want the write to fail on a 1024 KiB tmpfs", got)
		}
	})
}
