package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Cluster is a whole Feather cluster on this machine: a control plane, a
// containerd, a registry holding a container image and a unikernel image,
// and the agent registered as a Ready node, with RuntimeClass osv.
type Cluster struct {
	ControlPlane *ControlPlane
	Containerd   *Containerd
	// Snapshotter is Feather's snapshotter, which containerd reaches as
	// SnapshotterName and the agent uses for unikernel containers.
	Snapshotter *Snapshotter
	Registry    *Registry
	Agent       *Agent
	// DNS and KubeProxy run when ClusterOptions.Services is set, else nil.
	DNS       *DNS
	KubeProxy *KubeProxy
	// MetricsServer runs when ClusterOptions.Metrics is set, else nil.
	MetricsServer *MetricsServer
	// Kube is a cluster-admin client.
	Kube kubernetes.Interface
	// Busybox and Unikernel are image references in Registry: Debian's
	// static busybox, and the test guest (direct boot), which keeps OSv's
	// conventions and runs under the OSv runtime.
	Busybox, Unikernel string
}

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Agent configures the agent (its node name, extra flags).
	Agent AgentOptions
	// Services adds what Services need, as on a real cluster: kube-proxy for
	// the agent's node, and the cluster DNS (CoreDNS behind Service
	// kube-system/kube-dns, ClusterDNSIP) that the agent's pods resolve
	// through. kube-proxy owns the host's KUBE-* iptables chains, so only one
	// cluster of the host may have Services at a time.
	Services bool
	// Metrics adds metrics-server (APIService v1beta1.metrics.k8s.io), so
	// that `kubectl top` and HorizontalPodAutoscalers work.
	Metrics bool
}

// The local names the images are imported under, before they are tagged with
// the registry's host and pushed.
const (
	busyboxLocalRef   = "docker.io/feather/busybox:test"
	unikernelLocalRef = "docker.io/feather/testguest-direct:latest"
)

// StartCluster starts everything a pod needs on a Feather node — control
// plane, containerd, registry, the agent, and with opts.Services kube-proxy
// and the cluster DNS — pushes the two images to the
// registry and creates RuntimeClass osv (handler osv). It fails t if any of
// it fails, and skips it (fails it under FEATHER_E2E=required) where the OSv
// shim, the test guest image or QEMU is missing.
func (e *Env) StartCluster(opts ClusterOptions) *Cluster {
	e.t.Helper()
	RequiresBin(e.t, "containerd-shim-osv-v1")
	guest, err := GuestImage("testguest-direct")
	Prerequisite(e.t, err == nil, fmt.Sprint(err))
	_, err = exec.LookPath("qemu-system-x86_64")
	Prerequisite(e.t, err == nil, "qemu-system-x86_64 not found: run `make deps`")

	cp := e.StartControlPlane()
	sn := e.StartSnapshotter()
	ctrd := e.StartContainerd(ContainerdOptions{Snapshotter: sn})
	reg := e.StartRegistry()
	c := &Cluster{ControlPlane: cp, Containerd: ctrd, Snapshotter: sn, Registry: reg, Kube: kubernetes.NewForConfigOrDie(cp.Admin),
		Busybox: reg.Host + "/feather/busybox:test", Unikernel: reg.Host + "/feather/testguest-direct:test"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bb := filepath.Join(e.Dir, "busybox.oci.tar")
	if err := WriteBusyboxImage(bb, busyboxLocalRef); err != nil {
		e.t.Fatalf("harness: cluster: %v", err)
	}
	for _, img := range []struct{ tarball, local, remote string }{
		{bb, busyboxLocalRef, c.Busybox},
		{guest, unikernelLocalRef, c.Unikernel},
	} {
		if err := ctrd.Push(ctx, img.tarball, img.local, img.remote); err != nil {
			e.t.Fatalf("harness: cluster: %v", err)
		}
	}
	if opts.Services {
		if opts.Agent.Address == nil {
			opts.Agent.Address = e.NodeAddress()
		}
		c.DNS = e.StartDNS(cp, opts.Agent.Address.IP)
		opts.Agent.Args = append([]string{"--cluster-dns", ClusterDNSIP, "--cluster-domain", ClusterDomain}, opts.Agent.Args...)
	}
	c.Agent = e.StartAgent(cp, ctrd, opts.Agent)
	if opts.Metrics {
		// metrics-server scrapes the node at once: first the agent's
		// serving certificate (a CSR approved after the node is Ready) must
		// be there, so that its kubelet API answers.
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
			b, err := c.Kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", c.Agent.Name, "proxy", "healthz").DoRaw(ctx)
			return err == nil && string(b) == "ok", nil
		})
		if err != nil {
			e.t.Fatalf("harness: cluster: the agent's kubelet API does not answer /healthz: %v", err)
		}
		c.MetricsServer = e.StartMetricsServer(cp)
	}
	if opts.Services {
		c.KubeProxy = e.StartKubeProxy(cp, c.Agent.Name, c.Agent.Network.Subnet.String())
	}
	_, err = c.Kube.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "osv"}, Handler: "osv"}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("harness: cluster: create RuntimeClass osv: %v", err)
	}
	return c
}

// Push imports the OCI image layout tarball (holding the image local) into
// containerd namespace "push", tags it remote and pushes it over plain HTTP,
// as `ctr image import/tag/push --plain-http` do.
func (c *Containerd) Push(ctx context.Context, tarball, local, remote string) error {
	for _, args := range [][]string{
		{"image", "import", tarball},
		{"image", "tag", local, remote},
		{"image", "push", "--plain-http", remote},
	} {
		if _, err := c.Ctr(ctx, append([]string{"-n", "push"}, args...)...); err != nil {
			return fmt.Errorf("push %s as %s: %w", tarball, remote, err)
		}
	}
	return nil
}

// GuestImage returns the path of the test guest's image tarball name
// ("testguest-direct", "testguest-disk"), as `make guest` builds it; the
// error says to build it when it is missing.
func GuestImage(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "_output", "guest", name+".oci.tar")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not built: run `make guest`", p)
	}
	return p, nil
}

// PodSpec returns a pod spec of containers that tolerates the agent's taint
// (virtual-kubelet.io/provider) and stops fast (3 s grace period).
func PodSpec(containers ...corev1.Container) corev1.PodSpec {
	grace := int64(3)
	return corev1.PodSpec{
		Containers:                    containers,
		Tolerations:                   []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
		TerminationGracePeriodSeconds: &grace,
	}
}

// Deployment returns a Deployment named name of replicas pods with spec,
// labelled and selected by app=name.
func Deployment(name string, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}
