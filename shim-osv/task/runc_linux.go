package task

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/feather-edge/feather/shim-osv/runcshim"
	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
)

// runcBackend hands containers that are not VMs to runc shims.
type runcBackend struct{ shims *runcshim.Shims }

var (
	_ Backend = runcBackend{}
	_ Task    = (*runcshim.Task)(nil)
)

// OwnEvents: the runc shim publishes its containers' events to containerd.
func (runcBackend) OwnEvents() bool { return true }

// Create has a runc shim create the container (see runcshim.Shims.Create).
func (b runcBackend) Create(ctx context.Context, r *taskAPI.CreateTaskRequest, _ *specs.Spec) (Task, *taskAPI.CreateTaskResponse, error) {
	t, resp, err := b.shims.Create(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	return t, resp, nil
}
