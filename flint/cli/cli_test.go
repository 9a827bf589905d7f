package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/inspect"
	"github.com/feather-edge/feather/flint/registry/registrytest"
	"github.com/feather-edge/feather/ocilayout"
)

const rawDisk = "../disk/testdata/raw.img"

// flint runs the CLI in this process; the content cache and docker config
// are the test's own.
func flint(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func mustFlint(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := flint(t, args...)
	if code != 0 {
		t.Fatalf("flint %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func isolate(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("FLINT_CACHE", filepath.Join(dir, "cache"))
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
	return dir
}

func report(t *testing.T, args ...string) inspect.Report {
	t.Helper()
	var r inspect.Report
	out := mustFlint(t, append([]string{"inspect", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("inspect -o json: %v\n%s", err, out)
	}
	return r
}

func TestPackInspectPushPull(t *testing.T) {
	dir := isolate(t)
	reg := registrytest.Start(t.Cleanup)
	tarball := filepath.Join(dir, "app.tar")
	d1 := strings.TrimSpace(mustFlint(t, "pack", rawDisk, "-t", "feather/app:v1", "-q", "-o", tarball, "--env", "B=2", "--label", "org.example=1"))
	d2 := strings.TrimSpace(mustFlint(t, "pack", rawDisk, "-t", "feather/app:v1", "-q", "-o", filepath.Join(dir, "again.tar"), "--env", "B=2", "--label", "org.example=1"))
	if d1 != d2 || !strings.HasPrefix(d1, "sha256:") {
		t.Fatalf("packing twice gave %q and %q", d1, d2)
	}
	r := report(t, tarball)
	if r.Digest.String() != d1 || r.Name != "docker.io/feather/app:v1" || r.Backend != "osv" || r.Runtime != "qemu" ||
		strings.Join(r.Cmd, "|") != "/hello.so|a|b c" || strings.Join(r.Env, " ") != "GREETING=hi B=2" ||
		r.Disk == nil || r.Disk.Format != "raw" || r.Disk.VirtualSize != 128<<10 || r.Kernel != nil || r.Labels["org.example"] != "1" {
		t.Errorf("inspect of the tarball: %+v", r)
	}
	text := mustFlint(t, "inspect", tarball)
	for _, want := range []string{"Backend:", "osv", "Disk:", "raw, virtual size 128.0 KiB", "Kernel:", "none"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect text lacks %q:\n%s", want, text)
		}
	}

	ref := reg.Host + "/feather/app:v1"
	out := mustFlint(t, "push", "--plain-http", tarball, ref)
	if !strings.Contains(out, "pushed "+ref+" "+d1) {
		t.Errorf("push output: %s", out)
	}
	if r := report(t, "--plain-http", ref); r.Digest.String() != d1 || r.Disk == nil {
		t.Errorf("inspect of the pushed image: %+v", r)
	}
	pulled := filepath.Join(dir, "pulled.tar")
	mustFlint(t, "pull", "--plain-http", ref, "-o", pulled)
	if r := report(t, pulled); r.Digest.String() != d1 {
		t.Errorf("pulled %s, pushed %s", r.Digest, d1)
	}
	// pack --push straight to the registry: the same image.
	ref2 := reg.Host + "/feather/app:v2"
	mustFlint(t, "pack", rawDisk, "-t", ref2, "--push", "--plain-http", "--env", "B=2", "--label", "org.example=1")
	if r := report(t, "--plain-http", ref2); r.Cmd == nil || r.Disk == nil || r.Labels["org.example"] != "1" {
		t.Errorf("inspect of pack --push: %+v", r)
	}

	unpacked := filepath.Join(dir, "rootfs")
	mustFlint(t, "unpack", "--plain-http", ref, unpacked)
	got, _ := os.ReadFile(filepath.Join(unpacked, "feather", "disk"))
	want, _ := os.ReadFile(rawDisk)
	if !bytes.Equal(got, want) {
		t.Error("the unpacked disk differs from the packed one")
	}
}

func TestCapstanImport(t *testing.T) {
	dir := isolate(t)
	out := filepath.Join(dir, "hello.tar")
	mustFlint(t, "capstan", "import", "--repo", "../capstan/testdata/repository", "cloudius/hello", "-t", "hello:v1", "-o", out)
	r := report(t, out)
	if r.Disk == nil || r.Disk.Format != "qcow2" || strings.Join(r.Cmd, "|") != "/hello.so|a|b c" ||
		r.Annotations[ocispec.AnnotationVersion] != "v0.57.0" || r.Annotations[ocispec.AnnotationDescription] != "OSv hello world" {
		t.Errorf("capstan import: %+v", r)
	}
}

// evilTar writes an OCI layout tarball whose layer holds name.
func evilTar(t *testing.T, path, name string) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "feather/disk", Typeflag: tar.TypeReg, Size: 512, Mode: 0o644})
	tw.Write(make([]byte, 512))
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 4, Mode: 0o644})
	tw.Write([]byte("evil"))
	tw.Close()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{Cmd: []string{"/x"}, Labels: map[string]string{"feather.backend": "osv"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer.Bytes())}}}
	if err := ocilayout.WriteFile(path, "example.com/evil:v1", cfg, [][]byte{layer.Bytes()}); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	dir := isolate(t)
	reg := registrytest.Start(t.Cleanup)
	reg.User, reg.Password = "edge", "s3cret"
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a disk\n"), 0o644)
	dotdot := filepath.Join(dir, "dotdot.tar")
	evilTar(t, dotdot, "../../evil")
	abs := filepath.Join(dir, "abs.tar")
	evilTar(t, abs, "/tmp/flint-evil")
	out := filepath.Join(dir, "out", "image.tar")
	os.MkdirAll(filepath.Dir(out), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"pack", filepath.Join(dir, "absent.img"), "-t", "a:v1", "-o", out}, "no such file"},
		{"not a disk image", []string{"pack", text, "-t", "a:v1", "-o", out}, "not a disk image"},
		{"unknown backend", []string{"pack", rawDisk, "--backend", "wasm", "-t", "a:v1", "-o", out}, `unknown backend`},
		{"no name", []string{"pack", rawDisk, "-o", out}, "-t"},
		{"nowhere", []string{"pack", rawDisk, "-t", "a:v1"}, "-o FILE, --push or --import"},
		{"registry refuses", []string{"pack", rawDisk, "-t", reg.Host + "/a:v1", "--push", "--plain-http", "-o", out, "--retries", "0"}, "401 Unauthorized"},
		{"push refused", []string{"push", "--plain-http", "--retries", "0", filepath.Join(dir, "absent.tar"), reg.Host + "/a:v1"}, "no such file"},
		{"inspect ../ in a layer", []string{"inspect", dotdot}, `climbs out`},
		{"inspect absolute path in a layer", []string{"inspect", abs}, "absolute path"},
		{"push ../ in a layer", []string{"push", "--plain-http", dotdot, reg.Host + "/evil:v1"}, "climbs out"},
		{"unpack ../ in a layer", []string{"unpack", dotdot, filepath.Join(dir, "out", "rootfs")}, "climbs out"},
		{"unpack absolute path in a layer", []string{"unpack", abs, filepath.Join(dir, "out", "rootfs")}, "absolute path"},
		{"not a tarball", []string{"inspect", text + ".tar"}, "no such file"},
		{"capstan image absent", []string{"capstan", "import", "--repo", dir, "nothere", "-t", "a:v1", "-o", out}, "no disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := flint(t, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "flint: ") {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, errOut, tc.want)
			}
			if strings.Contains(errOut, ": invalid argument\n") {
				t.Errorf("stderr ends with the errdefs category: %q", errOut)
			}
			if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
				t.Errorf("half-written: %v", left)
			}
			for _, p := range []string{filepath.Join(dir, "evil"), filepath.Join(dir, "..", "evil"), "/tmp/flint-evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
	// With the credentials in the docker config, the push goes through.
	os.MkdirAll(filepath.Join(dir, "docker"), 0o700)
	cfg := `{"auths":{"` + reg.Host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("edge:s3cret")) + `"}}}`
	os.WriteFile(filepath.Join(dir, "docker", "config.json"), []byte(cfg), 0o600)
	mustFlint(t, "pack", rawDisk, "-t", reg.Host+"/a:v1", "--push", "--plain-http")
}
