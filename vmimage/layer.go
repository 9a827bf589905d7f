package vmimage

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/ocilayout"
)

// File is one file of a VM image to put in a layer.
type File struct {
	// Path is where it goes in the root filesystem: DiskPath, KernelPath
	// or InitrdPath.
	Path string
	// Size is its length in bytes; Content must give exactly that many.
	Size int64
	// Content is read once by WriteLayer.
	Content io.Reader
}

// WriteLayer writes an uncompressed tar layer of files to w: the
// directories above them first, then the files, each sorted by path, with
// mode 0755 or 0644, owner 0:0 and time ocilayout.Epoch, so that the same files give
// the same bytes. It does not close w.
func WriteLayer(w io.Writer, files []File) error {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var dirs []string
	for _, f := range files {
		if _, err := CleanPath(f.Path); err != nil {
			return err
		}
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	tw := tar.NewWriter(w)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: ocilayout.Epoch}); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: 0o644, Size: f.Size, ModTime: ocilayout.Epoch}); err != nil {
			return fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
		n, err := io.Copy(tw, f.Content)
		if err != nil {
			return fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
		if n != f.Size {
			return fmt.Errorf("layer entry %s: read %d bytes, want %d (did the file change while packing?)", f.Path, n, f.Size)
		}
	}
	return tw.Close()
}

// CleanPath returns a layer entry's name as a path relative to the root
// filesystem ("./feather/disk" → "feather/disk"), or an ErrInvalidArgument
// error when the name is absolute or climbs out of the root with "..": an
// image with such an entry is refused, never extracted.
func CleanPath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("layer entry %q is an absolute path: refusing the image: %w", name, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(strings.ReplaceAll(name, `\`, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("layer entry %q climbs out of the root filesystem with \"..\": refusing the image: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return path.Clean(name), nil
}

// Media types of a disk layer: a layer whose blob is the boot disk's bytes
// (raw or qcow2), not a tar of it, so that the feather snapshotter's differ
// can link the blob from containerd's content store into the snapshot at
// DiskPath instead of extracting a copy (see snapshotter/README.md). Its
// diff ID is the blob's digest. They start with containerd's layer prefix
// ("application/vnd.oci.image.layer."), as containerd's unpacker only
// hands such descriptors (and EROFS ones) to a differ; any other differ
// refuses them as a media type it has no processor for.
const (
	MediaTypeDiskLayerRaw   = "application/vnd.oci.image.layer.v1.feather.disk.raw"
	MediaTypeDiskLayerQCOW2 = "application/vnd.oci.image.layer.v1.feather.disk.qcow2"
)

// DiskLayerFormat returns the disk format (FormatRaw or FormatQCOW2) that a
// disk layer of mediaType holds, and whether mediaType is a disk layer's.
func DiskLayerFormat(mediaType string) (string, bool) {
	switch mediaType {
	case MediaTypeDiskLayerRaw:
		return FormatRaw, true
	case MediaTypeDiskLayerQCOW2:
		return FormatQCOW2, true
	}
	return "", false
}

// DiskLayerMediaType returns the media type of a disk layer holding a disk
// of format (FormatRaw or FormatQCOW2), "" for another format.
func DiskLayerMediaType(format string) string {
	switch format {
	case FormatRaw:
		return MediaTypeDiskLayerRaw
	case FormatQCOW2:
		return MediaTypeDiskLayerQCOW2
	}
	return ""
}

// ExplainUnpack returns err, containerd's error unpacking an image whose
// layers are of the given media types, with what to do in front when it
// says that no differ takes the image's disk layer (the image was unpacked
// without the feather snapshotter and its differ): an ErrNotImplemented
// error naming the media type and the feather snapshotter. Any other error
// (a damaged blob, say) is returned as it is.
func ExplainUnpack(mediaTypes []string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.Contains(msg, "no processor for media-type") && !errdefs.IsNotImplemented(err) {
		return err
	}
	for _, mt := range mediaTypes {
		if _, ok := DiskLayerFormat(mt); ok {
			return fmt.Errorf("the image's disk is a layer of media type %s (the disk's bytes, not a tar), which only the feather snapshotter's differ unpacks: "+
				"unpack it with --snapshotter feather on a containerd configured for feather-snapshotter's snapshot and diff plugins (snapshotter/README.md), "+
				"or pack the image again with flint pack --disk-layer=tar: %w (containerd: %w)", mt, errdefs.ErrNotImplemented, err)
		}
	}
	return err
}
