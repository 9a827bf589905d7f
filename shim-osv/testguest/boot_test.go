package testguest_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/shim-osv/testguest/build"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/vmimage"
)

// bootTimeout bounds one boot under TCG, from QEMU's start to its exit.
const bootTimeout = 60 * time.Second

// TestBoot boots the test guest images that `make guest` built under QEMU
// TCG (nested KVM hangs on the CI machines) in both of OSv's boot modes and
// checks the console.
func TestBoot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		image string
		// args returns QEMU's boot arguments for the image's files in dir.
		args func(t *testing.T, dir string) []string
		want []string
	}{
		{
			name:  "direct",
			image: build.DirectFile,
			args: func(t *testing.T, dir string) []string {
				return directArgs(dir, `--env=A=1 --cwd=/tmp /args x "y z"`)
			},
			want: []string{"arg[0]=/args", "arg[1]=x", "arg[2]=y z", "cwd=/tmp", "env A=1", "program /args returned 0"},
		},
		{
			name:  "direct-sequence",
			image: build.DirectFile,
			args: func(t *testing.T, dir string) []string {
				return directArgs(dir, `--env=PATH=/ /nope; hello; /exit 3`)
			},
			want: []string{
				"Failed to load object: /nope", "program /nope returned 1",
				"hello from feather guest", "program hello returned 0",
				"program /exit returned 3",
			},
		},
		{
			name:  "disk",
			image: build.DiskFile,
			args: func(t *testing.T, dir string) []string {
				overlay := diskOverlay(t, dir, "/exit 7")
				return []string{"-drive", "file=" + overlay + ",format=qcow2,if=virtio"}
			},
			want: []string{"program /exit returned 7"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, err := exec.LookPath("qemu-system-x86_64")
			harness.Prerequisite(t, err == nil, "qemu-system-x86_64 not found: run `make deps`")
			dir := t.TempDir()
			extract(t, tc.image, dir)
			b := boot(t, qemu, tc.args(t, dir))
			lines := b.lines()
			if !hasInOrder(lines, tc.want) {
				t.Fatalf("console lacks, in order,\n  %s\nconsole:\n%s", strings.Join(tc.want, "\n  "), b.text())
			}
			t.Logf("first console line %v after QEMU started; QEMU exited after %v", b.first, b.total)
		})
	}
}

// directArgs boots the direct image's kernel and initrd in dir with cmdline.
func directArgs(dir, cmdline string) []string {
	return []string{
		"-kernel", filepath.Join(dir, vmimage.KernelPath),
		"-initrd", filepath.Join(dir, vmimage.InitrdPath),
		"-append", cmdline,
		"-drive", "file=" + filepath.Join(dir, vmimage.DiskPath) + ",format=raw,if=virtio,readonly=on",
	}
}

// diskOverlay makes a qcow2 overlay over the disk image in dir with cmdline
// at byte 512, as the shim does, and returns its path.
func diskOverlay(t *testing.T, dir, cmdline string) string {
	t.Helper()
	base := filepath.Join(dir, vmimage.DiskPath)
	overlay := filepath.Join(dir, "overlay.qcow2")
	sector := filepath.Join(dir, "cmdline")
	b := make([]byte, 512)
	copy(b, cmdline) // NUL-terminated by the zeros after it
	if err := os.WriteFile(sector, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay},
		{"qemu-io", "-f", "qcow2", "-c", "write -s " + sector + " 512 512", overlay},
	} {
		_, err := exec.LookPath(argv[0])
		harness.Prerequisite(t, err == nil, argv[0]+" not found: run `make deps`")
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	return overlay
}

// extract writes the files of the VM image tarball `make guest` built
// (feather/kernel, …) under dir.
func extract(t *testing.T, image, dir string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "_output", "guest", image)
	_, err = os.Stat(path)
	harness.Prerequisite(t, err == nil, fmt.Sprintf("test guest image %s not built: run `make guest`", path))
	blobs, err := readTar(path)
	if err != nil {
		t.Fatal(err)
	}
	var index ocispec.Index
	var manifest ocispec.Manifest
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("%s: index.json: want one manifest, got %d (%v)", path, len(index.Manifests), err)
	}
	blob := func(d ocispec.Descriptor) []byte { return blobs["blobs/sha256/"+d.Digest.Encoded()] }
	if err := json.Unmarshal(blob(index.Manifests[0]), &manifest); err != nil {
		t.Fatalf("%s: manifest: %v", path, err)
	}
	for _, l := range manifest.Layers {
		files, err := readTarBytes(blob(l))
		if err != nil {
			t.Fatalf("%s: layer %s: %v", path, l.Digest, err)
		}
		for name, b := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := vmimage.Find(dir); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readTar(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return readTarBytes(b)
}

// readTarBytes returns the regular files of a tar archive by name.
func readTarBytes(b []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			return nil, err
		}
	}
}

// bootResult is a finished boot: its console and timings.
type bootResult struct {
	console []byte
	// first is when the first console line arrived, total when QEMU
	// exited, both from QEMU's start.
	first, total time.Duration
}

func (b *bootResult) text() string {
	return strings.ReplaceAll(string(b.console), "\r\n", "\n")
}

func (b *bootResult) lines() []string { return strings.Split(b.text(), "\n") }

// boot runs QEMU under TCG with the guest's serial console on its stdout
// until it exits, which must be with status 0 (the guest powered off)
// within bootTimeout.
func boot(t *testing.T, qemu string, args []string) *bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	t.Cleanup(cancel)
	argv := append([]string{"-accel", "tcg", "-M", "pc", "-m", "256M", "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio"}, args...)
	cmd := exec.CommandContext(ctx, qemu, argv...)
	con := &console{}
	cmd.Stdout = con
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // no-op once it exited
	err := cmd.Wait()
	res := &bootResult{console: con.bytes(), total: time.Since(start)}
	if !con.firstAt.IsZero() {
		res.first = con.firstAt.Sub(start)
	}
	if ctx.Err() != nil {
		t.Fatalf("qemu did not exit within %v (guest hung?)\nconsole:\n%s\nqemu stderr: %s", bootTimeout, res.text(), stderr.String())
	}
	if err != nil {
		t.Fatalf("qemu %s: %v (want exit 0: the guest powers off)\nconsole:\n%s\nqemu stderr: %s", strings.Join(argv, " "), err, res.text(), stderr.String())
	}
	return res
}

// console collects QEMU's serial output and notes when the first line
// was complete.
type console struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	firstAt time.Time
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.firstAt.IsZero() && bytes.IndexByte(c.buf.Bytes(), '\n') >= 0 {
		c.firstAt = time.Now()
	}
	return len(p), nil
}

func (c *console) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// hasInOrder reports whether want appear as lines of lines, in order.
func hasInOrder(lines, want []string) bool {
	i := 0
	for _, l := range lines {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	return i == len(want)
}
