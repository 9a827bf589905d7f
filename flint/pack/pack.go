// Package pack turns a unikernel build — an OSv disk image, raw or qcow2,
// and optionally a kernel and initrd for direct boot — into a Feather VM
// image: an OCI image whose config carries vmimage's labels and the app's
// command, and whose layers put the files where vmimage says.
//
// Packing is reproducible: fixed times, sorted entries, deterministic
// compression, so the same inputs give the same digests.
package pack

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/disk"
	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/ocilayout"
	"github.com/feather-edge/feather/osv"
	"github.com/feather-edge/feather/vmimage"
)

// Layer compressions.
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// How the disk is laid out in the image (Options.DiskLayer).
const (
	// DiskLayerTar puts the disk in a tar layer, as a file at
	// vmimage.DiskPath: every containerd snapshotter unpacks it, by
	// extracting a copy, so a node keeps the disk twice (blob and copy).
	DiskLayerTar = "tar"
	// DiskLayerRaw and DiskLayerQCOW2 make the disk a layer of its own
	// media type (vmimage.MediaTypeDiskLayerRaw, …QCOW2): the disk's
	// bytes, uncompressed, which the feather snapshotter links into the
	// snapshot, so a node keeps it once; containerd without that
	// snapshotter cannot unpack it. The disk must be of that format.
	DiskLayerRaw   = "raw"
	DiskLayerQCOW2 = "qcow2"
)

// Options are what Pack packs.
type Options struct {
	// Disk is the boot disk image file, raw or qcow2. Required.
	Disk string
	// Kernel is an optional kernel (ELF or bzImage) for direct boot;
	// Initrd an optional initial ramdisk for it.
	Kernel, Initrd string
	// Cmd is the app's OSv command line (OSv's syntax: package osv). When "",
	// the command line stored on the disk at byte 512 is used.
	Cmd string
	// Env are K=V pairs, added to (and overriding) the command line's
	// --env= options.
	Env []string
	// Workdir is the working directory; it overrides the command line's
	// --cwd=.
	Workdir string
	// Backend and Runtime are the image's kind; "" means osv and qemu.
	Backend, Runtime string
	// Labels are extra image config labels; they may not set the kind's.
	Labels map[string]string
	// Annotations go on the manifest.
	Annotations map[string]string
	// Platform is the image's platform; linux/amd64 when OS is "".
	Platform ocispec.Platform
	// Created is the image's creation time; ocilayout.Epoch when nil, so
	// that the same inputs give the same digests.
	Created *time.Time
	// Compression is CompressionGzip ("" too) or CompressionNone, for the
	// tar layers; a disk layer is never compressed.
	Compression string
	// DiskLayer is DiskLayerTar ("" too), DiskLayerRaw or DiskLayerQCOW2.
	// Until the image is written, the disk file must not change: a disk
	// layer's blob is that file.
	DiskLayer string
	// TempDir is where the layers are written while packed; os.TempDir()
	// when "".
	TempDir string
}

// Packed is a packed image: its layers lie in a temporary directory until
// Close.
type Packed struct {
	image.Image
	// Config is the image config.
	Config ocispec.Image
	// Disk is what the disk's header says.
	Disk vmimage.DiskInfo

	dir string
}

// Close removes the packed layers. The Image is unusable afterwards.
func (p *Packed) Close() error { return os.RemoveAll(p.dir) }

// Pack packs o. Errors about the input (a missing file, a file that is no
// disk image or kernel, an unknown backend) say what is wrong and wrap
// ErrInvalidArgument or fs.ErrNotExist; on error nothing is left behind.
func Pack(ctx context.Context, o Options) (_ *Packed, err error) {
	cfg, err := configFromOptions(o)
	if err != nil {
		return nil, err
	}
	if o.Disk == "" {
		return nil, fmt.Errorf("no disk image given: %w", errdefs.ErrInvalidArgument)
	}
	d, err := disk.Open(o.Disk)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	kernel, initrd, err := openBootFiles(o)
	if err != nil {
		return nil, err
	}
	defer kernel.close()
	defer initrd.close()
	if kernel.f == nil {
		// A disk this reader cannot map goes unchecked: QEMU reads it.
		boot, err := d.Bootable()
		if err != nil && !errdefs.IsNotImplemented(err) {
			return nil, fmt.Errorf("disk %s: %w", o.Disk, err)
		}
		if err == nil && !boot {
			return nil, fmt.Errorf("disk %s has no boot sector (no 0x55AA signature at byte 510) and no --kernel is given: it cannot boot: %w", o.Disk, errdefs.ErrInvalidArgument)
		}
	}
	if o.DiskLayer != "" && o.DiskLayer != DiskLayerTar && o.DiskLayer != d.Format {
		return nil, fmt.Errorf("--disk-layer=%s, but disk %s is %s: use --disk-layer=%s (or tar): %w", o.DiskLayer, o.Disk, d.Format, d.Format, errdefs.ErrInvalidArgument)
	}
	cmd, err := command(o, d)
	if err != nil {
		return nil, err
	}
	cfg.Config.Cmd = cmd.Args
	cfg.Config.Env = mergeEnv(cmd.Env, o.Env)
	cfg.Config.WorkingDir = cmd.Cwd
	if o.Workdir != "" {
		cfg.Config.WorkingDir = o.Workdir
	}

	p := &Packed{Config: cfg, Disk: d.DiskInfo}
	if p.dir, err = os.MkdirTemp(o.TempDir, "flint-pack-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	compression := o.Compression
	if compression == "" {
		compression = CompressionGzip
	}
	var store image.Store
	var layers []ocispec.Descriptor
	var groups [][]vmimage.File
	if kernel.f != nil {
		boot := []vmimage.File{kernel.file(vmimage.KernelPath)}
		if initrd.f != nil {
			boot = append(boot, initrd.file(vmimage.InitrdPath))
		}
		groups = append(groups, boot)
	}
	diskFile := vmimage.File{Path: vmimage.DiskPath, Size: d.Size, Content: io.NewSectionReader(d.File(), 0, d.Size)}
	diskLayer := o.DiskLayer != "" && o.DiskLayer != DiskLayerTar
	if !diskLayer {
		groups = append(groups, []vmimage.File{diskFile})
	}
	for i, files := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, diffID, err := writeLayer(filepath.Join(p.dir, fmt.Sprintf("layer%d", i)), files, compression, &store)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
		p.Config.RootFS.DiffIDs = append(p.Config.RootFS.DiffIDs, diffID)
	}
	if diskLayer {
		l, err := addDiskLayer(o.Disk, diskFile, d.Format, &store)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
		p.Config.RootFS.DiffIDs = append(p.Config.RootFS.DiffIDs, l.Digest)
	}
	p.Config.RootFS.Type = "layers"
	p.Image, err = assemble(&store, p.Config, layers, o.Annotations)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// configFromOptions checks the options that need no file and returns the
// image config they make, without command or layers.
func configFromOptions(o Options) (ocispec.Image, error) {
	kind := vmimage.Kind{Backend: o.Backend, Runtime: o.Runtime}
	if kind.Backend == "" {
		kind.Backend = vmimage.BackendOSV
	}
	if kind.Runtime == "" {
		kind.Runtime = vmimage.RuntimeQEMU
	}
	if err := kind.Validate(); err != nil {
		return ocispec.Image{}, fmt.Errorf("--backend %s --runtime %s: %w", kind.Backend, kind.Runtime, err)
	}
	labels := kind.Labels()
	for k, v := range o.Labels {
		if _, reserved := labels[k]; reserved || strings.HasPrefix(k, "fledge.") {
			return ocispec.Image{}, fmt.Errorf("label %s is set by --backend and --runtime, not --label: %w", k, errdefs.ErrInvalidArgument)
		}
		labels[k] = v
	}
	for _, kv := range o.Env {
		if i := strings.Index(kv, "="); i <= 0 {
			return ocispec.Image{}, fmt.Errorf("--env %q is not KEY=VALUE: %w", kv, errdefs.ErrInvalidArgument)
		}
	}
	switch o.DiskLayer {
	case "", DiskLayerTar, DiskLayerRaw, DiskLayerQCOW2:
	default:
		return ocispec.Image{}, fmt.Errorf("--disk-layer %q: want %s, %s or %s: %w", o.DiskLayer, DiskLayerTar, DiskLayerRaw, DiskLayerQCOW2, errdefs.ErrInvalidArgument)
	}
	if o.Compression != "" && o.Compression != CompressionGzip && o.Compression != CompressionNone {
		return ocispec.Image{}, fmt.Errorf("compression %q: want %s or %s: %w", o.Compression, CompressionGzip, CompressionNone, errdefs.ErrInvalidArgument)
	}
	plat := o.Platform
	if plat.OS == "" {
		plat = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	}
	created := o.Created
	if created == nil {
		created = &ocilayout.Epoch
	}
	return ocispec.Image{
		Created:  created,
		Platform: plat,
		Config:   ocispec.ImageConfig{Labels: labels},
	}, nil
}

// command returns the app's command: from --cmd, else from the disk.
func command(o Options, d *disk.Disk) (osv.Cmdline, error) {
	if o.Cmd != "" {
		c, err := single(o.Cmd)
		if err != nil {
			return c, fmt.Errorf("--cmd: %w", err)
		}
		return c, nil
	}
	stored, err := d.Cmdline()
	if err != nil {
		return osv.Cmdline{}, fmt.Errorf("no --cmd given, and disk %s: %w", o.Disk, err)
	}
	if strings.TrimSpace(stored) == "" {
		return osv.Cmdline{}, fmt.Errorf("no --cmd given, and disk %s stores no OSv command line at byte %d: give the app's command with --cmd: %w",
			o.Disk, osv.CmdlineOffset, errdefs.ErrInvalidArgument)
	}
	c, err := single(stored)
	if err != nil {
		return c, fmt.Errorf("the command line stored on disk %s: %w", o.Disk, err)
	}
	return c, nil
}

// single reads an OSv command line of one command.
func single(s string) (osv.Cmdline, error) {
	l, err := osv.Parse(s)
	if err != nil {
		return osv.Cmdline{}, err
	}
	return l.Single()
}

// mergeEnv returns base with extra added, an extra KEY replacing base's.
func mergeEnv(base, extra []string) []string {
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	var out []string
	for _, kv := range base {
		if !slices.ContainsFunc(extra, func(e string) bool { return key(e) == key(kv) }) {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// bootFile is an optional kernel or initrd, open.
type bootFile struct {
	f    *os.File
	size int64
}

func (b bootFile) close() {
	if b.f != nil {
		b.f.Close()
	}
}

func (b bootFile) file(path string) vmimage.File {
	return vmimage.File{Path: path, Size: b.size, Content: io.NewSectionReader(b.f, 0, b.size)}
}

func openBootFiles(o Options) (kernel, initrd bootFile, err error) {
	if o.Initrd != "" && o.Kernel == "" {
		return kernel, initrd, fmt.Errorf("--initrd %s without --kernel: an initrd is loaded by the kernel QEMU boots directly: %w", o.Initrd, errdefs.ErrInvalidArgument)
	}
	open := func(flag, path string) (bootFile, []byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return bootFile{}, nil, fmt.Errorf("%s: %w", flag, err)
		}
		fi, err := f.Stat()
		if err == nil && (!fi.Mode().IsRegular() || fi.Size() == 0) {
			err = fmt.Errorf("%s is empty or not a regular file: %w", path, errdefs.ErrInvalidArgument)
		}
		head := make([]byte, vmimage.HeadSize)
		n := 0
		if err == nil {
			n, err = f.ReadAt(head, 0)
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		if err != nil {
			f.Close()
			return bootFile{}, nil, fmt.Errorf("%s: %w", flag, err)
		}
		return bootFile{f: f, size: fi.Size()}, head[:n], nil
	}
	if o.Kernel != "" {
		var head []byte
		if kernel, head, err = open("--kernel", o.Kernel); err != nil {
			return kernel, initrd, err
		}
		if _, err := vmimage.ProbeKernel(head); err != nil {
			kernel.close()
			return bootFile{}, initrd, fmt.Errorf("--kernel %s: %w", o.Kernel, err)
		}
	}
	if o.Initrd != "" {
		if initrd, _, err = open("--initrd", o.Initrd); err != nil {
			kernel.close()
			return bootFile{}, bootFile{}, err
		}
	}
	return kernel, initrd, nil
}

// writeLayer writes a layer of files to path, compressed as asked, adds it
// to store and returns its descriptor and diff ID.
func writeLayer(path string, files []vmimage.File, compression string, store *image.Store) (ocispec.Descriptor, digest.Digest, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer f.Close()
	blobHash := sha256.New()
	counter := &countWriter{w: io.MultiWriter(f, blobHash)}
	diffHash := sha256.New()
	mediaType := ocispec.MediaTypeImageLayer
	var tarOut io.Writer = io.MultiWriter(counter, diffHash)
	var zw *gzip.Writer
	if compression != CompressionNone {
		mediaType = ocispec.MediaTypeImageLayerGzip
		// No name, no time: the same tar gives the same bytes.
		zw = gzip.NewWriter(counter)
		tarOut = io.MultiWriter(zw, diffHash)
	}
	if err := vmimage.WriteLayer(tarOut, files); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return ocispec.Descriptor{}, "", err
		}
	}
	if err := f.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d := ocispec.Descriptor{MediaType: mediaType, Digest: sum(blobHash), Size: counter.n}
	store.AddFile(d.Digest, path)
	return d, sum(diffHash), nil
}

// addDiskLayer adds the disk file at path (f reads it) to store as a disk
// layer of format and returns its descriptor; its diff ID is its digest.
func addDiskLayer(path string, f vmimage.File, format string, store *image.Store) (ocispec.Descriptor, error) {
	h := sha256.New()
	n, err := io.Copy(h, f.Content)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read disk %s: %w", path, err)
	}
	if n != f.Size {
		return ocispec.Descriptor{}, fmt.Errorf("disk %s: read %d bytes, want %d (did the file change while packing?)", path, n, f.Size)
	}
	d := ocispec.Descriptor{MediaType: vmimage.DiskLayerMediaType(format), Digest: sum(h), Size: n}
	store.AddFile(d.Digest, path)
	return d, nil
}

func sum(h hash.Hash) digest.Digest { return digest.NewDigest(digest.SHA256, h) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// assemble adds the config and manifest to store and returns the image.
func assemble(store *image.Store, cfg ocispec.Image, layers []ocispec.Descriptor, annotations map[string]string) (image.Image, error) {
	cb, err := json.Marshal(cfg)
	if err != nil {
		return image.Image{}, err
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      store.AddBytes(ocispec.MediaTypeImageConfig, cb),
		Layers:      layers,
		Annotations: maps.Clone(annotations),
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return image.Image{}, err
	}
	md := store.AddBytes(ocispec.MediaTypeImageManifest, mb)
	plat := cfg.Platform
	md.Platform = &plat
	return image.Image{Manifest: md, Blobs: store}, nil
}
