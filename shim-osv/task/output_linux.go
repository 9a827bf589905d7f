package task

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// openOutput opens where containerd wants a stream: a FIFO path (ctr,
// CRI), or a file:// URI; "" means no stream. binary:// loggers are not
// supported yet.
func openOutput(ctx context.Context, uri string) (io.WriteCloser, error) {
	if uri == "" {
		return nil, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "", "fifo":
		// O_RDWR would never block, but then the reader would never see
		// EOF; containerd opens its end before Create, so O_WRONLY is fine.
		return fifo.OpenFifo(ctx, u.Path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	default:
		return nil, fmt.Errorf("log URI scheme %q: %w", u.Scheme, errdefs.ErrNotImplemented)
	}
}
