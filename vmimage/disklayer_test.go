package vmimage

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestDiskLayerMediaTypes(t *testing.T) {
	for _, format := range []string{FormatRaw, FormatQCOW2} {
		mt := DiskLayerMediaType(format)
		if got, ok := DiskLayerFormat(mt); !ok || got != format {
			t.Errorf("DiskLayerFormat(%q) = %q, %v; want %q", mt, got, ok, format)
		}
		if !strings.HasPrefix(mt, "application/vnd.oci.image.layer.") {
			t.Errorf("%s: containerd's unpacker takes only application/vnd.oci.image.layer.* as layers", mt)
		}
	}
	if _, ok := DiskLayerFormat(ocispec.MediaTypeImageLayerGzip); ok {
		t.Error("a tar layer is no disk layer")
	}
}

func TestExplainUnpack(t *testing.T) {
	noProcessor := errors.New("failed to get stream processor for " + MediaTypeDiskLayerRaw + ": no processor for media-type")
	damaged := fmt.Errorf("disk layer: content does not match its digest: %w", errdefs.ErrDataLoss)
	for _, tc := range []struct {
		name   string
		types  []string
		err    error
		hint   bool
		wantIs error
	}{
		{"walking differ on a disk layer", []string{ocispec.MediaTypeImageLayerGzip, MediaTypeDiskLayerRaw}, noProcessor, true, errdefs.ErrNotImplemented},
		{"damaged disk layer", []string{MediaTypeDiskLayerRaw}, damaged, false, errdefs.ErrDataLoss},
		{"tar image", []string{ocispec.MediaTypeImageLayerGzip}, noProcessor, false, nil},
		{"no error", []string{MediaTypeDiskLayerRaw}, nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ExplainUnpack(tc.types, tc.err)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("ExplainUnpack(nil) = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap containerd's error", err)
			}
			hinted := strings.Contains(err.Error(), "--snapshotter feather") && strings.Contains(err.Error(), MediaTypeDiskLayerRaw)
			if hinted != tc.hint {
				t.Errorf("ExplainUnpack = %v; want the feather snapshotter named: %v", err, tc.hint)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("%v is not %v", err, tc.wantIs)
			}
		})
	}
}
