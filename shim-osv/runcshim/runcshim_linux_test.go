package runcshim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
)

func TestDelegated(t *testing.T) {
	bundle := t.TempDir()
	if Delegated(bundle) {
		t.Error("a bundle without the marker is delegated")
	}
	os.WriteFile(filepath.Join(bundle, Marker), []byte("unix:///run/containerd/s/x"), 0o600)
	if !Delegated(bundle) {
		t.Error("a bundle with the marker is not delegated")
	}
}

// TestStartWithoutRuncShim: without containerd-shim-runc-v2 the error says
// what is missing and why it is needed, and nothing is left in the bundle.
func TestStartWithoutRuncShim(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	bundle := t.TempDir()
	_, err := New(Config{Namespace: "default", Bundle: bundle}).Start(context.Background(), "c1", bundle)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), Binary) {
		t.Fatalf("err = %v, want a failed precondition naming %s", err, Binary)
	}
	if ents, _ := os.ReadDir(bundle); len(ents) != 0 {
		t.Errorf("bundle holds %v", ents)
	}
}

// fakeRuncShim is the runc shim's task service, recording the calls it got.
type fakeRuncShim struct {
	taskAPI.TTRPCTaskService // nil: any call not below panics
	calls                    []string
}

func (f *fakeRuncShim) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	f.calls = append(f.calls, "delete "+r.ExecID)
	return &taskAPI.DeleteResponse{ExitStatus: 7}, nil
}

func (f *fakeRuncShim) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	f.calls = append(f.calls, "shutdown")
	return &emptypb.Empty{}, nil
}

func (f *fakeRuncShim) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	f.calls = append(f.calls, fmt.Sprintf("kill %d", r.Signal))
	return &emptypb.Empty{}, nil
}

// TestTaskDelete: calls are forwarded as they are; the container's own
// Delete (not an exec's) also asks the runc shim to shut down and drops the
// connection once no container of this shim uses it.
func TestTaskDelete(t *testing.T) {
	ctx := context.Background()
	fake := &fakeRuncShim{}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s := New(Config{})
	sh := &Shim{Address: "unix:///x", Task: fake, client: ttrpc.NewClient(c1), refs: 2}
	s.shims[sh.Address] = sh
	a, b := &Task{sh: sh, shims: s}, &Task{sh: sh, shims: s}
	if err := a.Kill(ctx, &taskAPI.KillRequest{ID: "a", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, &taskAPI.DeleteRequest{ID: "a", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Delete(ctx, &taskAPI.DeleteRequest{ID: "a"}); err != nil || r.ExitStatus != 7 {
		t.Fatalf("delete = %v, %v", r, err)
	}
	if s.shims[sh.Address] == nil {
		t.Fatal("connection dropped while container b uses it")
	}
	if _, err := b.Delete(ctx, &taskAPI.DeleteRequest{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	if s.shims[sh.Address] != nil {
		t.Error("connection kept after its last container")
	}
	want := []string{"kill 15", "delete e1", "delete ", "shutdown", "delete ", "shutdown"}
	if !slices.Equal(fake.calls, want) {
		t.Errorf("calls %q, want %q", fake.calls, want)
	}
}
