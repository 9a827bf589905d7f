package task

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/feather-edge/feather/vmimage"
)

// containerdKinds tells a container's kind from containerd's containers,
// images and content services over its gRPC socket — the API packages
// alone, not the full client.
type containerdKinds struct {
	address string
	once    sync.Once
	conn    *grpc.ClientConn
	err     error
}

// NewContainerdKinds returns a KindSource asking the containerd at the gRPC
// socket address; it connects on first use.
func NewContainerdKinds(address string) KindSource {
	return &containerdKinds{address: address}
}

// Kind returns the kind the container's labels name (ctr run and the CRI
// plugin copy the image's labels onto the container); when they name none,
// the kind its image's config names (labels, or the Feather prototype's
// top-level keys).
func (c *containerdKinds) Kind(ctx context.Context, id string) (vmimage.Kind, error) {
	c.once.Do(func() {
		c.conn, c.err = grpc.NewClient("unix://"+c.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	if c.err != nil {
		return vmimage.Kind{}, c.err
	}
	// The namespace travels in the context's gRPC metadata.
	resp, err := containersapi.NewContainersClient(c.conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return vmimage.Kind{}, fmt.Errorf("get container %s: %w", id, errgrpc.ToNative(err))
	}
	if k := vmimage.KindFromLabels(resp.Container.Labels); k.IsVM() || resp.Container.Image == "" {
		return k, nil
	}
	config, err := c.imageConfig(ctx, resp.Container.Image)
	if err != nil {
		return vmimage.Kind{}, fmt.Errorf("image %s of container %s: %w", resp.Container.Image, id, err)
	}
	return vmimage.KindOf(config)
}

// maxBlob bounds the manifests and configs read.
const maxBlob = 4 << 20

// imageConfig returns the config blob of image name for this platform.
func (c *containerdKinds) imageConfig(ctx context.Context, name string) ([]byte, error) {
	img, err := imagesapi.NewImagesClient(c.conn).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	t := img.Image.Target
	desc := ocispec.Descriptor{MediaType: t.MediaType, Digest: digest.Digest(t.Digest), Size: t.Size}
	match := platforms.Default()
	for range 4 { // index → manifest → config, with room for a nested index
		b, err := c.read(ctx, desc)
		if err != nil {
			return nil, err
		}
		var m struct {
			MediaType string               `json:"mediaType"`
			Config    ocispec.Descriptor   `json:"config"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("parse %s: %w", desc.Digest, err)
		}
		switch {
		case m.Config.Digest != "":
			return c.read(ctx, m.Config)
		case len(m.Manifests) > 0:
			next := -1
			for i, d := range m.Manifests {
				if d.Platform == nil || match.Match(*d.Platform) {
					next = i
					break
				}
			}
			if next < 0 {
				return nil, fmt.Errorf("index %s has no manifest for %s", desc.Digest, platforms.DefaultString())
			}
			desc = m.Manifests[next]
		default:
			return nil, fmt.Errorf("%s is neither a manifest nor an index", desc.Digest)
		}
	}
	return nil, fmt.Errorf("image %s: indexes nested too deep", name)
}

// read returns a blob from the content store.
func (c *containerdKinds) read(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > maxBlob {
		return nil, fmt.Errorf("blob %s is %d bytes, over %d", d.Digest, d.Size, maxBlob)
	}
	stream, err := contentapi.NewContentClient(c.conn).Read(ctx, &contentapi.ReadContentRequest{Digest: d.Digest.String()})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	var b []byte
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", d.Digest, errgrpc.ToNative(err))
		}
		b = append(b, resp.Data...)
		if len(b) > maxBlob {
			return nil, fmt.Errorf("blob %s is over %d bytes", d.Digest, maxBlob)
		}
	}
}
