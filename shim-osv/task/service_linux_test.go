package task

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/runcshim"
	"github.com/feather-edge/feather/vmimage"
)

// kinds is a KindSource answering one kind, or an error.
type kinds struct {
	kind vmimage.Kind
	err  error
}

func (k kinds) Kind(context.Context, string) (vmimage.Kind, error) { return k.kind, k.err }

func TestIsVM(t *testing.T) {
	osv := vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}
	broken := errors.New("containerd unreachable")
	sandbox := cri.Annotations{cri.ContainerType: cri.ContainerTypeSandbox}
	for _, tc := range []struct {
		name  string
		kinds KindSource
		ann   cri.Annotations
		disk  bool // the root filesystem holds feather/disk
		want  bool
		err   error
	}{
		{"labelled VM image", kinds{kind: osv}, nil, true, true, nil},
		{"labelled, no disk yet", kinds{kind: osv}, nil, false, true, nil},
		{"unknown backend", kinds{kind: vmimage.Kind{Backend: "wasm", Runtime: "qemu"}}, nil, true, false, errdefs.ErrInvalidArgument},
		{"container image", kinds{}, nil, false, false, nil},
		{"unlabelled image with a VM disk", kinds{}, nil, true, true, nil},
		{"pod sandbox", kinds{err: broken}, sandbox, false, false, nil},
		{"kind unknown", kinds{err: broken}, nil, false, false, broken},
		{"no containerd to ask", nil, nil, false, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := t.TempDir()
			if tc.disk {
				os.MkdirAll(filepath.Join(bundle, "rootfs", "feather"), 0o755)
				os.WriteFile(filepath.Join(bundle, "rootfs", vmimage.DiskPath), []byte("disk"), 0o644)
			}
			s := &Service{kinds: tc.kinds, runc: runcBackend{runcshim.New(runcshim.Config{})}}
			got, err := s.isVM(context.Background(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bundle}, tc.ann)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("isVM = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
