package task

import (
	"context"
	"fmt"
	"sync"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// containerdLabels reads container labels from containerd's containers
// service over its gRPC socket — the API package alone, not the full client.
type containerdLabels struct {
	address string
	once    sync.Once
	client  containersapi.ContainersClient
	err     error
}

// NewContainerdLabels returns a LabelSource asking the containerd at the
// gRPC socket address; it connects on first use.
func NewContainerdLabels(address string) LabelSource {
	return &containerdLabels{address: address}
}

// Labels returns the container's labels.
func (c *containerdLabels) Labels(ctx context.Context, id string) (map[string]string, error) {
	c.once.Do(func() {
		conn, err := grpc.NewClient("unix://"+c.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.err = err
			return
		}
		c.client = containersapi.NewContainersClient(conn)
	})
	if c.err != nil {
		return nil, c.err
	}
	// The namespace travels in the context's gRPC metadata.
	resp, err := c.client.Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("get container %s: %w", id, errgrpc.ToNative(err))
	}
	return resp.Container.Labels, nil
}
