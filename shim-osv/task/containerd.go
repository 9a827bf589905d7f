package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/feather-edge/feather/shim-osv/h2rpc"
	"github.com/feather-edge/feather/vmimage"
)

// containerdKinds tells a container's kind from containerd's containers,
// images and content services over its gRPC socket, with h2rpc and the few
// fields it reads of their messages (containerd's API packages carry their
// gRPC services, and so google.golang.org/grpc).
type containerdKinds struct {
	address string
}

// NewContainerdKinds returns a KindSource asking the containerd at the gRPC
// socket address, one connection per call.
func NewContainerdKinds(address string) KindSource {
	return &containerdKinds{address: strings.TrimPrefix(address, "unix://")}
}

// call calls method of containerd in ctx's namespace, handing recv each
// response message; a gRPC status becomes an errdefs error.
func (c *containerdKinds) call(ctx context.Context, method string, req []byte, recv func([]byte) error) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = h2rpc.Call(ctx, c.address, method, map[string]string{namespaces.GRPCHeader: ns}, req, recv)
	return errgrpc.ToNative(err)
}

// Kind returns the kind the container's labels name (ctr run and the CRI
// plugin copy the image's labels onto the container); when they name none,
// the kind its image's config names (labels, or the Feather prototype's
// top-level keys).
func (c *containerdKinds) Kind(ctx context.Context, id string) (vmimage.Kind, error) {
	// containerd.services.containers.v1: GetContainerRequest{id = 1},
	// GetContainerResponse{container = 1}, Container{labels = 2, image = 3}.
	var (
		labels = map[string]string{}
		image  string
	)
	err := c.call(ctx, "/containerd.services.containers.v1.Containers/Get", protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), id),
		func(b []byte) error {
			return eachField(b, func(num protowire.Number, v []byte) error {
				if num != 1 {
					return nil
				}
				return eachField(v, func(num protowire.Number, v []byte) error {
					switch num {
					case 2:
						return mapEntry(v, labels)
					case 3:
						image = string(v)
					}
					return nil
				})
			})
		})
	if err != nil {
		return vmimage.Kind{}, fmt.Errorf("get container %s: %w", id, err)
	}
	if k := vmimage.KindFromLabels(labels); k.IsVM() || image == "" {
		return k, nil
	}
	config, err := c.imageConfig(ctx, image)
	if err != nil {
		return vmimage.Kind{}, fmt.Errorf("image %s of container %s: %w", image, id, err)
	}
	return vmimage.KindOf(config)
}

// maxBlob bounds the manifests and configs read.
const maxBlob = 4 << 20

// imageConfig returns the config blob of image name for this platform.
func (c *containerdKinds) imageConfig(ctx context.Context, name string) ([]byte, error) {
	// containerd.services.images.v1: GetImageRequest{name = 1},
	// GetImageResponse{image = 1}, Image{target = 3};
	// containerd.types.Descriptor{media_type = 1, digest = 2, size = 3}.
	var desc ocispec.Descriptor
	err := c.call(ctx, "/containerd.services.images.v1.Images/Get", protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), name),
		func(b []byte) error {
			return eachField(b, func(num protowire.Number, v []byte) error {
				if num != 1 {
					return nil
				}
				return eachField(v, func(num protowire.Number, v []byte) error {
					if num != 3 {
						return nil
					}
					return eachField(v, func(num protowire.Number, v []byte) error {
						switch num {
						case 1:
							desc.MediaType = string(v)
						case 2:
							desc.Digest = digest.Digest(v)
						case 3:
							n, l := protowire.ConsumeVarint(v)
							if l < 0 {
								return protowire.ParseError(l)
							}
							desc.Size = int64(n)
						}
						return nil
					})
				})
			})
		})
	if err != nil {
		return nil, err
	}
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
	// containerd.services.content.v1: ReadContentRequest{digest = 1} (all
	// of it), a stream of ReadContentResponse{data = 2}.
	var b []byte
	err := c.call(ctx, "/containerd.services.content.v1.Content/Read", protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), d.Digest.String()),
		func(m []byte) error {
			return eachField(m, func(num protowire.Number, v []byte) error {
				if num == 2 {
					b = append(b, v...)
				}
				if len(b) > maxBlob {
					return fmt.Errorf("blob %s is over %d bytes", d.Digest, maxBlob)
				}
				return nil
			})
		})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Digest, err)
	}
	return b, nil
}

// eachField calls f with each field of the protobuf message b: its number,
// and its bytes (length-delimited) or the varint's encoding; other wire
// types are skipped.
func eachField(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				v = b[:n]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if v == nil && typ != protowire.BytesType && typ != protowire.VarintType {
			continue
		}
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}

// mapEntry adds the map<string, string> entry b (key = 1, value = 2) to m.
func mapEntry(b []byte, m map[string]string) error {
	var k, v string
	err := eachField(b, func(num protowire.Number, b []byte) error {
		switch num {
		case 1:
			k = string(b)
		case 2:
			v = string(b)
		}
		return nil
	})
	if err != nil {
		return errors.Join(errors.New("bad map entry"), err)
	}
	m[k] = v
	return nil
}
