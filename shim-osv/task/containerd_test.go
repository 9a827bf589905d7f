package task

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/feather-edge/feather/vmimage"
)

// fakeContainerd serves containerd's containers, images and content
// services with google.golang.org/grpc, the server containerd runs, for
// containerdKinds' own HTTP/2 client to talk to.
type fakeContainerd struct {
	containers map[string]*containersapi.Container
	images     map[string]*imagesapi.Image
	blobs      map[digest.Digest][]byte
	namespaces []string // of each call
}

func (f *fakeContainerd) ns(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.namespaces = append(f.namespaces, strings.Join(md.Get(namespaces.GRPCHeader), ","))
}

type fakeContainers struct {
	containersapi.UnimplementedContainersServer
	*fakeContainerd
}

func (f fakeContainers) Get(ctx context.Context, r *containersapi.GetContainerRequest) (*containersapi.GetContainerResponse, error) {
	f.ns(ctx)
	c, ok := f.containers[r.ID]
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "container %q", r.ID)
	}
	return &containersapi.GetContainerResponse{Container: c}, nil
}

type fakeImages struct {
	imagesapi.UnimplementedImagesServer
	*fakeContainerd
}

func (f fakeImages) Get(ctx context.Context, r *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	f.ns(ctx)
	img, ok := f.images[r.Name]
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "image %q", r.Name)
	}
	return &imagesapi.GetImageResponse{Image: img}, nil
}

type fakeContent struct {
	contentapi.UnimplementedContentServer
	*fakeContainerd
}

func (f fakeContent) Read(r *contentapi.ReadContentRequest, s contentapi.Content_ReadServer) error {
	f.ns(s.Context())
	b, ok := f.blobs[digest.Digest(r.Digest)]
	if !ok {
		return errgrpc.ToGRPCf(errdefs.ErrNotFound, "content digest %s", r.Digest)
	}
	// In pieces, as containerd sends them (1 MiB each), here smaller than
	// an HTTP/2 frame and larger than one.
	for off, size := 0, 1000; off < len(b); off, size = off+size, 3*size {
		end := min(off+size, len(b))
		if err := s.Send(&contentapi.ReadContentResponse{Offset: int64(off), Data: b[off:end]}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeContainerd) blob(t *testing.T, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

func serveFake(t *testing.T, f *fakeContainerd) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	containersapi.RegisterContainersServer(s, fakeContainers{fakeContainerd: f})
	imagesapi.RegisterImagesServer(s, fakeImages{fakeContainerd: f})
	contentapi.RegisterContentServer(s, fakeContent{fakeContainerd: f})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return sock
}

// TestContainerdKinds: the kind from the container's labels, else from its
// image's config through an index and a manifest (blobs over several HTTP/2
// frames and stream messages); containerd's errors as errdefs; the
// namespace in every call.
func TestContainerdKinds(t *testing.T) {
	f := &fakeContainerd{containers: map[string]*containersapi.Container{}, images: map[string]*imagesapi.Image{},
		blobs: map[digest.Digest][]byte{}}
	config := f.blob(t, map[string]any{
		"config":  map[string]any{"Labels": map[string]string{vmimage.LabelBackend: "osv"}},
		"padding": strings.Repeat("x", 100_000), // several frames and messages
	})
	config.MediaType = ocispec.MediaTypeImageConfig
	manifest := f.blob(t, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config})
	manifest.MediaType = ocispec.MediaTypeImageManifest
	manifest.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	other := manifest
	other.Platform = &ocispec.Platform{OS: "windows", Architecture: "arm64"}
	other.Digest = digest.FromString("not here")
	index := f.blob(t, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{other, manifest}})
	f.images["vm:latest"] = &imagesapi.Image{Name: "vm:latest", Target: &types.Descriptor{
		MediaType: ocispec.MediaTypeImageIndex, Digest: index.Digest.String(), Size: index.Size}}
	plain := f.blob(t, map[string]any{"config": map[string]any{}})
	f.images["plain:latest"] = &imagesapi.Image{Name: "plain:latest", Target: &types.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig, Digest: plain.Digest.String(), Size: plain.Size}}
	f.containers["labelled"] = &containersapi.Container{ID: "labelled", Image: "gone:latest",
		Labels: map[string]string{vmimage.LabelBackend: "osv", "other": "x"}}
	f.containers["from-image"] = &containersapi.Container{ID: "from-image", Image: "vm:latest"}
	f.containers["no-image"] = &containersapi.Container{ID: "no-image"}
	f.containers["missing-image"] = &containersapi.Container{ID: "missing-image", Image: "missing:latest"}
	kinds := NewContainerdKinds("unix://" + serveFake(t, f))
	ctx := namespaces.WithNamespace(context.Background(), "ns1")

	for _, tc := range []struct {
		name, id string
		vm       bool
		err      error
	}{
		{"labels", "labelled", true, nil},
		{"image config through an index", "from-image", true, nil},
		{"no image", "no-image", false, nil},
		{"no such container", "nope", false, errdefs.ErrNotFound},
		{"no such image", "missing-image", false, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := kinds.Kind(ctx, tc.id)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Kind: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.IsVM() != tc.vm {
				t.Errorf("Kind = %+v, VM %v, want %v", k, k.IsVM(), tc.vm)
			}
		})
	}
	for i, ns := range f.namespaces {
		if ns != "ns1" {
			t.Errorf("call %d had namespace %q, want ns1", i, ns)
		}
	}
	if _, err := kinds.Kind(context.Background(), "labelled"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Kind without a namespace: %v, want a failed precondition", err)
	}
}
