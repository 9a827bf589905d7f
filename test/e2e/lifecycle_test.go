package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/ocilayout"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/vmimage"
)

// TestOSvLifecycle runs a VM in the background and drives it with ctr:
// metrics, pause, resume, and a kill that ends it with 143.
func TestOSvLifecycle(t *testing.T) {
	env, ctrd := osvEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctr := func(args ...string) string {
		t.Helper()
		out, err := ctrd.Ctr(ctx, append([]string{"-n", ns}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	nctx := namespaces.WithNamespace(ctx, ns)
	task := runDetached(nctx, t, ctrd, "life")

	metrics := ctr("task", "metrics", "life")
	for _, name := range []string{"memory.usage_in_bytes", "cpuacct.usage"} {
		if v := metricValue(metrics, name); v <= 0 {
			t.Errorf("metric %s = %d, want > 0:\n%s", name, v, metrics)
		}
	}

	ctr("task", "pause", "life")
	waitStatus(nctx, t, task, client.Paused)
	ctr("task", "resume", "life")
	waitStatus(nctx, t, task, client.Running)

	exitCh, err := task.Wait(nctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctr("task", "kill", "life")
	select {
	case st := <-exitCh:
		if st.ExitCode() != 143 {
			t.Errorf("exit code after SIGTERM = %d, want 143", st.ExitCode())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the VM did not exit within 10 s of SIGTERM")
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start))
	ctr("task", "delete", "life")
	ctr("container", "delete", "life")
	assertNoLeaks(t, env)
}

// runDetached starts `/sleep 600` in the direct-boot image as a background
// VM (ctr run -d) and returns its task once it runs.
func runDetached(ctx context.Context, t *testing.T, ctrd *harness.Containerd, id string) client.Task {
	t.Helper()
	if _, err := ctrd.Ctr(ctx, "-n", ns, "run", "-d", "--runtime", osvRuntime, directRef, id, "/sleep", "600"); err != nil {
		t.Fatal(err)
	}
	task := loadTask(ctx, t, ctrd, id)
	waitStatus(ctx, t, task, client.Running)
	return task
}

// loadTask returns the task of container id; ctx carries the namespace.
func loadTask(ctx context.Context, t *testing.T, ctrd *harness.Containerd, id string) client.Task {
	t.Helper()
	c, err := ctrd.Client().LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func waitStatus(ctx context.Context, t *testing.T, task client.Task, want client.ProcessStatus) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := task.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task status %s, want %s", st.Status, want)
		}
		time.Sleep(100 * time.Millisecond) // polling containerd's state; ctr has no watch for it
	}
}

// metricValue reads "NAME VALUE" from ctr task metrics' table.
func metricValue(table, name string) int64 {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

// TestOSvBadInput checks that what cannot run fails with a clear error from
// ctr and leaves nothing behind.
func TestOSvBadInput(t *testing.T) {
	env, ctrd := osvEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	images := map[string]string{ // ref → tarball
		"docker.io/feather/busybox:test": filepath.Join(dir, "busybox.tar"),
	}
	if err := harness.WriteBusyboxImage(images["docker.io/feather/busybox:test"], "docker.io/feather/busybox:test"); err != nil {
		t.Fatal(err)
	}
	for ref, img := range map[string]struct {
		labels map[string]string
		disk   []byte
	}{
		"docker.io/feather/wasm:test":    {map[string]string{vmimage.LabelBackend: "wasm"}, bootSector()},
		"docker.io/feather/firecr:test":  {map[string]string{vmimage.LabelBackend: "osv", vmimage.LabelRuntime: "firecracker"}, bootSector()},
		"docker.io/feather/corrupt:test": {vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels(), bytes.Repeat([]byte{0xab}, 1<<20)},
		"docker.io/feather/nodisk:test":  {vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels(), nil},
	} {
		p := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		if err := writeVMImage(p, ref, img.labels, img.disk); err != nil {
			t.Fatal(err)
		}
		images[ref] = p
	}
	for _, p := range images {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", p); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("a", 4000)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no disk", []string{"docker.io/feather/nodisk:test", "bad-nodisk", "/x"}, "no VM disk"},
		{"unknown backend", []string{"docker.io/feather/wasm:test", "bad-backend", "/x"}, "unknown backend"},
		{"unknown runtime", []string{"docker.io/feather/firecr:test", "bad-runtime", "/x"}, "unknown runtime"},
		{"command line too long", []string{directRef, "bad-long", "/args", long}, "over the limit"},
		{"corrupt disk", []string{"docker.io/feather/corrupt:test", "bad-corrupt", "/x"}, "did not power off cleanly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := ctrRun(ctx, t, ctrd, tc.args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("ctr run: exit %d, output lacks %q:\n%s", code, tc.want, out)
			}
		})
	}
	// An image that is no VM image runs as a container, through runc.
	if out, code := ctrRun(ctx, t, ctrd, "docker.io/feather/busybox:test", "container", "/bin/echo", "hello from runc"); code != 0 || out != "hello from runc\n" {
		t.Errorf("busybox under the OSv runtime: exit %d, output %q", code, out)
	}
	out, err := ctrd.Ctr(ctx, "-n", ns, "container", "ls", "-q")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %q (%v)", out, err)
	}
	assertNoLeaks(t, env)
}

// TestOSvNoQEMU runs a VM with qemu-system-x86_64 missing from the shim's
// PATH (the rest of QEMU's tools are there): ctr must name the binary and
// the package to install, and nothing may be left.
func TestOSvNoQEMU(t *testing.T) {
	osvPrerequisites(t)
	tools := t.TempDir()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	env := harness.New(t)
	ctrd := env.StartContainerd(harness.ContainerdOptions{HostPath: tools})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	importGuests(ctx, t, ctrd)
	out, code := ctrRun(ctx, t, ctrd, directRef, "noqemu", "/hello")
	t.Logf("ctr run: exit %d: %s", code, out)
	for _, want := range []string{"qemu-system-x86_64 not found", "qemu-system-x86"} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("ctr run: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if out, err := ctrd.Ctr(ctx, "-n", ns, "container", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %q (%v)", out, err)
	}
	assertNoLeaks(t, env)
}

// bootSector is a raw disk that is nothing but an empty MBR.
func bootSector() []byte {
	b := make([]byte, 4096)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// writeVMImage writes an image with disk at vmimage.DiskPath (none if
// disk is nil) and labels.
func writeVMImage(path, ref string, labels map[string]string, disk []byte) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "feather/", Mode: 0o755, ModTime: ocilayout.Epoch})
	if disk != nil {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: vmimage.DiskPath, Mode: 0o644, Size: int64(len(disk)), ModTime: ocilayout.Epoch})
		tw.Write(disk)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Labels: labels, Cmd: []string{"/x"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer.Bytes())}},
	}
	return ocilayout.WriteFile(path, ref, cfg, [][]byte{layer.Bytes()})
}
