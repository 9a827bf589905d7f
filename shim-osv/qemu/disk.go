package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tools from qemu-utils.
var (
	qemuImg = "qemu-img"
	qemuIO  = "qemu-io"
)

// CreateOverlay makes path a qcow2 disk backed by base (of format
// baseFormat: raw or qcow2). Writes go to path; base is only ever read. It
// takes the same time and space whatever base's size.
func CreateOverlay(ctx context.Context, base, baseFormat, path string) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	return run(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", abs, path)
}

// WriteAt writes data into the qcow2 disk at offset, through qemu-io, so
// that only the overlay changes.
func WriteAt(ctx context.Context, disk string, offset int64, data []byte) error {
	return Write(ctx, disk, 0, []Extent{{Offset: offset, Data: data}})
}

// Extent is bytes to write at a guest offset of a disk.
type Extent struct {
	Offset int64
	Data   []byte
}

// Write writes the extents into the qcow2 disk, in order, through one
// qemu-io, so that only the overlay changes; with size > 0 (a multiple of
// 512) it first sets the disk's virtual size to size, which for an overlay
// writes nothing of its backing file. The disk must not be in use by a
// running VM.
func Write(ctx context.Context, disk string, size int64, extents []Extent) error {
	args := []string{"-f", "qcow2"}
	if size > 0 {
		args = append(args, "-c", fmt.Sprintf("truncate %d", size))
	}
	for _, e := range extents {
		f, err := os.CreateTemp(filepath.Dir(disk), ".write-")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := f.Write(e.Data); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		args = append(args, "-c", fmt.Sprintf("write -q -s %s %d %d", f.Name(), e.Offset, len(e.Data)))
	}
	return run(ctx, qemuIO, append(args, disk)...)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
