package harness_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
)

const busyboxRef = "docker.io/feather/busybox:test"

// TestControlPlaneAndContainerd starts the control plane and containerd,
// registers a Node with a node's identity, runs a busybox container through
// containerd, and then checks that stopping the harness leaves no process,
// mount or network link behind.
func TestControlPlaneAndContainerd(t *testing.T) {
	t.Parallel()
	linksBefore, err := leak.Links()
	if err != nil {
		t.Fatal(err)
	}
	env := harness.New(t)
	cp := env.StartControlPlane()
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("node", func(t *testing.T) { registerNode(ctx, t, cp) })
	t.Run("busybox", func(t *testing.T) { runBusybox(ctx, t, env, ctrd) })

	if err := env.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	procs, err := leak.Processes(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		t.Errorf("process %d still alive after Close: %s", p.Pid, p.Cmdline)
	}
	mounts, err := leak.Mounts(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts left after Close: %q", mounts)
	}
	added, err := leak.NewLinks(linksBefore)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) > 0 {
		t.Errorf("network links left after Close: %q", added)
	}
	if _, err := os.Stat(env.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close (stat: %v)", env.Dir, err)
	}
}

// registerNode registers a Node the way the agent will — virtual-kubelet's
// node controller with a node identity — and checks that the control plane
// holds that identity to its own Node, as a real cluster does.
func registerNode(ctx context.Context, t *testing.T, cp *harness.ControlPlane) {
	const name = "feather-harness"
	cfg, err := cp.NodeConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	nodeClient := kubernetes.NewForConfigOrDie(cfg)
	admin := kubernetes.NewForConfigOrDie(cp.Admin)

	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelOSStable:   "linux",
			corev1.LabelHostname:   name,
			"feather.dev/backends": "runc",
		}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "HarnessReady"}},
		},
	}
	nc, err := node.NewNodeController(node.NaiveNodeProvider{}, n, nodeClient.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(nodeClient.CoordinationV1().Leases(corev1.NamespaceNodeLease), 40))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	go func() { _ = nc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-nc.Done() })
	select {
	case <-nc.Ready():
	case <-nc.Done():
		t.Fatalf("node controller ended: %v", nc.Err())
	case <-ctx.Done():
		t.Fatal("node controller not ready before the deadline")
	}

	got, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node not registered: %v", err)
	}
	if got.Labels["feather.dev/backends"] != "runc" {
		t.Errorf("node labels = %v", got.Labels)
	}
	// The lease follows the Node, from the controller's own loop.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lease, err := admin.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != name {
			return false, fmt.Errorf("lease holder = %v, want %s", lease.Spec.HolderIdentity, name)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("node lease: %v", err)
	}

	// The Node authorizer keeps a node to its own object...
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}}
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node %s created Node someone-else: err = %v, want Forbidden", name, err)
	}
	// ...and NodeRestriction keeps it from giving itself a role.
	_, err = nodeClient.CoreV1().Nodes().Patch(ctx, name, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"node-role.kubernetes.io/agent":""}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("node %s set a node-role label: err = %v, want Forbidden", name, err)
	}
}

// runBusybox imports the harness's busybox image and runs a container that
// prints to stdout and exits with a code of its own.
func runBusybox(ctx context.Context, t *testing.T, env *harness.Env, ctrd *harness.Containerd) {
	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if err := harness.WriteBusyboxImage(tarball, busyboxRef); err != nil {
		t.Fatal(err)
	}
	ctx = namespaces.WithNamespace(ctx, "harness-test")
	imgs, err := ctrd.Import(ctx, "harness-test", tarball)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name() != busyboxRef {
		t.Fatalf("imported %v, want one image %s", imgs, busyboxRef)
	}
	c := ctrd.Client()
	ctr, err := c.NewContainer(ctx, "busybox",
		client.WithNewSnapshot("busybox-rootfs", imgs[0]),
		client.WithNewSpec(oci.WithImageConfig(imgs[0]),
			oci.WithProcessArgs("sh", "-c", `echo "hello from $(uname -s) $((6*7))"; echo oops >&2; exit 3`)))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
	if err != nil {
		t.Fatal(err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var status client.ExitStatus
	select {
	case status = <-exitCh:
	case <-ctx.Done():
		t.Fatal("busybox did not exit before the deadline")
	}
	code, _, err := status.Result()
	if err != nil {
		t.Fatal(err)
	}
	// Let the copy from the FIFOs reach EOF first: Delete cancels it.
	copied := make(chan struct{})
	go func() { task.IO().Wait(); close(copied) }()
	select {
	case <-copied:
	case <-ctx.Done():
		t.Fatal("container output not closed before the deadline")
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
	if got := stdout.String(); got != "hello from Linux 42\n" {
		t.Errorf("stdout = %q, want %q", got, "hello from Linux 42\n")
	}
	if got := stderr.String(); got != "oops\n" {
		t.Errorf("stderr = %q, want %q", got, "oops\n")
	}
	// A container left running is the harness's to clean up at Close.
	sleeper, err := c.NewContainer(ctx, "sleeper",
		client.WithNewSnapshot("sleeper-rootfs", imgs[0]),
		client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs("sleep", "600")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sleeper.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The container's process is tied to the tree (through its shim and its
	// root filesystem) from the moment it runs; poll, as it may still be
	// between runc's init and exec.
	var procs []leak.Proc
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		procs, err = leak.Processes(env.Dir)
		return err == nil && containsPid(procs, int(st.Pid())), err
	})
	if err != nil {
		t.Errorf("leak.Processes does not see the running container %d: %v: %+v", st.Pid(), err, procs)
	}
}

func containsPid(procs []leak.Proc, pid int) bool {
	for _, p := range procs {
		if p.Pid == pid {
			return true
		}
	}
	return false
}
