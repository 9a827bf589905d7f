package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/vmimage"
)

// The fixtures are made by testdata/make.sh.
const fixtureCmdline = `--env=GREETING=hi /hello.so a "b c"`

func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		file, format string
		cmdline      string
		bootable     bool
	}{
		{"raw.img", vmimage.FormatRaw, fixtureCmdline, true},
		{"plain.qcow2", vmimage.FormatQCOW2, fixtureCmdline, true},
		{"compressed.qcow2", vmimage.FormatQCOW2, fixtureCmdline, true},
		{"empty.qcow2", vmimage.FormatQCOW2, "", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d, err := Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Format != tc.format {
				t.Errorf("format = %s, want %s", d.Format, tc.format)
			}
			wantSize := int64(128 << 10)
			if tc.file == "empty.qcow2" {
				wantSize = 1 << 20
			}
			if d.VirtualSize != wantSize {
				t.Errorf("virtual size = %d, want %d", d.VirtualSize, wantSize)
			}
			cmd, err := d.Cmdline()
			if err != nil || cmd != tc.cmdline {
				t.Errorf("Cmdline = %q, %v; want %q", cmd, err, tc.cmdline)
			}
			boot, err := d.Bootable()
			if err != nil || boot != tc.bootable {
				t.Errorf("Bootable = %v, %v; want %v", boot, err, tc.bootable)
			}
			if tc.file == "empty.qcow2" {
				return
			}
			// Across a cluster boundary, in the second half of the disk.
			buf := make([]byte, 4200)
			if _, err := d.ReadAt(buf, 70000-4100); err != nil {
				t.Fatal(err)
			}
			if got := string(buf[4100:4106]); got != "marker" {
				t.Errorf("bytes at 70000 = %q, want marker", got)
			}
			// The end of the disk: short read, io.EOF.
			n, err := d.ReadAt(buf, wantSize-10)
			if n != 10 || err == nil {
				t.Errorf("read at the end = %d, %v; want 10, EOF", n, err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a disk\n"), 0o644)
	for _, tc := range []struct{ path, want string }{
		{text, "whole 512-byte sectors"},
		{dir, "not a regular file"},
	} {
		_, err := Open(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("Open(%s) = %v, want an ErrInvalidArgument error with %q", tc.path, err, tc.want)
		}
	}
	if _, err := Open(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(absent) = %v, want not-exist", err)
	}
}

// TestUnreadable: a qcow2 disk with zstd clusters opens — its header is
// fine — but its guest bytes cannot be read here.
func TestUnreadable(t *testing.T) {
	d, err := Open(filepath.Join("testdata", "zstd.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Format != vmimage.FormatQCOW2 || d.VirtualSize != 128<<10 {
		t.Errorf("header: %+v", d.DiskInfo)
	}
	if _, err := d.Cmdline(); !errdefs.IsNotImplemented(err) {
		t.Errorf("Cmdline = %v, want ErrNotImplemented", err)
	}
}
