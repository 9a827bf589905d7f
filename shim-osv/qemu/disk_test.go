package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// TestOverlay makes an overlay over a large sparse raw base, writes a
// command line into the overlay and checks that the overlay shows it while
// the base is untouched, and that making the overlay did not copy the base.
func TestOverlay(t *testing.T) {
	prereq.Program(t, qemuImg, "install Debian package qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, []byte("boot sector"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(base, 4<<30); err != nil { // 4 GiB, sparse
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := CreateOverlay(ctx, base, "raw", overlay); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Errorf("overlay of a 4 GiB base is %d bytes: not O(1)", fi.Size())
	}
	cmdline := append([]byte("/exit 7"), make([]byte, 512-7)...)
	if err := WriteAt(ctx, overlay, 512, cmdline); err != nil {
		t.Fatal(err)
	}
	flat := filepath.Join(dir, "flat.raw")
	if err := run(ctx, qemuImg, "convert", "-O", "raw", overlay, flat); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1024)
	f, err := os.Open(flat)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("boot sector")) || !bytes.Equal(got[512:], cmdline) {
		t.Errorf("overlay reads %q…, want the base's first sector and the command line at 512", got[:32])
	}
	b, _ := os.ReadFile(base)
	if !bytes.Equal(b[:11], []byte("boot sector")) || bytes.Contains(b[:1024], []byte("/exit")) {
		t.Error("the base was written")
	}
}

// TestWrite grows an overlay and writes two extents in one qemu-io, reads
// them back through the backing chain and checks that a write past the
// disk's end is an error.
func TestWrite(t *testing.T) {
	prereq.Program(t, qemuIO, "install Debian package qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, bytes.Repeat([]byte("b"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := CreateOverlay(ctx, base, "raw", overlay); err != nil {
		t.Fatal(err)
	}
	a, z := bytes.Repeat([]byte("a"), 512), bytes.Repeat([]byte("z"), 1000)
	if err := Write(ctx, overlay, 2<<20, []Extent{{Offset: 512, Data: a}, {Offset: 3 << 19, Data: z}}); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(overlay)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil || img.Size() != 2<<20 {
		t.Fatalf("read %d bytes: %v; want 2 MiB", img.Size(), err)
	}
	if !bytes.Equal(got[:512], bytes.Repeat([]byte("b"), 512)) || !bytes.Equal(got[512:1024], a) || !bytes.Equal(got[3<<19:3<<19+1000], z) || got[1<<20+1] != 0 {
		t.Error("the overlay does not read back base, extents and zeros where written")
	}
	if b, _ := os.ReadFile(base); !bytes.Equal(b, bytes.Repeat([]byte("b"), 1<<20)) {
		t.Error("the base was written")
	}
	if err := Write(ctx, overlay, 0, []Extent{{Offset: 4 << 20, Data: a}}); err == nil {
		t.Error("a write past the end succeeded")
	}
}
