package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/vmimage"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// TestCreateInstanceDisk creates disk-boot VMs on a root filesystem with
// and without the snapshotter's instance disk: with one, the VM boots it
// (the command line is written into it, nothing is made in the bundle, and
// Delete leaves it to its snapshot); without, the shim makes its own overlay
// in the bundle. The image's disk never changes.
func TestCreateInstanceDisk(t *testing.T) {
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	prereq.Program(t, "qemu-io", "install Debian package qemu-utils")
	for _, tc := range []struct {
		name     string
		instance bool
	}{
		{"snapshotter's instance disk", true},
		{"no instance disk: the shim's own", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs, bundle := t.TempDir(), t.TempDir()
			base := filepath.Join(rootfs, vmimage.DiskPath)
			os.MkdirAll(filepath.Dir(base), 0o755)
			baseBytes := bytes.Repeat([]byte{0xee}, 1<<20)
			if err := os.WriteFile(base, baseBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			inst := filepath.Join(rootfs, vmimage.InstanceDiskPath)
			if tc.instance {
				if err := qcow2.CreateOverlay(inst, base, vmimage.FormatRaw); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			v, err := Create(ctx, Config{ID: "vm1", Bundle: bundle, Rootfs: rootfs, Accel: qemu.TCG, Stdout: &output{},
				Spec: &specs.Spec{Process: &specs.Process{Args: []string{"/hello"}, Cwd: "/"}}})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			own := filepath.Join(bundle, Dir, "disk.qcow2")
			want := own
			if tc.instance {
				want = inst
			}
			if v.disk != want {
				t.Errorf("the VM boots %s, want %s", v.disk, want)
			}
			if _, err := os.Stat(own); tc.instance && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("with the snapshotter's disk, the shim made its own too (%v)", err)
			}
			img, err := qcow2.Open(want)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 1024)
			_, err = img.ReadAt(got, 0)
			img.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:512], baseBytes[:512]) || !bytes.HasPrefix(got[512:], append([]byte(v.cmdline), 0)) || !bytes.Contains([]byte(v.cmdline), []byte("/hello")) {
				t.Errorf("the booted disk does not hold the command line at 512: %q", got[512:560])
			}
			if b, err := os.ReadFile(base); err != nil || !bytes.Equal(b, baseBytes) {
				t.Errorf("the image's disk changed: %v", err)
			}
			if err := v.Delete(ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := os.Stat(inst); tc.instance && err != nil {
				t.Errorf("Delete removed the snapshot's instance disk: %v", err)
			}
		})
	}
}
