// Package manager is the shim's entry from containerd: `start` launches a
// shim daemon for a container (or a pod) and returns its socket; `delete`
// cleans up after a shim that died.
package manager

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/runcshim"
	"github.com/feather-edge/feather/shim-osv/shim"
	"github.com/feather-edge/feather/shim-osv/task"
	"github.com/feather-edge/feather/shim-osv/vm"
)

// Name is the runtime this shim serves.
const Name = "io.containerd.osv.v1"

// New returns the shim manager.
func New() shim.Manager { return manager{} }

// One shim daemon per container, or per pod under Kubernetes (containerd
// sends all of a pod's containers to the shim of its sandbox).
type manager struct{}

func (manager) Name() string { return Name }

// Start launches this binary as the shim daemon for the container, serving
// ttrpc on a socket it hands over, and returns that socket's address. The
// containers of one Kubernetes pod share one daemon, as with the runc shim:
// a container whose bundle names a sandbox (io.kubernetes.cri.sandbox-id)
// that already has a daemon gets that daemon's address. (containerd 2.x
// itself sends a pod's containers to the shim of its sandbox without calling
// start; this covers the cases where it does call it.)
func (manager) Start(ctx context.Context, opts *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	id := opts.GetInstanceID()
	socketDir := opts.GetSocketDir()
	if socketDir == "" {
		socketDir = shim.DefaultSocketDir
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	address, err := socketAddress(ctx, socketDir, opts.GetContainerdGrpcAddress(), group(cwd, id))
	if err != nil {
		return nil, err
	}
	result := &bootapi.BootstrapResult{Version: 3, Address: address, Protocol: "ttrpc"}
	l, err := shim.NewSocket(address)
	if err != nil {
		if shim.SocketEaddrinuse(err) && shim.CanConnect(address) {
			return result, nil // the pod's daemon
		}
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
		// A socket left by a daemon that died.
		if err := shim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if l, err = shim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			_ = shim.RemoveSocket(address)
		}
	}()
	f, err := l.File()
	l.SetUnlinkOnClose(false) // the socket file stays for the daemon
	l.Close()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.GetContainerdGrpcAddress()}
	if opts.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(shim.DaemonEnv(os.Environ()), SocketEnv+"="+address)
	cmd.ExtraFiles = []*os.File{f} // fd 3: the listening socket
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait() }()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("adjust shim OOM score: %w", err)
	}
	return result, nil
}

// SocketEnv passes the daemon its own socket's address, for it to remove
// when it exits (see main); the daemon unsets it.
const SocketEnv = "FEATHER_OSV_SHIM_SOCKET"

// socketKey makes this shim's socket name differ from the one the runc shim
// computes for the same group (the SHA-256 of ADDRESS/NAMESPACE/GROUP): the
// daemon starts runc shims for the pod's sandbox and other containers that
// are not VMs, grouped under the same id.
const socketKey = "feather-osv"

// socketAddress is the daemon's socket for group.
func socketAddress(ctx context.Context, socketDir, grpcAddress, group string) (string, error) {
	return shim.SocketAddress(ctx, socketDir, grpcAddress, group+"/"+socketKey)
}

// group is the id whose daemon runs the container of bundle: its pod's
// sandbox id (the annotation containerd's CRI sets), else its own id.
func group(bundle, id string) string {
	if sb := cri.Read(bundle)[cri.SandboxID]; sb != "" {
		return sb
	}
	return id
}

// Stop cleans up after a shim that is gone: containerd runs it as
// `containerd-shim-osv-v1 … delete` in the bundle, once per container the
// daemon ran. A container handed to the runc shim is cleaned up through it
// (see runcshim.Cleanup). For a VM, its processes died with the shim (they
// are tied to it) or are killed here; its tap, cgroup, files and root
// filesystem mount are removed.
func (manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shim.StopStatus{}, err
	}
	grpcAddress := ""
	if f := flag.Lookup("address"); f != nil {
		grpcAddress = f.Value.String()
	}
	socketDir := shim.DefaultSocketDir
	if d, err := os.Readlink(filepath.Join(bundle, "s")); err == nil && d != "" {
		socketDir = d
	}
	// The daemon's socket, unless a daemon of the pod still serves it.
	if address, err := socketAddress(ctx, socketDir, grpcAddress, group(bundle, id)); err == nil && !shim.CanConnect(address) {
		_ = shim.RemoveSocket(address)
	}
	if runcshim.Delegated(bundle) {
		return runcshim.Cleanup(ctx, runcshim.Config{Namespace: ns, GRPCAddress: grpcAddress,
			TTRPCAddress: os.Getenv("TTRPC_ADDRESS"), SocketDir: socketDir, Bundle: bundle}, id, bundle)
	}
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	if err := vm.Cleanup(ctx, bundle); err != nil {
		log.G(ctx).WithError(err).Warn("clean up vm")
	}
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// Info describes the runtime.
func (manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	return &types.RuntimeInfo{Name: Name}, nil
}

// NewService returns the daemon's task service: VMs itself, other
// containers through runc shims started with what containerd gave the
// daemon (its bundle is its working directory; the socket directory is
// where the start action's link "s" points). Without containerd's address
// (tests), every container is taken for a VM.
func NewService(ctx context.Context, d shim.Daemon) (shim.Service, error) {
	var (
		kinds task.KindSource
		runc  *runcshim.Shims
	)
	if d.GRPCAddress != "" {
		bundle, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		socketDir := shim.DefaultSocketDir
		if dir, err := os.Readlink(filepath.Join(bundle, "s")); err == nil && dir != "" {
			socketDir = dir
		}
		kinds = task.NewContainerdKinds(d.GRPCAddress)
		runc = runcshim.New(runcshim.Config{Namespace: d.Namespace, GRPCAddress: d.GRPCAddress,
			TTRPCAddress: d.TTRPCAddress, SocketDir: socketDir, Debug: d.Debug, Bundle: bundle})
	}
	return task.New(ctx, d.Publisher, d.Shutdown, kinds, runc)
}
