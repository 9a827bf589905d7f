// Package containerd imports Flint's images into a containerd daemon
// through its API, as `ctr image import` does, and unpacks them for its
// default snapshotter so that `ctr run` and the Feather agent find them
// ready.
package containerd

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/vmimage"
)

// DefaultNamespace is the namespace the Feather agent runs pods in.
const DefaultNamespace = "feather"

// Import imports img, named img.Name, into the containerd at address (its
// gRPC socket) in namespace ns, and unpacks it for the image's platform
// and snapshotter ("" containerd's default). An image whose disk is a disk
// layer that containerd cannot unpack fails with an error saying to use
// the feather snapshotter (vmimage.ExplainUnpack).
// The image streams to containerd as an OCI layout tarball; nothing is
// written to disk on this side.
func Import(ctx context.Context, address, ns, snapshotter string, img image.Image) error {
	if img.Name == "" {
		return fmt.Errorf("import into containerd: the image has no name")
	}
	c, err := image.Read(ctx, img)
	if err != nil {
		return err
	}
	cl, err := client.New(address)
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, ns)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(image.WriteTar(ctx, pw, img)) }()
	plat := platforms.Only(c.Config.Platform)
	imgs, err := cl.Import(ctx, pr, client.WithImportPlatform(plat))
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("import %s into containerd at %s: %w", img.Name, address, err)
	}
	for _, i := range imgs {
		if err := client.NewImageWithPlatform(cl, i, plat).Unpack(ctx, snapshotter); err != nil {
			return fmt.Errorf("unpack %s in containerd: %w", i.Name, vmimage.ExplainUnpack(image.LayerTypes(c), err))
		}
	}
	return nil
}
