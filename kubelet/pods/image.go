package pods

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readContent reads blob desc of image from containerd's content store.
func readContent(ctx context.Context, image client.Image, desc ocispec.Descriptor) ([]byte, error) {
	b, err := content.ReadBlob(ctx, image.ContentStore(), desc)
	if err != nil {
		return nil, fmt.Errorf("read %s of image %s: %w", desc.Digest, image.Name(), err)
	}
	return b, nil
}

// imageConfig returns image's runtime configuration (entrypoint, cmd, …).
func imageConfig(ctx context.Context, image client.Image) (ocispec.ImageConfig, error) {
	desc, err := image.Config(ctx)
	if err != nil {
		return ocispec.ImageConfig{}, err
	}
	b, err := readContent(ctx, image, desc)
	if err != nil {
		return ocispec.ImageConfig{}, err
	}
	var img ocispec.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return ocispec.ImageConfig{}, fmt.Errorf("parse config of image %s: %w", image.Name(), err)
	}
	return img.Config, nil
}
