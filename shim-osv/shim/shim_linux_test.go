package shim

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"google.golang.org/protobuf/proto"
)

// TestSocketAddress: the address containerd's shims compute, which the
// daemon relies on to predict a runc shim's socket.
func TestSocketAddress(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	for _, tc := range []struct{ dir, grpc, id string }{
		{"/run/containerd/s", "/run/containerd/containerd.sock", "sb1"},
		{"/tmp/x/s", "/tmp/x/c.sock", "pod/feather-osv"},
	} {
		got, err := SocketAddress(ctx, tc.dir, tc.grpc, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		want, err := cshim.CreateSocketAddress(ctx, tc.dir, tc.grpc, tc.id, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("SocketAddress(%q, %q, %q) = %q, containerd's %q", tc.dir, tc.grpc, tc.id, got, want)
		}
	}
	if _, err := SocketAddress(context.Background(), "/s", "/c", "x"); err == nil {
		t.Error("SocketAddress without a namespace: no error")
	}
}

// TestSocket: listen, connect, EADDRINUSE on a second listen, remove.
func TestSocket(t *testing.T) {
	address := "unix://" + filepath.Join(t.TempDir(), "d", "sock")
	l, err := NewSocket(address)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !CanConnect(address) {
		t.Error("CanConnect: false while listening")
	}
	if _, err := NewSocket(address); !SocketEaddrinuse(err) {
		t.Errorf("second NewSocket: %v, want EADDRINUSE", err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := RemoveSocket(address); err != nil {
		t.Fatal(err)
	}
	if CanConnect(address) {
		t.Error("CanConnect: true after remove")
	}
}

func TestParseBootstrapParams(t *testing.T) {
	good, err := proto.Marshal(&bootapi.BootstrapParams{InstanceID: "c1", Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		input []byte
		ok    bool
	}{
		{"matching", good, true},
		{"empty (containerd before 2.3)", nil, false},
		{"not a message", []byte{0xff, 0xff}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseBootstrapParams(tc.input, "c1", "ns")
			if tc.ok {
				if err != nil || p.GetInstanceID() != "c1" {
					t.Fatalf("parse: %v, %v", p, err)
				}
				return
			}
			if !errors.Is(err, errDeprecatedBootstrapAPI) {
				t.Errorf("parse: %v, want %v", err, errDeprecatedBootstrapAPI)
			}
		})
	}
	if _, err := parseBootstrapParams(good, "c2", "ns"); err == nil {
		t.Error("parameters of another id: no error")
	}
}

func TestDaemonEnv(t *testing.T) {
	for _, tc := range []struct {
		name          string
		environ, want []string
	}{
		{name: "none set: one P", environ: []string{"PATH=/bin"},
			want: []string{"PATH=/bin", "GOMAXPROCS=1", procsEnv + "=1"}},
		{name: "empty", environ: nil, want: []string{"GOMAXPROCS=1", procsEnv + "=1"}},
		{name: "containerd's kept", environ: []string{"GOMAXPROCS=4", "PATH=/bin"},
			want: []string{"GOMAXPROCS=4", "PATH=/bin"}},
		{name: "set empty is set", environ: []string{"GOMAXPROCS="}, want: []string{"GOMAXPROCS="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.environ)
			if got := DaemonEnv(in); !slices.Equal(got, tc.want) {
				t.Errorf("DaemonEnv(%q) = %q, want %q", tc.environ, got, tc.want)
			}
			if !slices.Equal(in, tc.environ) {
				t.Errorf("DaemonEnv changed its argument: %q", in)
			}
		})
	}
}
