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
	f, err := os.CreateTemp(filepath.Dir(disk), ".write-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	cmd := fmt.Sprintf("write -s %s %d %d", f.Name(), offset, len(data))
	return run(ctx, qemuIO, "-f", "qcow2", "-c", cmd, disk)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
