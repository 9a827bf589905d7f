package shim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/sys"
)

// socketPathLimit is the longest path a unix socket address holds.
const socketPathLimit = 106

// DefaultSocketDir is where containerd puts shim sockets by default.
var DefaultSocketDir = filepath.Join(defaults.DefaultStateDir, "s")

// SocketAddress returns the address of the shim socket for id in ctx's
// namespace under socketDir, as containerd's shims compute it (so that a
// runc shim's address can be predicted): unix://DIR/SHA256(ADDRESS/NS/ID).
func SocketAddress(ctx context.Context, socketDir, grpcAddress, id string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	d := sha256.Sum256([]byte(filepath.Join(grpcAddress, ns, id)))
	return fmt.Sprintf("unix://%s/%x", socketDir, d), nil
}

// socketPath is the file of a unix:// address, else the abstract socket
// the address names.
func socketPath(address string) (path string, abstract bool) {
	if p, ok := strings.CutPrefix(address, "unix://"); ok {
		return p, false
	}
	return "\x00" + address, true
}

// NewSocket listens on address, creating its directory (0700); the socket
// is 0600.
func NewSocket(address string) (*net.UnixListener, error) {
	path, abstract := socketPath(address)
	if !abstract {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("mkdir failed for %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if !abstract {
		if err := os.Chmod(path, 0o600); err != nil {
			os.Remove(path)
			l.Close()
			return nil, fmt.Errorf("chmod failed for %s: %w", path, err)
		}
	}
	return l.(*net.UnixListener), nil
}

// RemoveSocket removes the socket file of address, if it has one.
func RemoveSocket(address string) error {
	if path, abstract := socketPath(address); !abstract {
		return os.Remove(path)
	}
	return nil
}

// SocketEaddrinuse reports whether err is a listen's EADDRINUSE.
func SocketEaddrinuse(err error) bool {
	var netErr *net.OpError
	if errors.As(err, &netErr) && netErr.Op == "listen" {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	return false
}

// Dial connects to a shim's unix socket address.
func Dial(address string, timeout time.Duration) (net.Conn, error) {
	if proto, _, ok := strings.Cut(address, "://"); ok && proto != "unix" {
		return nil, fmt.Errorf("unsupported protocol: %s", proto)
	}
	path, _ := socketPath(address)
	return net.DialTimeout("unix", path, timeout)
}

// CanConnect reports whether the socket at address accepts connections.
func CanConnect(address string) bool {
	conn, err := Dial(address, 100*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// AdjustOOMScore gives process pid the OOM score of this process's parent
// (containerd) plus one, so that the kernel kills a shim before containerd.
func AdjustOOMScore(pid int) error {
	score, err := sys.GetOOMScoreAdj(os.Getppid())
	if err != nil {
		return fmt.Errorf("get parent OOM score: %w", err)
	}
	if err := sys.AdjustOOMScore(pid, score+1); err != nil {
		return fmt.Errorf("set shim OOM score: %w", err)
	}
	return nil
}

// socketDirLink, in the bundle, points to the socket directory start was
// given, for the daemon and delete, which are not.
const socketDirLink = "s"

func writeSocketDir(dir string) error {
	if _, err := os.Lstat(socketDirLink); err == nil {
		if err := os.Remove(socketDirLink); err != nil {
			return fmt.Errorf("remove existing socket dir link: %w", err)
		}
	}
	return os.Symlink(dir, socketDirLink)
}

// cleanupSockets removes the sockets containerd's shims leave for the
// daemon's id, as containerd's pkg/shim does when its daemon exits.
func cleanupSockets(ctx context.Context, f flags) {
	if b, err := os.ReadFile("address"); err == nil && len(b) > 0 {
		_ = RemoveSocket(string(b))
	}
	socketDir, _ := os.Readlink(socketDirLink)
	if socketDir == "" {
		socketDir = DefaultSocketDir
	}
	if f.socket != "" {
		_ = RemoveSocket("unix://" + f.socket)
	} else if address, err := SocketAddress(ctx, socketDir, f.address, f.id); err == nil {
		_ = RemoveSocket(address)
	}
	if f.debugSocket != "" {
		_ = RemoveSocket("unix://" + f.debugSocket)
	} else if address, err := SocketAddress(ctx, socketDir, f.address, filepath.Join(f.id, "debug")); err == nil {
		_ = RemoveSocket(address)
	}
}
