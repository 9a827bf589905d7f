package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feather-edge/feather/internal/prereq"
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
