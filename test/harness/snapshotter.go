package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/platforms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// SnapshotterName is the name containerd knows Feather's snapshotter by in
// the harness's config ([proxy_plugins.feather]).
const SnapshotterName = "feather"

// DifferName is the name containerd knows the snapshotter's differ by
// ([proxy_plugins.feather-diff], type diff, on the same socket).
const DifferName = "feather-diff"

// Snapshotter is a running feather-snapshotter (bin/feather-snapshotter) of
// its own: its state under Root, its socket at Address.
type Snapshotter struct {
	// Dir holds Root, the socket and the log.
	Dir, Root, Address string
	// ContentRoot is the content store of the harness's containerd, whose
	// blobs its differ links into snapshots.
	ContentRoot string

	proc *Process
}

// StartSnapshotter starts feather-snapshotter and returns once it answers
// on its socket; give it to StartContainerd (ContainerdOptions.Snapshotter)
// for containerd to reach it. It fails t if it does not start, and skips it
// (fails it under FEATHER_E2E=required) when it is not built.
func (e *Env) StartSnapshotter() *Snapshotter {
	e.t.Helper()
	return e.StartSnapshotterAt("")
}

// StartSnapshotterAt is StartSnapshotter with the snapshotter's state under
// root (e.g. a small file system of the test's), its own folder when "".
func (e *Env) StartSnapshotterAt(root string) *Snapshotter {
	e.t.Helper()
	bin := RequiresBin(e.t, "feather-snapshotter")
	s := &Snapshotter{Dir: filepath.Join(e.Dir, "snapshotter")}
	s.Root, s.Address = filepath.Join(s.Dir, "root"), filepath.Join(s.Dir, "snapshotter.sock")
	if root != "" {
		s.Root = root
	}
	s.ContentRoot = filepath.Join(e.containerdDir(), "root", "io.containerd.content.v1.content")
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		e.t.Fatalf("harness: snapshotter: %v", err)
	}
	e.onClose(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.start(ctx, bin); err != nil {
		e.t.Fatalf("harness: snapshotter: %v", err)
	}
	return s
}

func (s *Snapshotter) start(ctx context.Context, bin string) error {
	var err error
	s.proc, err = startProcess("feather-snapshotter", filepath.Join(s.Dir, "snapshotter.log"), nil,
		bin, "--root", s.Root, "--address", s.Address, "--content-root", s.ContentRoot, "--log-level", "debug")
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+s.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	sn := snapshotsapi.NewSnapshotsClient(conn)
	return s.proc.waitReady(ctx, func(ctx context.Context) error {
		if _, err := os.Stat(s.Address); err != nil {
			return err
		}
		// Any answer of the API (here NotFound): the snapshotter is serving.
		_, err := sn.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: SnapshotterName, Key: "harness-ready-probe"})
		if code := status.Code(err); code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled {
			return err
		}
		return nil
	})
}

// Pid is the snapshotter's process ID (e.g. for its /proc/PID/io).
func (s *Snapshotter) Pid() int { return s.proc.Pid() }

// Restart kills the snapshotter (SIGKILL, as a crash) and starts it again
// on the same root.
func (s *Snapshotter) Restart(ctx context.Context) error {
	s.proc.Stop(0)
	bin, err := Bin("feather-snapshotter")
	if err != nil {
		return err
	}
	return s.start(ctx, bin)
}

// containerdConfig is the TOML that makes containerd reach the snapshotter
// as a proxy plugin named SnapshotterName and its differ as one named
// DifferName (asked first by containerd's diff service, which the client's
// unpack uses: it takes disk layers and leaves other snapshotters' tar
// layers to the walking differ), and lets the transfer service (ctr image
// pull and import) unpack for it, with its differ, as well as for
// overlayfs. It is snapshotter/README.md's config for a real node.
func (s *Snapshotter) containerdConfig() string {
	return fmt.Sprintf(snapshotterConfig, SnapshotterName, s.Address, platforms.Format(platforms.DefaultSpec()), DifferName)
}

const snapshotterConfig = `
[proxy_plugins.%[1]s]
  type = "snapshot"
  address = %[2]q
[proxy_plugins.%[4]s]
  type = "diff"
  address = %[2]q

[plugins.'io.containerd.service.v1.diff-service']
  default = ["%[4]s", "walking"]

[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "%[3]s"
  snapshotter = "overlayfs"
  differ = "walking"
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "%[3]s"
  snapshotter = "%[1]s"
  differ = "%[4]s"
`

func (s *Snapshotter) stop() error {
	if s.proc != nil {
		s.proc.Stop(10 * time.Second)
	}
	return nil
}
