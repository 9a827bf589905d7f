package manager

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/shim"
	"github.com/feather-edge/feather/shim-osv/vm"
)

// bundle returns a bundle whose config.json carries annotations.
func bundle(t *testing.T, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(specs.Spec{Version: specs.Version, Annotations: annotations})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bundle string
		want   string
	}{
		{"a pod's container", bundle(t, map[string]string{cri.SandboxID: "sb1", cri.ContainerType: cri.ContainerTypeContainer}), "sb1"},
		{"ctr's container", bundle(t, nil), "c1"},
		{"no config.json", t.TempDir(), "c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := group(tc.bundle, "c1"); got != tc.want {
				t.Errorf("group = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSocketAddress: one address per group and namespace, never the one
// the runc shim computes for the same group (this shim starts runc shims
// under the same ids).
func TestSocketAddress(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	addr := func(ctx context.Context, group string) string {
		a, err := socketAddress(ctx, "/run/s", "/run/containerd/containerd.sock", group)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	runc, err := shim.SocketAddress(ctx, "/run/s", "/run/containerd/containerd.sock", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	a := addr(ctx, "sb1")
	switch {
	case !strings.HasPrefix(a, "unix:///run/s/"):
		t.Errorf("address %s is not in the socket directory", a)
	case a == runc:
		t.Errorf("address %s is the runc shim's", a)
	case a != addr(ctx, "sb1"):
		t.Error("address not stable")
	case a == addr(ctx, "sb2"):
		t.Error("two groups share an address")
	case a == addr(namespaces.WithNamespace(context.Background(), "default"), "sb1"):
		t.Error("two namespaces share an address")
	}
}

// TestStartJoinsThePodsDaemon: when a daemon already serves the group's
// socket, start answers its address and starts nothing.
func TestStartJoinsThePodsDaemon(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	socketDir, err := os.MkdirTemp("/tmp", "s") // short: a socket's path is at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(socketDir) })
	b := bundle(t, map[string]string{cri.SandboxID: "sb1"})
	t.Chdir(b)
	want, err := socketAddress(ctx, socketDir, "/run/containerd/containerd.sock", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := shim.NewSocket(want)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := New().Start(ctx, &bootapi.BootstrapParams{InstanceID: "c2", SocketDir: &socketDir,
		ContainerdGrpcAddress: "/run/containerd/containerd.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Address != want || res.Version != 3 || res.Protocol != "ttrpc" {
		t.Errorf("start = %v, want version 3 ttrpc at %s", res, want)
	}
}

// TestStopCleansUpAVM: after its shim died, delete kills what the VM's
// state records — only processes still running in the VM's directory — and
// removes the directory; it answers 128+SIGKILL.
func TestStopCleansUpAVM(t *testing.T) {
	b := bundle(t, nil)
	dir := filepath.Join(b, vm.Dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sleep := func(cwd string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Dir = cwd
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	inVM, other := sleep(dir), sleep(t.TempDir())
	state, _ := json.Marshal(map[string]any{"pids": []int{inVM.Process.Pid, other.Process.Pid}})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(b)
	st, err := New().Stop(namespaces.WithNamespace(context.Background(), "default"), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitStatus != 128+int(syscall.SIGKILL) {
		t.Errorf("exit status %d, want %d", st.ExitStatus, 128+syscall.SIGKILL)
	}
	exited := make(chan error, 1)
	go func() { exited <- inVM.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the VM's process was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process outside the VM's directory was killed: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the VM's directory is left: %v", err)
	}
}
