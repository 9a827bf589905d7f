//go:build !linux

package agent

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func socketPeer(path string) (int, error) {
	return 0, fmt.Errorf("peer of %s: %w", path, errdefs.ErrNotImplemented)
}
