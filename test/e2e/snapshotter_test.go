package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
	"github.com/feather-edge/feather/vmimage"
)

// fillRef is the local name of the test guest packed with a big, empty
// disk (see writeFillImage).
const fillRef = "docker.io/feather/testguest-fill:test"

// pushFillImage pushes the test guest with a 160 MiB empty disk (room for
// /fill's 100 MiB) to the cluster's registry and returns its name there.
func pushFillImage(ctx context.Context, t *testing.T, c *cluster) string {
	t.Helper()
	remote := strings.SplitN(c.busybox, "/", 2)[0] + "/feather/testguest-fill:test"
	if err := c.ctrd.Push(ctx, writeFillImage(ctx, t, t.TempDir(), 160), fillRef, remote); err != nil {
		t.Fatal(err)
	}
	return remote
}

// writeFillImage writes into dir an image of the test guest (direct boot:
// its kernel and initramfs) whose disk is an empty qcow2 of diskMiB MiB —
// room for the guest's /fill — and returns the tarball's path.
func writeFillImage(ctx context.Context, t *testing.T, dir string, diskMiB int) string {
	t.Helper()
	tarball, _ := writeGuestImage(ctx, t, dir, fillRef, diskMiB, pack.DiskLayerTar)
	return tarball
}

// writeGuestImage writes into dir an image named ref of the test guest
// (direct boot: its kernel and initramfs, command /hello) whose disk is an
// empty qcow2 of diskMiB MiB, stored as diskLayer says (pack.DiskLayerTar,
// …QCOW2), and returns the tarball's path and the packed image (closed
// with the test).
func writeGuestImage(ctx context.Context, t *testing.T, dir, ref string, diskMiB int, diskLayer string) (string, *pack.Packed) {
	t.Helper()
	qemuImg := prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	guest := guestImage(t, "testguest-direct")
	img, err := image.OpenTar(ctx, guest, "", platforms.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	c, err := image.Read(ctx, img.Image)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{vmimage.KernelPath: filepath.Join(dir, "kernel"), vmimage.InitrdPath: filepath.Join(dir, "initrd")}
	if err := image.Walk(ctx, img.Image, c, func(e image.Entry) error {
		p, ok := files[e.Path]
		if !ok || e.Content == nil {
			return nil
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, e.Content)
		return errors.Join(err, f.Close())
	}); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", disk, strconv.Itoa(diskMiB)+"M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	p, err := pack.Pack(ctx, pack.Options{Disk: disk, Kernel: files[vmimage.KernelPath], Initrd: files[vmimage.InitrdPath], Cmd: "/hello",
		DiskLayer: diskLayer, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.Name = ref
	tarball := filepath.Join(dir, "image.oci.tar")
	if err := image.WriteTarFile(ctx, tarball, p.Image); err != nil {
		t.Fatal(err)
	}
	return tarball, p
}

// diskUsage is the bytes allocated under dir, as du counts them.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed meanwhile
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSnapshotterVMDisk runs a unikernel pod on the feather snapshotter:
// its container's snapshot is the snapshotter's, holding the instance disk
// the shim booted (the shim made none in its bundle); the 100 MiB its guest
// writes to its disk show in the snapshot's usage (ctr snapshots usage) and
// in the snapshotter's root, not in the task's bundle (under /run on a real
// node: RAM), also after the snapshotter was killed and started again;
// deleting the pod removes the snapshot and frees them.
func TestSnapshotterVMDisk(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	remote := pushFillImage(ctx, t, c)
	pod := newPod("uk-fill", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: remote, Args: []string{"/fill", "/dev/vda", "100"}})
	pod.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, pod)
	c.waitPod(t, "uk-fill", 4*time.Minute, phase(corev1.PodSucceeded))
	out, err := c.logs(ctx, "uk-fill", &corev1.PodLogOptions{})
	if err != nil || !strings.Contains(out, "wrote 100 MiB to /dev/vda") {
		t.Fatalf("uk-fill's log %q (%v): want the guest's fill done", out, err)
	}

	// A crash of the snapshotter loses nothing: containerd reaches the new
	// one on the same socket, and everything below reads its state.
	if err := c.sn.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	nsCtx := namespaces.WithNamespace(ctx, agentNS)
	ctrs, err := c.ctrd.Client().Containers(nsCtx)
	if err != nil || len(ctrs) != 1 {
		t.Fatalf("containers %v (%v), want uk-fill's one", ctrs, err)
	}
	info, err := ctrs[0].Info(nsCtx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Snapshotter != harness.SnapshotterName {
		t.Fatalf("uk-fill's container is on snapshotter %q, want %q", info.Snapshotter, harness.SnapshotterName)
	}
	sn := c.ctrd.Client().SnapshotService(info.Snapshotter)
	mounts, err := sn.Mounts(nsCtx, info.SnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || !strings.Contains(strings.Join(mounts[0].Options, ","), "upperdir="+c.sn.Root) {
		t.Errorf("the snapshot's mounts %+v are not under the snapshotter's root %s", mounts, c.sn.Root)
	}
	// ctr snapshots usage, as an operator reads it.
	usage, err := c.ctrd.Ctr(ctx, "--namespace", agentNS, "snapshots", "--snapshotter", harness.SnapshotterName, "usage", info.SnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	u, err := sn.Usage(nsCtx, info.SnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ctr snapshots usage:\n%s", usage)
	if u.Size < 100<<20 || u.Size > 110<<20 {
		t.Errorf("the snapshot's usage is %d bytes after the guest wrote 100 MiB", u.Size)
	}
	full := diskUsage(t, c.sn.Root)
	bundles, _ := filepath.Glob(filepath.Join(c.ctrd.Dir, "state", "io.containerd.runtime.v2.task", agentNS, "*"))
	for _, b := range bundles {
		if n := diskUsage(t, b); n > 10<<20 {
			t.Errorf("the task's bundle %s holds %d bytes: the VM's writes went there", b, n)
		}
		if ds, _ := filepath.Glob(filepath.Join(b, "*", "disk.qcow2")); len(ds) > 0 {
			t.Errorf("the shim made its own instance disk %v beside the snapshotter's", ds)
		}
	}

	if err := c.kube.CoreV1().Pods("default").Delete(ctx, "uk-fill", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "uk-fill's container gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		return len(c.containers(ctx, t)) == 0, nil
	})
	if _, err := sn.Stat(nsCtx, info.SnapshotKey); !errdefs.IsNotFound(err) {
		t.Errorf("the deleted pod's snapshot is still there: Stat = %v", err)
	}
	// containerd removes the snapshot from the snapshotter in its garbage
	// collection, soon after.
	var last string
	waitFor(t, "the deleted pod's 100 MiB freed in the snapshotter's root", time.Minute, func(context.Context) (bool, error) {
		freed := full - diskUsage(t, c.sn.Root)
		last = fmt.Sprintf("%d bytes freed", freed)
		return freed >= 100<<20, nil
	}, &last)
}

// onSnapshotter checks that the agent's want containers are all on the
// feather snapshotter, each snapshot holding its instance disk.
func (c *cluster) onSnapshotter(ctx context.Context, t *testing.T, want int) {
	t.Helper()
	nsCtx := namespaces.WithNamespace(ctx, agentNS)
	ctrs, err := c.ctrd.Client().Containers(nsCtx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != want {
		t.Errorf("the agent has %d containers, want %d", len(ctrs), want)
	}
	for _, ctr := range ctrs {
		info, err := ctr.Info(nsCtx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Snapshotter != harness.SnapshotterName {
			t.Errorf("container %s is on snapshotter %q, want %q", info.ID, info.Snapshotter, harness.SnapshotterName)
			continue
		}
		mounts, err := c.ctrd.Client().SnapshotService(info.Snapshotter).Mounts(nsCtx, info.SnapshotKey)
		if err != nil {
			t.Fatal(err)
		}
		upper := ""
		for _, m := range mounts {
			for _, o := range m.Options {
				if v, ok := strings.CutPrefix(o, "upperdir="); ok {
					upper = v
				}
			}
		}
		if _, err := os.Stat(filepath.Join(upper, vmimage.InstanceDiskPath)); upper == "" || err != nil {
			t.Errorf("container %s's snapshot (upper dir %q) has no instance disk: %v", info.ID, upper, err)
		}
	}
}

// TestSnapshotterCtr runs the test guest under `ctr run --snapshotter
// feather --runtime io.containerd.osv.v1`, in both boot modes, on images
// imported for the feather snapshotter: the guest runs from the instance
// disk in its container's snapshot, which `ctr run --rm` removes after.
func TestSnapshotterCtr(t *testing.T) {
	osvPrerequisites(t)
	env := harness.New(t)
	sn := env.StartSnapshotter()
	ctrd := env.StartContainerd(harness.ContainerdOptions{Snapshotter: sn})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, img := range []string{"testguest-direct", "testguest-disk"} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", "--snapshotter", harness.SnapshotterName, guestImage(t, img)); err != nil {
			t.Fatal(err)
		}
	}
	nsCtx := namespaces.WithNamespace(ctx, ns)
	snapshots := ctrd.Client().SnapshotService(harness.SnapshotterName)
	for _, img := range []struct{ name, ref string }{{"direct", directRef}, {"disk", diskRef}} {
		t.Run(img.name, func(t *testing.T) {
			id := "sn-" + img.name
			out, code := ctrRun(ctx, t, ctrd, "--snapshotter", harness.SnapshotterName, img.ref, id, "/hello")
			if code != 0 || !strings.Contains(out, "hello from feather guest\n") {
				t.Fatalf("ctr run /hello: exit %d, output:\n%s", code, out)
			}
			if _, err := snapshots.Stat(nsCtx, id); !errdefs.IsNotFound(err) {
				t.Errorf("ctr run --rm left the container's snapshot: Stat = %v", err)
			}

			// Kept (no --rm): its snapshot holds the instance disk.
			out, err := ctrd.Ctr(ctx, "-n", ns, "run", "--snapshotter", harness.SnapshotterName, "--runtime", osvRuntime, img.ref, id+"-kept", "/hello")
			if err != nil || !strings.Contains(out, "hello from feather guest\n") {
				t.Fatalf("ctr run /hello: %v, output:\n%s", err, out)
			}
			mounts, err := snapshots.Mounts(nsCtx, id+"-kept")
			if err != nil {
				t.Fatal(err)
			}
			upper := ""
			for _, o := range mounts[0].Options {
				if v, ok := strings.CutPrefix(o, "upperdir="); ok {
					upper = v
				}
			}
			if _, err := os.Stat(filepath.Join(upper, vmimage.InstanceDiskPath)); upper == "" || err != nil || !strings.HasPrefix(upper, sn.Root) {
				t.Errorf("the kept container's snapshot (upper dir %q) holds no instance disk: %v", upper, err)
			}
		})
	}
}

// TestSnapshotterEphemeralStorage: a unikernel whose guest writes 100 MiB
// to its disk is evicted, as kubelet evicts a container, when its
// ephemeral-storage limit is 50Mi (phase Failed, reason Evicted, kubelet's
// message, its VM stopped), and keeps running under a 200Mi limit.
func TestSnapshotterEphemeralStorage(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	remote := pushFillImage(ctx, t, c)
	limited := func(name, limit string) *corev1.Pod {
		p := newPod(name, corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: remote, Args: []string{"/fill", "/dev/vda", "100", "-1"},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(limit)}}})
		p.Spec.RuntimeClassName = ptrTo("osv")
		return p
	}
	c.create(ctx, t, limited("over", "50Mi"), limited("under", "200Mi"))
	for _, name := range []string{"over", "under"} {
		waitFor(t, name+"'s guest to write its 100 MiB", 3*time.Minute, func(ctx context.Context) (bool, error) {
			out, err := c.logs(ctx, name, &corev1.PodLogOptions{})
			return err == nil && strings.Contains(out, "wrote 100 MiB to /dev/vda"), nil
		})
	}
	p := c.waitPod(t, "over", time.Minute, phase(corev1.PodFailed))
	want := `Container c exceeded its local ephemeral storage limit "50Mi". `
	if p.Status.Reason != "Evicted" || p.Status.Message != want {
		t.Errorf("over's status: reason %q, message %q; want Evicted, %q", p.Status.Reason, p.Status.Message, want)
	}
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Errorf("over's container %+v: want terminated", p.Status.ContainerStatuses)
	}
	// Another period of the check: the pod under its limit runs on.
	var last string
	waitFor(t, "under to run through two storage checks", time.Minute, func(ctx context.Context) (bool, error) {
		u := c.pod(ctx, t, "under")
		last = string(u.Status.Phase) + " " + u.Status.Reason
		if u.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("under is %s", last)
		}
		st := u.Status.ContainerStatuses
		return len(st) == 1 && st[0].State.Running != nil && time.Since(st[0].State.Running.StartedAt.Time) > 25*time.Second, nil
	}, &last)
}

// TestSnapshotterSurvival runs a VM on the feather snapshotter and, while
// it runs, kills the snapshotter (SIGKILL) and starts it again, then
// restarts containerd: the VM keeps running (the same QEMU, its task
// RUNNING), its snapshot and the 20 MiB its guest wrote are still there.
// `ctr snapshots rm` of it then leaves the VM running on its disk (the
// restarted snapshotter refuses containerd's removal while the VM has the
// disk open); once the VM is killed (exit 137), the snapshotter removes the
// snapshot itself, the 20 MiB go and nothing is left.
func TestSnapshotterSurvival(t *testing.T) {
	osvPrerequisites(t)
	env := harness.New(t)
	sn := env.StartSnapshotter()
	ctrd := env.StartContainerd(harness.ContainerdOptions{Snapshotter: sn})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", "--snapshotter", harness.SnapshotterName, writeFillImage(ctx, t, t.TempDir(), 64)); err != nil {
		t.Fatal(err)
	}
	const id = "sn-survivor"
	if _, err := ctrd.Ctr(ctx, "-n", ns, "run", "-d", "--snapshotter", harness.SnapshotterName, "--runtime", osvRuntime, fillRef, id, "/fill", "/dev/vda", "20", "-1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What containerd's garbage collection and the snapshotter said.
		for _, f := range []string{ctrd.LogFile(), filepath.Join(sn.Dir, "snapshotter.log")} {
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "snapshot") && (strings.Contains(l, "remov") || strings.Contains(l, "garbage") || strings.Contains(l, "level=warn")) {
					t.Logf("%s: %s", filepath.Base(f), l)
				}
			}
		}
	})
	nsCtx := namespaces.WithNamespace(ctx, ns)
	waitStatus(nsCtx, t, loadTask(nsCtx, t, ctrd, id), client.Running)
	// usage is the snapshot's usage, through containerd, as ctr shows it.
	usage := func() (snapshots.Usage, error) {
		return ctrd.Client().SnapshotService(harness.SnapshotterName).Usage(nsCtx, id)
	}
	var last string
	waitFor(t, "the guest's 20 MiB in its snapshot", 2*time.Minute, func(context.Context) (bool, error) {
		u, err := usage()
		last = fmt.Sprintf("%+v (%v)", u, err)
		return err == nil && u.Size >= 20<<20, nil
	}, &last)
	qemus := func() []int {
		procs, err := leak.Processes(env.Dir)
		if err != nil {
			t.Fatal(err)
		}
		var pids []int
		for _, p := range procs {
			if strings.Contains(p.Cmdline, "qemu-system") {
				pids = append(pids, p.Pid)
			}
		}
		return pids
	}
	vm := qemus()
	if len(vm) != 1 {
		t.Fatalf("QEMU processes %v, want the survivor's one", vm)
	}
	before, _ := usage()

	if err := sn.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctrd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	nsCtx = namespaces.WithNamespace(ctx, ns) // the same namespace on the new client
	out, err := ctrd.Ctr(ctx, "-n", ns, "task", "ls")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "RUNNING") {
		t.Fatalf("after the snapshotter's and containerd's restarts, ctr task ls = %q (%v), want %s RUNNING", out, err, id)
	}
	if now := qemus(); !slices.Equal(now, vm) {
		t.Errorf("QEMU processes %v after the restarts, want the same %v", now, vm)
	}
	after, err := usage()
	if err != nil || after.Size < before.Size {
		t.Errorf("the snapshot's usage after the restarts: %+v (%v), before %+v", after, err, before)
	}
	// Removed under the running VM, as a user may: containerd drops it from
	// its metadata at once and asks the (restarted) snapshotter in its
	// garbage collection, which refuses while the VM has the disk open.
	if _, err := ctrd.Ctr(ctx, "-n", ns, "snapshots", "--snapshotter", harness.SnapshotterName, "rm", id); err != nil {
		t.Fatalf("ctr snapshots rm of the running VM's snapshot: %v", err)
	}
	waitFor(t, "containerd's garbage collection to ask the snapshotter, and be refused", time.Minute, func(context.Context) (bool, error) {
		b, err := os.ReadFile(ctrd.LogFile())
		return err == nil && strings.Contains(string(b), "in use by a running VM; it is removed when the VM stops"), err
	})
	if got := qemus(); !slices.Equal(got, vm) {
		t.Errorf("QEMU processes %v after its snapshot's removal was asked, want the same %v", got, vm)
	}
	if st, err := loadTask(nsCtx, t, ctrd, id).Status(nsCtx); err != nil || st.Status != client.Running {
		t.Errorf("the VM's task after its snapshot's removal was asked: %+v (%v), want running", st, err)
	}

	full := diskUsage(t, sn.Root)
	task := loadTask(nsCtx, t, ctrd, id)
	exitCh, err := task.Wait(nsCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(nsCtx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exitCh:
		if st.ExitCode() != 137 {
			t.Errorf("exit after SIGKILL = %d, want 137", st.ExitCode())
		}
	case <-ctx.Done():
		t.Fatal("no exit after SIGKILL")
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "task", "delete", id); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "containers", "delete", id); err != nil {
		t.Fatal(err)
	}
	// The snapshotter finishes the removal once the VM has gone.
	waitFor(t, "the VM's 20 MiB freed in the snapshotter's root", time.Minute, func(context.Context) (bool, error) {
		freed := full - diskUsage(t, sn.Root)
		last = fmt.Sprintf("%d bytes freed", freed)
		return freed >= 20<<20, nil
	}, &last)
	assertNoLeaks(t, env)
}
