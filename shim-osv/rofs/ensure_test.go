package rofs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// partStart is where test disks put the ROFS partition, in sectors.
const partStart = 8

// rawDisk writes a raw disk holding part as its second partition (as OSv's
// disks do) and, when next > 0, a third partition of next sectors right
// after it; it returns the disk's path.
func rawDisk(t *testing.T, dir string, part []byte, next int) string {
	t.Helper()
	le := binary.LittleEndian
	disk := make([]byte, partStart*BlockSize, partStart*BlockSize+len(part)+next*BlockSize)
	copy(disk[BlockSize:], "--rootfs=rofs /ls\x00")
	disk[510], disk[511] = 0x55, 0xaa
	e := disk[mbrTable+rootPartition*mbrEntrySize:]
	e[4] = 0x83
	le.PutUint32(e[partStartLBA:], partStart)
	le.PutUint32(e[partSectors:], uint32(len(part)/BlockSize))
	if next > 0 {
		e := disk[mbrTable+2*mbrEntrySize:]
		e[4] = 0x83
		le.PutUint32(e[partStartLBA:], uint32(partStart+len(part)/BlockSize))
		le.PutUint32(e[partSectors:], uint32(next))
	}
	disk = append(disk, part...)
	disk = append(disk, make([]byte, next*BlockSize)...)
	p := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(p, disk, 0o444); err != nil {
		t.Fatal(err)
	}
	return p
}

func overlay(t *testing.T, ctx context.Context, base, format string) string {
	t.Helper()
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	prereq.Program(t, "qemu-io", "install Debian package qemu-utils")
	p := filepath.Join(t.TempDir(), "instance.qcow2")
	if err := qemu.CreateOverlay(ctx, base, format, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// readBack reads the disk's root partition as OSv would: the partition
// table, then the superblock and structure, and the partition's bytes.
func readBack(t *testing.T, disk string) (*rootFS, []byte) {
	t.Helper()
	img, err := qcow2.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	root, err := readRoot(img)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, root.size*BlockSize)
	if err := readFull(img, part, int64(root.start)*BlockSize); err != nil {
		t.Fatal(err)
	}
	return root, part
}

func TestEnsureDirs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	part := genPartition(t, image)
	base := rawDisk(t, t.TempDir(), part, 0)
	baseSum := sum(t, base)
	disk := overlay(t, ctx, base, "raw")

	dirs := []string{"/config", "/var/run/secrets/kubernetes.io/serviceaccount", "/data/sub", "/etc"}
	added, err := EnsureDirs(ctx, disk, dirs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/config", "/var", "/var/run", "/var/run/secrets", "/var/run/secrets/kubernetes.io",
		"/var/run/secrets/kubernetes.io/serviceaccount", "/data/sub"}
	if !slices.Equal(added, want) {
		t.Errorf("added %q, want %q", added, want)
	}
	root, got := readBack(t, disk)
	wantTree := image
	for _, a := range want {
		wantTree = append(wantTree, a+"/")
	}
	if l := listing(t, root.fs, got); !slices.Equal(l, wantTree.expand()) {
		t.Errorf("tree on the disk:\n%s\nwant:\n%s", strings.Join(l, "\n"), strings.Join(wantTree.expand(), "\n"))
	}
	// The partition grew to hold the new structure after the old.
	if old := uint64(len(part) / BlockSize); root.sb.StructFirst != old || root.size != old+root.sb.StructBlocks {
		t.Errorf("structure at block %d+%d in a %d-block partition, want it at %d, the old end", root.sb.StructFirst, root.sb.StructBlocks, root.size, old)
	}
	if !bytes.Equal(got[BlockSize:len(part)], part[BlockSize:]) {
		t.Error("the old file data or structure changed")
	}
	if sum(t, base) != baseSum {
		t.Error("the base disk was written")
	}

	// Idempotent: nothing to add, nothing written.
	before := sum(t, disk)
	again, err := EnsureDirs(ctx, disk, append(dirs, "/var/run"))
	if err != nil || len(again) != 0 {
		t.Errorf("second call added %q, %v; want nothing", again, err)
	}
	if sum(t, disk) != before {
		t.Error("second call wrote the overlay")
	}
	// And once more with something new: the structure moves again.
	if again, err := EnsureDirs(ctx, disk, []string{"/config/sub"}); err != nil || !slices.Equal(again, []string{"/config/sub"}) {
		t.Errorf("third call added %q, %v", again, err)
	}
	root2, got := readBack(t, disk)
	if l := listing(t, root2.fs, got); !slices.Equal(l, append(wantTree, "/config/sub/").expand()) {
		t.Errorf("tree after the third call:\n%s", strings.Join(l, "\n"))
	}
}

func TestEnsureDirsErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	le := binary.LittleEndian
	part := genPartition(t, image)
	for _, tc := range []struct {
		name    string
		base    func(dir string) string
		dirs    []string
		err     error
		message string
	}{
		{name: "not an OSv disk", base: func(dir string) string {
			p := filepath.Join(dir, "zeros.raw")
			if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, dirs: []string{"/config"}, err: ErrNotROFS, message: "no partition table"},
		{name: "one partition", base: func(dir string) string {
			p := rawDisk(t, dir, part, 0)
			b, _ := os.ReadFile(p)
			copy(b[mbrTable:], b[mbrTable+mbrEntrySize:mbrTable+2*mbrEntrySize])
			clear(b[mbrTable+mbrEntrySize : mbrTable+2*mbrEntrySize])
			os.Chmod(p, 0o644)
			os.WriteFile(p, b, 0o644)
			return p
		}, dirs: []string{"/config"}, err: ErrNotROFS, message: "no second partition"},
		{name: "ZFS root", base: func(dir string) string {
			p := rawDisk(t, dir, make([]byte, 64*BlockSize), 0)
			return p
		}, dirs: []string{"/config"}, err: ErrNotROFS, message: "not ROFS"},
		{name: "ROFS version 2", base: func(dir string) string {
			b := slices.Clone(part)
			le.PutUint64(b[8:], 2)
			return rawDisk(t, dir, b, 0)
		}, dirs: []string{"/config"}, err: ErrNotROFS, message: "version 2"},
		{name: "structure outside the partition", base: func(dir string) string {
			b := slices.Clone(part)
			le.PutUint64(b[24:], 1000)
			return rawDisk(t, dir, b, 0)
		}, dirs: []string{"/config"}, err: errdefs.ErrInvalidArgument, message: "lies outside"},
		{name: "under a file", base: func(dir string) string { return rawDisk(t, dir, part, 0) },
			dirs: []string{"/config", "/etc/feather-test.txt/x"}, err: errdefs.ErrInvalidArgument,
			message: "mountPath /etc/feather-test.txt/x: /etc/feather-test.txt is a file in the image"},
		{name: "relative path", base: func(dir string) string { return rawDisk(t, dir, part, 0) },
			dirs: []string{"config"}, err: errdefs.ErrInvalidArgument, message: "absolute"},
		{name: "a partition follows", base: func(dir string) string { return rawDisk(t, dir, part, 16) },
			dirs: []string{"/config"}, err: errdefs.ErrFailedPrecondition, message: "partition 3 follows it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base(t.TempDir())
			baseSum := sum(t, base)
			disk := overlay(t, ctx, base, "raw")
			before := sum(t, disk)
			added, err := EnsureDirs(ctx, disk, tc.dirs)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.err, tc.message)
			}
			if added != nil {
				t.Errorf("added %q on error", added)
			}
			if sum(t, disk) != before || sum(t, base) != baseSum {
				t.Error("a disk was written")
			}
		})
	}
	if !errors.Is(ErrNotROFS, errdefs.ErrNotImplemented) {
		t.Error("ErrNotROFS does not wrap ErrNotImplemented")
	}
	t.Run("raw instance disk", func(t *testing.T) {
		p := rawDisk(t, t.TempDir(), part, 0)
		if _, err := EnsureDirs(ctx, p, []string{"/config"}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a qcow2 overlay") {
			t.Errorf("err = %v, want ErrInvalidArgument: not a qcow2 overlay", err)
		}
	})
}

// TestEnsureDirsQCOW2Base checks a qcow2 base (as OSv's usr.img is) with a
// cluster size unlike the overlay's.
func TestEnsureDirsQCOW2Base(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	dir := t.TempDir()
	raw := rawDisk(t, dir, genPartition(t, image), 0)
	base := filepath.Join(dir, "base.qcow2")
	if err := runCmd(ctx, "qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw, base); err != nil {
		t.Fatal(err)
	}
	disk := overlay(t, ctx, base, "qcow2")
	if _, err := EnsureDirs(ctx, disk, []string{"/config"}); err != nil {
		t.Fatal(err)
	}
	root, got := readBack(t, disk)
	if l := listing(t, root.fs, got); !slices.Equal(l, append(image, "/config/").expand()) {
		t.Errorf("tree:\n%s", strings.Join(l, "\n"))
	}
}

func runCmd(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}
