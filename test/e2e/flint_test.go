package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/schema"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/inspect"
	"github.com/feather-edge/feather/flint/registry/registrytest"
	"github.com/feather-edge/feather/ocilayout"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/vmimage"
)

// flintCLI is the flint binary, built once per test into its temp dir,
// with its content cache and docker config there too.
type flintCLI struct {
	bin, dir string
}

func buildFlint(t *testing.T) flintCLI {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := flintCLI{bin: filepath.Join(dir, "flint"), dir: dir}
	cmd := exec.Command("go", "build", "-o", f.bin, "./flint/cmd/flint")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build flint: %v\n%s", err, out)
	}
	return f
}

// run runs flint ARGS and returns stdout, stderr and the exit code.
func (f flintCLI) run(ctx context.Context, t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(os.Environ(), "FLINT_CACHE="+filepath.Join(f.dir, "cache"), "DOCKER_CONFIG="+filepath.Join(f.dir, "docker"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("flint %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

func (f flintCLI) must(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := f.run(ctx, t, args...)
	if code != 0 {
		t.Fatalf("flint %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (f flintCLI) inspect(ctx context.Context, t *testing.T, args ...string) inspect.Report {
	t.Helper()
	var r inspect.Report
	out := f.must(ctx, t, append([]string{"inspect", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("flint inspect -o json: %v\n%s", err, out)
	}
	return r
}

// guestFiles unpacks the test guest's images with flint unpack: the disk
// boot image's qcow2 disk, and the direct boot image's raw disk, kernel
// and initrd.
func guestFiles(ctx context.Context, t *testing.T, f flintCLI, dir string) (diskBoot, direct string) {
	t.Helper()
	diskBoot, direct = filepath.Join(dir, "disk"), filepath.Join(dir, "direct")
	f.must(ctx, t, "unpack", guestImage(t, "testguest-disk"), diskBoot)
	f.must(ctx, t, "unpack", guestImage(t, "testguest-direct"), direct)
	return diskBoot, direct
}

// TestFlint packs the test guest's disk (and, for direct boot, its kernel
// and initrd) with the flint binary, pushes it to a registry, removes
// everything local, pulls it with ctr through containerd and runs it with
// the OSv runtime; and imports one straight into containerd.
func TestFlint(t *testing.T) {
	osvPrerequisites(t)
	env := harness.New(t)
	reg := env.StartRegistry()
	f := buildFlint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	work := t.TempDir()
	diskDir, directDir := guestFiles(ctx, t, f, work)
	qcow := filepath.Join(diskDir, vmimage.DiskPath)
	diskRef := reg.Host + "/feather/flint-disk:v1"
	directRef := reg.Host + "/feather/flint-direct:v1"
	diskArgs := []string{"pack", qcow, "--cmd", "/hello", "--label", "org.example.app=hello"}
	directArgs := []string{"pack", filepath.Join(directDir, vmimage.DiskPath),
		"--kernel", filepath.Join(directDir, vmimage.KernelPath), "--initrd", filepath.Join(directDir, vmimage.InitrdPath),
		"--cmd", `/args x "y z"`, "--env", "GREETING=hi there", "--workdir", "/tmp"}

	// Pack to a tarball twice, then push: one digest.
	local := filepath.Join(work, "disk.tar")
	d1 := strings.TrimSpace(f.must(ctx, t, append(diskArgs, "-t", diskRef, "-q", "-o", local)...))
	d2 := strings.TrimSpace(f.must(ctx, t, append(diskArgs, "-t", diskRef, "-q", "-o", filepath.Join(work, "again.tar"))...))
	d3 := strings.TrimSpace(f.must(ctx, t, append(diskArgs, "-t", diskRef, "-q", "--push", "--plain-http")...))
	if d1 != d2 || d1 != d3 || !strings.HasPrefix(d1, "sha256:") {
		t.Fatalf("packing the same inputs gave digests %q, %q, %q", d1, d2, d3)
	}
	f.must(ctx, t, append(directArgs, "-t", directRef, "--push", "--plain-http")...)

	// inspect of the pushed images shows what was packed.
	want := f.inspect(ctx, t, local)
	got := f.inspect(ctx, t, "--plain-http", diskRef)
	want.Name, got.Name = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inspect of the pushed image differs from the packed tarball's:\npushed %+v\npacked %+v", got, want)
	}
	head := make([]byte, vmimage.HeadSize)
	src, err := os.Open(qcow)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.ReadFull(src, head)
	fi, _ := src.Stat()
	src.Close()
	info, err := vmimage.ProbeDisk(head[:n], fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest.String() != d1 || got.Backend != "osv" || got.Runtime != "qemu" || strings.Join(got.Cmd, " ") != "/hello" ||
		got.Disk == nil || got.Disk.DiskInfo != info || got.Disk.Size != fi.Size() || got.Kernel != nil ||
		got.Labels["org.example.app"] != "hello" || len(got.Layers) != 1 {
		t.Errorf("inspect %s = %+v; want disk %+v, %d bytes", diskRef, got, info, fi.Size())
	}
	dr := f.inspect(ctx, t, "--plain-http", directRef)
	if dr.Kernel == nil || dr.Kernel.Format != vmimage.KernelBzImage || dr.Initrd == nil || dr.Disk == nil ||
		dr.Disk.Format != vmimage.FormatRaw || strings.Join(dr.Cmd, "|") != "/args|x|y z" || dr.WorkingDir != "/tmp" ||
		strings.Join(dr.Env, ",") != "GREETING=hi there" || len(dr.Layers) != 2 {
		t.Errorf("inspect %s = %+v", directRef, dr)
	}
	text := f.must(ctx, t, "inspect", "--plain-http", "-q", directRef)
	for _, w := range []string{"Backend:", "osv", "Runtime:", "qemu", "Kernel:", "bzImage", "Disk:", "raw", "Layer 1:"} {
		if !strings.Contains(text, w) {
			t.Errorf("inspect text lacks %q:\n%s", w, text)
		}
	}
	validateRegistryManifest(t, reg.Host, "feather/flint-disk", "v1")

	// flint pull gives the same image back.
	pulled := filepath.Join(work, "pulled.tar")
	f.must(ctx, t, "pull", "--plain-http", diskRef, "-o", pulled)
	if r := f.inspect(ctx, t, pulled); r.Digest.String() != d1 {
		t.Errorf("flint pull: digest %s, pushed %s", r.Digest, d1)
	}

	// Remove everything local: the files packed, the tarballs, flint's
	// cache. The containerd below starts empty.
	for _, p := range []string{work, filepath.Join(f.dir, "cache")} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	t.Cleanup(func() { assertNoLeaks(t, env) })
	if out, err := ctrd.Ctr(ctx, "-n", ns, "image", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("containerd is not empty: %q, %v", out, err)
	}
	for _, ref := range []string{diskRef, directRef} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "pull", "--plain-http", ref); err != nil {
			t.Fatal(err)
		}
	}
	out, code := ctrRun(ctx, t, ctrd, diskRef, "flint-disk")
	if code != 0 || !strings.Contains(out, "hello from feather guest\n") {
		t.Errorf("ctr run %s: exit %d, output:\n%s", diskRef, code, out)
	}
	out, code = ctrRun(ctx, t, ctrd, directRef, "flint-direct")
	for _, w := range []string{"arg[0]=/args\n", "arg[1]=x\n", "arg[2]=y z\n", "cwd=/tmp\n", "env GREETING=hi there\n"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("ctr run %s: exit %d, output lacks %q:\n%s", directRef, code, w, out)
		}
	}

	// pack --import puts the image straight into containerd.
	work2 := t.TempDir()
	diskDir, _ = guestFiles(ctx, t, f, work2)
	importRef := "docker.io/feather/flint-import:v1"
	f.must(ctx, t, "pack", filepath.Join(diskDir, vmimage.DiskPath), "--cmd", "/exit 3", "-t", importRef,
		"--import", "--address", ctrd.Address, "--namespace", ns)
	if out, code := ctrRun(ctx, t, ctrd, importRef, "flint-import"); code != 3 {
		t.Errorf("ctr run %s: exit %d, want 3; output:\n%s", importRef, code, out)
	}
}

// validateRegistryManifest fetches a manifest and its config from the
// registry and validates them against the OCI image-spec JSON schemas.
func validateRegistryManifest(t *testing.T, host, repo, tag string) {
	t.Helper()
	get := func(path, accept string) []byte {
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return b
	}
	mb := get("/manifests/"+tag, ocispec.MediaTypeImageManifest)
	if err := schema.ValidatorMediaTypeManifest.Validate(bytes.NewReader(mb)); err != nil {
		t.Errorf("manifest does not validate: %v\n%s", err, mb)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	cb := get("/blobs/"+m.Config.Digest.String(), "*/*")
	if err := schema.ValidatorMediaTypeImageConfig.Validate(bytes.NewReader(cb)); err != nil {
		t.Errorf("config does not validate: %v\n%s", err, cb)
	}
}

// TestFlintBadInput: each bad input gets a clear message and a non-zero
// exit, and leaves no output behind.
func TestFlintBadInput(t *testing.T) {
	f := buildFlint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a disk image\n"), 0o644)
	disk := filepath.Join(dir, "disk.img")
	boot := make([]byte, 1<<20)
	boot[510], boot[511] = 0x55, 0xaa
	os.WriteFile(disk, boot, 0o644)
	// A registry that refuses: it wants credentials flint does not have.
	refusing := registrytest.Start(t.Cleanup)
	refusing.User, refusing.Password = "edge", "secret"
	dotdot := filepath.Join(dir, "dotdot.tar")
	writeEvilImage(t, dotdot, "../../flint-evil")
	abs := filepath.Join(dir, "abs.tar")
	writeEvilImage(t, abs, "/tmp/flint-evil")
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "image.tar")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"pack", filepath.Join(dir, "absent.img"), "--cmd", "/hello", "-t", "x:v1", "-o", out}, "no such file or directory"},
		{"not a disk image", []string{"pack", text, "--cmd", "/hello", "-t", "x:v1", "-o", out}, "not a disk image"},
		{"unknown backend", []string{"pack", disk, "--cmd", "/hello", "--backend", "wasm", "-t", "x:v1", "-o", out}, `feather.backend="wasm": unknown backend`},
		{"registry refuses the push (401)", []string{"pack", disk, "--cmd", "/hello", "-t", refusing.Host + "/feather/x:v1",
			"--push", "--plain-http", "--retries", "0", "-o", out}, "401 Unauthorized"},
		{"../ in a layer: inspect", []string{"inspect", dotdot}, `"../../flint-evil" climbs out`},
		{"../ in a layer: unpack", []string{"unpack", dotdot, filepath.Join(outDir, "rootfs")}, `"../../flint-evil" climbs out`},
		{"../ in a layer: push", []string{"push", "--plain-http", dotdot, refusing.Host + "/feather/evil:v1"}, "climbs out"},
		{"absolute path in a layer: unpack", []string{"unpack", abs, filepath.Join(outDir, "rootfs")}, `"/tmp/flint-evil" is an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := f.run(ctx, t, tc.args...)
			if code == 0 || !strings.Contains(stderr, "flint: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d; stderr %q; want non-zero and %q (stdout %q)", code, stderr, tc.want, stdout)
			}
			if left, _ := os.ReadDir(outDir); len(left) != 0 {
				t.Errorf("left behind in the output directory: %v", left)
			}
			for _, p := range []string{filepath.Join(filepath.Dir(dir), "flint-evil"), filepath.Join(dir, "flint-evil"), "/tmp/flint-evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

// writeEvilImage writes an OCI layout tarball of a would-be VM image whose
// layer also holds an entry named name.
func writeEvilImage(t *testing.T, path, name string) {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, e := range []struct{ name, content string }{{vmimage.DiskPath, string(make([]byte, 512))}, {name, "evil"}} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.content))})
		tw.Write([]byte(e.content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	config := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"/hello"}, Labels: vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels()},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer.Bytes())}},
	}
	if err := ocilayout.WriteFile(path, fmt.Sprintf("docker.io/feather/evil:%d", len(name)), config, [][]byte{layer.Bytes()}); err != nil {
		t.Fatal(err)
	}
}
