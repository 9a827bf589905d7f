package qcow2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
)

// TestCreateOverlay makes overlays over raw and qcow2 bases of several sizes
// and checks them with QEMU's own tools: qemu-img check finds no error,
// qemu-img info reports the backing file, its format and the base's size;
// the overlay reads the base's bytes, and a write through qemu-io lands in
// the overlay only. The overlay's allocated size does not depend on the
// base's.
func TestCreateOverlay(t *testing.T) {
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	prereq.Program(t, "qemu-io", "install Debian package qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name   string
		format string
		size   int64
	}{
		{"raw 1 MiB", FormatRaw, 1 << 20},
		{"raw odd size", FormatRaw, 1<<20 + 100},
		{"raw 1 GiB sparse", FormatRaw, 1 << 30},
		{"raw 3 TiB sparse", FormatRaw, 3 << 40},
		{"qcow2 64 MiB", FormatQCOW2, 64 << 20},
		{"qcow2 5 TiB (two L1 clusters)", FormatQCOW2, 5 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			head := bytes.Repeat([]byte("feather!"), 512)
			if tc.format == FormatRaw {
				if err := os.WriteFile(base, head, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(base, tc.size); err != nil {
					t.Fatal(err)
				}
			} else {
				run(t, ctx, dir, "qemu-img", "create", "-q", "-f", "qcow2", base, itoa(tc.size))
				f := filepath.Join(dir, "head")
				if err := os.WriteFile(f, head, 0o644); err != nil {
					t.Fatal(err)
				}
				run(t, ctx, dir, "qemu-io", "-f", "qcow2", "-c", "write -s "+f+" 0 4096", base)
			}
			overlay := filepath.Join(dir, "instance.qcow2")
			if err := CreateOverlay(overlay, base, tc.format); err != nil {
				t.Fatal(err)
			}
			run(t, ctx, dir, "qemu-img", "check", "-q", overlay)
			out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", overlay).Output()
			if err != nil {
				t.Fatalf("qemu-img info: %v", err)
			}
			var info struct {
				VirtualSize   int64  `json:"virtual-size"`
				Format        string `json:"format"`
				BackingFile   string `json:"backing-filename"`
				BackingFormat string `json:"backing-filename-format"`
			}
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatalf("qemu-img info: %v: %s", err, out)
			}
			want := (tc.size + 511) / 512 * 512
			if info.Format != "qcow2" || info.VirtualSize != want || info.BackingFile != base || info.BackingFormat != tc.format {
				t.Errorf("qemu-img info = %+v, want qcow2 of %d bytes backed by %s (%s)", info, want, base, tc.format)
			}
			if name, format, err := BackingFile(overlay); err != nil || name != base || format != tc.format {
				t.Errorf("BackingFile = %q, %q, %v; want %q, %q", name, format, err, base, tc.format)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(overlay, &st); err != nil {
				t.Fatal(err)
			}
			if used := st.Blocks * 512; used > 1<<20 {
				t.Errorf("the overlay takes %d bytes on disk, want at most 1 MiB", used)
			}
			// Reads come from the base; a write changes the overlay only.
			img, err := Open(overlay)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(head))
			if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, head) {
				t.Errorf("overlay's first bytes = %q…, %v; want the base's", got[:16], err)
			}
			img.Close()
			run(t, ctx, dir, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 512 512", overlay)
			run(t, ctx, dir, "qemu-img", "check", "-q", overlay)
			img, err = Open(overlay)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if _, err := img.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:512], head[:512]) || !bytes.Equal(got[512:1024], bytes.Repeat([]byte{0x5a}, 512)) || !bytes.Equal(got[1024:], head[1024:]) {
				t.Errorf("after a write at 512 the overlay reads %q…", got[500:530])
			}
			if tc.format == FormatRaw {
				f, err := os.Open(base)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, head) {
					t.Errorf("the base changed: %v", err)
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestCreateOverlayInvalid checks the refusals: each an ErrInvalidArgument
// error, and nothing left at the overlay's path.
func TestCreateOverlayInvalid(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	notQCOW2 := filepath.Join(dir, "text")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notQCOW2, bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, backing, format string
		want                  error
	}{
		{"relative backing", "base.img", FormatRaw, errdefs.ErrInvalidArgument},
		{"unknown format", notQCOW2, "vmdk", errdefs.ErrInvalidArgument},
		{"empty raw base", empty, FormatRaw, errdefs.ErrInvalidArgument},
		{"qcow2 base that is not qcow2", notQCOW2, FormatQCOW2, errdefs.ErrInvalidArgument},
		{"a directory", dir, FormatRaw, errdefs.ErrInvalidArgument},
		{"missing base", filepath.Join(dir, "missing"), FormatRaw, os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			overlay := filepath.Join(dir, "overlay")
			err := CreateOverlay(overlay, tc.backing, tc.format)
			if !errors.Is(err, tc.want) {
				t.Errorf("CreateOverlay = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(overlay); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("something was left at the overlay's path: %v", err)
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
}
