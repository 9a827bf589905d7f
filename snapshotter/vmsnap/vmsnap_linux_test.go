package vmsnap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/vmimage"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// layer is one image layer to commit: files by path (a nil content makes
// a whiteout, as an unpacked tar's deletion).
type layer map[string][]byte

// commitChain commits the layers as containerd's unpacker does (an
// "extract-…" snapshot per layer, on the one before), naming them after
// image, and returns the top layer's name.
func commitChain(t testing.TB, ctx context.Context, sn *Snapshotter, image string, layers ...layer) string {
	t.Helper()
	parent := ""
	for i, l := range layers {
		name := image + "-layer" + strconv.Itoa(i)
		key := "extract-" + name + " " + name
		mounts, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		dir := upperOf(t, mounts)
		if _, err := os.Stat(filepath.Join(dir, vmimage.InstanceDiskPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an unpack snapshot got an instance disk (%v)", err)
		}
		for p, data := range l {
			p = filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if data == nil {
				if err := syscall.Mknod(p, syscall.S_IFCHR, 0); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := sn.Commit(ctx, name, key); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	return parent
}

// upperOf returns the writable directory of an active snapshot's mounts.
func upperOf(t testing.TB, mounts []mount.Mount) string {
	t.Helper()
	if len(mounts) != 1 {
		t.Fatalf("mounts = %+v, want one", mounts)
	}
	if mounts[0].Type == "bind" {
		return mounts[0].Source
	}
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v
		}
	}
	t.Fatalf("mounts %+v have no upperdir", mounts)
	return ""
}

func newSnapshotter(t testing.TB) (context.Context, *Snapshotter) {
	t.Helper()
	prereq.Root(t)
	sn, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return namespaces.WithNamespace(context.Background(), "test"), sn
}

// TestInstanceDisk prepares containers on a VM image's layers and checks
// the instance disk: made in the container's snapshot, backed by the
// committed layer's disk (kept once, unchanged), its size independent of the
// disk's; the VM's writes are the snapshot's usage; removing the snapshot
// removes them. Images without a disk, views and unpack snapshots get none.
func TestInstanceDisk(t *testing.T) {
	qemuIO := prereq.Program(t, "qemu-io", "install Debian package qemu-utils")
	ctx, sn := newSnapshotter(t)
	disk := bytes.Repeat([]byte("base"), 4<<20) // 16 MiB
	top := commitChain(t, ctx, sn, "vm",
		layer{vmimage.DiskPath: disk, vmimage.KernelPath: []byte("kernel")},
		layer{"etc/hostname": []byte("vm\n")})

	mounts, err := sn.Prepare(ctx, "ctr", top)
	if err != nil {
		t.Fatal(err)
	}
	upper := upperOf(t, mounts)
	inst := filepath.Join(upper, vmimage.InstanceDiskPath)
	backing, format, err := qcow2.BackingFile(inst)
	if err != nil {
		t.Fatalf("instance disk: %v", err)
	}
	if format != vmimage.FormatRaw || !strings.HasSuffix(backing, "/fs/"+vmimage.DiskPath) || strings.HasPrefix(backing, upper) {
		t.Errorf("instance disk backed by %s (%s), want the lower layer's raw %s", backing, format, vmimage.DiskPath)
	}
	img, err := qcow2.Open(inst)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(disk))
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, disk) {
		t.Errorf("instance disk does not read the base's bytes: %v", err)
	}
	img.Close()

	idle, err := sn.Usage(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	if idle.Size > 1<<20 {
		t.Errorf("idle instance uses %d bytes, want at most 1 MiB", idle.Size)
	}
	// The VM writes 8 MiB.
	cmd := exec.Command(qemuIO, "-f", "qcow2", "-c", "write -P 0x61 1M 8M", inst)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
	used, err := sn.Usage(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	if grown := used.Size - idle.Size; grown < 8<<20 || grown > 10<<20 {
		t.Errorf("after the VM wrote 8 MiB the snapshot's usage grew by %d bytes", grown)
	}
	if b, err := os.ReadFile(backing); err != nil || !bytes.Equal(b, disk) {
		t.Errorf("the layer's disk changed: %v", err)
	}

	// No instance disk: a view, an image without a disk, an unpack snapshot.
	if _, err := sn.View(ctx, "view", top); err != nil {
		t.Fatal(err)
	}
	plain := commitChain(t, ctx, sn, "plain", layer{"bin/sh": []byte("sh")}, layer{"etc/x": []byte("x")})
	m, err := sn.Prepare(ctx, "plain", plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(upperOf(t, m), vmimage.InstanceDiskPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a container on an image without a disk got an instance disk (%v)", err)
	}

	if err := sn.Remove(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(upper); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removing the snapshot left its directory (and the VM's writes): %v", err)
	}
	if _, err := os.Stat(backing); err != nil {
		t.Errorf("removing the container removed the image's disk: %v", err)
	}
}

// TestInstanceDiskCases checks the layer chains that give no instance disk
// or an error; an error leaves no snapshot behind.
func TestInstanceDiskCases(t *testing.T) {
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	for _, tc := range []struct {
		name    string
		layers  []layer
		want    bool  // an instance disk
		wantErr error // from Prepare
	}{
		{name: "disk in the only layer", layers: []layer{{vmimage.DiskPath: []byte("disk")}}, want: true},
		{name: "disk in a lower layer", layers: []layer{{vmimage.DiskPath: []byte("disk")}, {"a": []byte("a")}, {"b": []byte("b")}}, want: true},
		{name: "disk deleted by an upper layer", layers: []layer{{vmimage.DiskPath: []byte("disk")}, {vmimage.DiskPath: nil}}},
		{name: "two layers carry a disk", layers: []layer{{vmimage.DiskPath: []byte("disk")}, {vmimage.DiskPath: []byte("disk2")}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "empty disk", layers: []layer{{vmimage.DiskPath: []byte{}}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "corrupt qcow2 disk", layers: []layer{{vmimage.DiskPath: append([]byte("QFI\xfb"), make([]byte, 200)...)}}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, sn := newSnapshotter(t)
			top := commitChain(t, ctx, sn, "image", tc.layers...)
			start := time.Now()
			mounts, err := sn.Prepare(ctx, "ctr", top)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Prepare = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if _, err := sn.Stat(ctx, "ctr"); !errdefs.IsNotFound(err) {
					t.Errorf("a failed Prepare left its snapshot: Stat = %v", err)
				}
				if _, err := sn.Stat(ctx, top); err != nil {
					t.Errorf("a failed Prepare harmed the image's layer: %v", err)
				}
				return
			}
			t.Logf("prepared in %v", time.Since(start))
			_, err = os.Stat(filepath.Join(upperOf(t, mounts), vmimage.InstanceDiskPath))
			if got := err == nil; got != tc.want {
				t.Errorf("instance disk made: %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// TestCleanupEmpty: containerd calls Cleanup after each garbage collection,
// also on a snapshotter that never held a snapshot.
func TestCleanupEmpty(t *testing.T) {
	ctx, sn := newSnapshotter(t)
	if err := sn.Cleanup(ctx); err != nil {
		t.Errorf("Cleanup of an empty snapshotter: %v", err)
	}
}

// TestRemoveInUse starts QEMU (paused, -S) on a container's instance disk:
// while it has the disk open, removing the snapshot is an
// ErrFailedPrecondition error and the snapshot stays whole; once QEMU is
// gone, the snapshotter removes it, with no other call.
func TestRemoveInUse(t *testing.T) {
	system := prereq.Program(t, "qemu-system-x86_64", "install Debian package qemu-system-x86")
	ctx, sn := newSnapshotter(t)
	top := commitChain(t, ctx, sn, "vm", layer{vmimage.DiskPath: bytes.Repeat([]byte{1}, 1<<20)})
	mounts, err := sn.Prepare(ctx, "ctr", top)
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(upperOf(t, mounts), vmimage.InstanceDiskPath)
	qemu := exec.Command(system, "-S", "-nodefaults", "-display", "none", "-machine", "pc,accel=tcg",
		"-drive", "file="+inst+",if=virtio,format=qcow2")
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	t.Cleanup(func() { qemu.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		inUse, err := locked(inst)
		if err != nil {
			t.Fatal(err)
		}
		if inUse {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("qemu exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu did not lock the instance disk within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sn.Remove(ctx, "ctr"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Remove of a snapshot whose disk a VM has open = %v, want failed precondition", err)
	}
	if _, err := sn.Stat(ctx, "ctr"); err != nil {
		t.Errorf("the refused Remove harmed the snapshot: %v", err)
	}
	if _, err := os.Stat(inst); err != nil {
		t.Errorf("the refused Remove harmed the instance disk: %v", err)
	}
	// containerd has dropped the snapshot when it calls Remove: the
	// snapshotter removes it itself once the VM is gone.
	qemu.Process.Kill()
	<-exited
	deadline = time.Now().Add(10 * freeCheck)
	for {
		_, err := sn.Stat(ctx, "ctr")
		if errdefs.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused snapshot is still there %v after its VM stopped: Stat = %v", 10*freeCheck, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(inst))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the removed snapshot's directory (and the VM's writes) stayed: %v", err)
	}
	if err := sn.Remove(ctx, "ctr"); !errdefs.IsNotFound(err) {
		t.Errorf("Remove once the snapshotter removed it = %v, want not found", err)
	}
}
