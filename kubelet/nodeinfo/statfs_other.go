//go:build !linux

package nodeinfo

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
)

// statFS is only implemented on Linux.
func statFS(dir string) (fsStats, error) {
	return fsStats{}, fmt.Errorf("statfs on %s: %w", runtime.GOOS, errdefs.ErrNotImplemented)
}
