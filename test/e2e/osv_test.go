// Package e2e holds end-to-end tests that run Feather's components against
// the real ones the harness starts.
package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
)

const (
	osvRuntime = "io.containerd.osv.v1"
	directRef  = "docker.io/feather/testguest-direct:latest"
	diskRef    = "docker.io/feather/testguest-disk:latest"
	ns         = "osv-test"
)

// osvEnv starts containerd with the OSv shim on its PATH and imports the
// test guest's two images.
func osvEnv(t testing.TB) (*harness.Env, *harness.Containerd) {
	t.Helper()
	osvPrerequisites(t)
	env := harness.New(t)
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	importGuests(ctx, t, ctrd)
	return env, ctrd
}

// osvPrerequisites skips t (fails it under FEATHER_E2E=required) unless the
// shim, the test guest's images and QEMU are there.
func osvPrerequisites(t testing.TB) {
	t.Helper()
	harness.RequiresBin(t, "containerd-shim-osv-v1")
	for _, img := range []string{"testguest-direct", "testguest-disk"} {
		p := guestImage(t, img)
		_, err := os.Stat(p)
		harness.Prerequisite(t, err == nil, p+" not built: run `make guest`")
	}
	_, err := exec.LookPath("qemu-system-x86_64")
	harness.Prerequisite(t, err == nil, "qemu-system-x86_64 not found: run `make deps`")
}

// guestImage is the path of the test guest's image tarball name.
func guestImage(t testing.TB, name string) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "_output", "guest", name+".oci.tar")
}

// importGuests imports both test guest images into namespace ns.
func importGuests(ctx context.Context, t testing.TB, ctrd *harness.Containerd) {
	t.Helper()
	for _, img := range []string{"testguest-direct", "testguest-disk"} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", guestImage(t, img)); err != nil {
			t.Fatal(err)
		}
	}
}

// ctrRun runs `ctr run --rm --runtime io.containerd.osv.v1 ARGS…` and
// returns its output — stdout, then, if it failed, its error with stderr —
// and exit code.
func ctrRun(ctx context.Context, t *testing.T, ctrd *harness.Containerd, args ...string) (string, int) {
	t.Helper()
	out, err := ctrd.Ctr(ctx, append([]string{"-n", ns, "run", "--rm", "--runtime", osvRuntime}, args...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out + err.Error(), ee.ExitCode()
	default:
		t.Fatalf("ctr run: %v", err)
		return "", -1
	}
}

func TestOSvRun(t *testing.T) {
	env, ctrd := osvEnv(t)
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello from the host\n"), 0o644)
	config := t.TempDir()
	os.WriteFile(filepath.Join(config, "a.yaml"), nil, 0o644)
	os.WriteFile(filepath.Join(config, "b.yaml"), nil, 0o644)

	for _, img := range []struct{ name, ref string }{{"direct", directRef}, {"disk", diskRef}} {
		t.Run(img.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			id := func(s string) string { return img.name + "-" + s }

			out, code := ctrRun(ctx, t, ctrd, "--env", "GREETING=hi there", "--cwd", "/tmp", img.ref, id("args"), "/args", "x", "y z")
			for _, want := range []string{"arg[1]=x\n", "arg[2]=y z\n", "cwd=/tmp\n", "env GREETING=hi there\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("/args output lacks %q:\n%s", want, out)
				}
			}
			if code != 0 || strings.Contains(out, "\r") {
				t.Errorf("/args: exit %d, CR in output: %v", code, strings.Contains(out, "\r"))
			}

			out, code = ctrRun(ctx, t, ctrd, img.ref, id("exit"), "/exit", "7")
			if code != 7 {
				t.Errorf("/exit 7: exit code %d, output:\n%s", code, out)
			}

			out, code = ctrRun(ctx, t, ctrd,
				"--mount", "type=bind,src="+data+",dst=/data,options=rbind:ro",
				"--mount", "type=bind,src="+config+",dst=/config,options=rbind:ro",
				img.ref, id("mounts"), "/cat", "/data/hello.txt")
			if code != 0 || !strings.Contains(out, "hello from the host\n") {
				t.Errorf("/cat of a virtio-fs file: exit %d, output:\n%s", code, out)
			}
			out, code = ctrRun(ctx, t, ctrd,
				"--mount", "type=bind,src="+data+",dst=/data,options=rbind:ro",
				"--mount", "type=bind,src="+config+",dst=/config,options=rbind:ro",
				img.ref, id("ls"), "/ls", "/config")
			if code != 0 || !strings.Contains(out, "a.yaml\nb.yaml\n") {
				t.Errorf("/ls of the second share: exit %d, output:\n%s", code, out)
			}

			out, code = ctrRun(ctx, t, ctrd, "--memory-limit", strconv.Itoa(192<<20), img.ref, id("mem"), "/meminfo")
			kb := memTotal(out)
			if code != 0 || kb < 140<<10 || kb > 192<<10 {
				t.Errorf("with a 192 MiB limit the guest sees MemTotal %d kB (exit %d):\n%s", kb, code, out)
			}
		})
	}
	t.Cleanup(func() { assertNoLeaks(t, env) })
}

func memTotal(out string) int {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// assertNoLeaks closes env and checks that nothing of it is left.
func assertNoLeaks(t *testing.T, env *harness.Env) {
	t.Helper()
	if err := env.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	procs, err := leak.Processes(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		t.Errorf("left running: %d %s", p.Pid, p.Cmdline)
	}
}
