package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/platforms"
	"github.com/spf13/cobra"

	"github.com/feather-edge/feather/flint/capstan"
	"github.com/feather-edge/feather/flint/containerd"
	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/flint/registry"
	"github.com/feather-edge/feather/vmimage"
)

// packFlags are pack's and capstan import's flags.
type packFlags struct {
	remote      remoteFlags
	tag         string
	kernel      string
	initrd      string
	cmd         string
	env         []string
	workdir     string
	backend     string
	runtime     string
	labels      []string
	annotations []string
	platform    string
	compression string
	diskLayer   string
	output      string
	push        bool
	doImport    bool
	address     string
	namespace   string
	snapshotter string
	tempDir     string
}

func (f *packFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVarP(&f.tag, "tag", "t", "", "the image's name, e.g. registry.example/app:v1 (required)")
	fl.StringVar(&f.cmd, "cmd", "", `the app's OSv command line, e.g. '/app.so --port 80' (default: the one stored on the disk)`)
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory")
	fl.StringVar(&f.backend, "backend", vmimage.BackendOSV, "guest kind, image label "+vmimage.LabelBackend)
	fl.StringVar(&f.runtime, "runtime", vmimage.RuntimeQEMU, "hypervisor, image label "+vmimage.LabelRuntime)
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "image config label KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.annotations, "annotation", nil, "manifest annotation KEY=VALUE (repeatable)")
	fl.StringVar(&f.platform, "platform", "linux/amd64", "the image's platform: the guest's architecture")
	fl.StringVar(&f.compression, "compression", pack.CompressionGzip, "tar layer compression: gzip or none")
	fl.StringVar(&f.diskLayer, "disk-layer", pack.DiskLayerTar, "how the disk is stored: tar (runs on any containerd) or raw/qcow2, the disk's format (stored once, needs the feather snapshotter; see below)")
	fl.StringVarP(&f.output, "output", "o", "", "write an OCI image layout tarball (ctr image import reads it) to this file")
	fl.BoolVar(&f.push, "push", false, "push the image to the registry its name (--tag) names")
	fl.BoolVar(&f.doImport, "import", false, "import the image into containerd (--address, --namespace) and unpack it")
	fl.StringVar(&f.address, "address", "/run/containerd/containerd.sock", "containerd's socket, for --import")
	fl.StringVarP(&f.namespace, "namespace", "n", containerd.DefaultNamespace, "containerd namespace, for --import")
	fl.StringVar(&f.snapshotter, "snapshotter", "", "containerd snapshotter to unpack for, for --import (default: containerd's; feather for --disk-layer=raw|qcow2)")
	fl.StringVar(&f.tempDir, "tmp", "", "directory for the layers while packing (default $TMPDIR)")
	fl.BoolVarP(&f.remote.quiet, "quiet", "q", false, "print only the image's digest")
	f.remote.add(c, false)
}

func (g *globals) packCommand() *cobra.Command {
	f := &packFlags{}
	c := &cobra.Command{
		Use:   "pack DISK -t NAME [-o FILE] [--push] [--import]",
		Short: "Pack an OSv disk image (raw or qcow2) and optional kernel into an OCI image",
		Long: `Pack an OSv disk image (raw or qcow2, told apart by content) and, for direct boot, a kernel (and initrd)
into a Feather VM image: an OCI image labelled feather.backend/feather.runtime whose layers hold /feather/disk
(and /feather/kernel, /feather/initrd). The same inputs give the same digest.

The app's command is --cmd, an OSv command line; without it, the command line stored on the disk at byte 512
(where Capstan and OSv's scripts write it) is used. Its --env= and --cwd= options become the image's Env and
WorkingDir.

--disk-layer chooses how the disk is stored:
  tar         (default) a tar layer holding /feather/disk: every containerd snapshotter unpacks it, by extracting a
              copy, so a node keeps the disk twice (the layer and its copy). Choose it unless every node that runs the
              image has the feather snapshotter.
  raw, qcow2  the disk's own format (the disk must be that format): a layer whose bytes are the disk itself
              (media type ` + "application/vnd.oci.image.layer.v1.feather.disk.<format>" + `, never compressed), which
              feather-snapshotter links from containerd's content store into the snapshot, so a node keeps it once and
              unpacks it without copying. containerd without the feather snapshotter refuses to unpack it.`,
		Example: `  flint pack build/release/usr.img --kernel build/release/loader-stripped.elf \
      --cmd '/hello' -t registry.example/hello:v1 --push
  flint pack app.qcow2 -t app:v1 -o app.tar && ctr image import app.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.runPack(c.Context(), f, pack.Options{Disk: args[0]})
		},
	}
	c.Flags().StringVar(&f.kernel, "kernel", "", "kernel for direct boot: OSv's loader-stripped.elf (or a Linux bzImage)")
	c.Flags().StringVar(&f.initrd, "initrd", "", "initial ramdisk for --kernel")
	f.add(c)
	return c
}

func (g *globals) capstanCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "capstan",
		Short: "Work with Capstan repositories",
	}
	f := &packFlags{}
	var repo string
	imp := &cobra.Command{
		Use:   "import NAME -t REF [-o FILE] [--push] [--import]",
		Short: "Pack an image from a Capstan repository (<repo>/NAME/<name>.qemu and its index.yaml)",
		Long: `Pack the image NAME of a Capstan repository as flint pack does: its disk <repo>/NAME/<basename>.qemu, its
command line as stored on that disk unless --cmd is given, and its index.yaml's description, version and
creation time as the manifest's org.opencontainers.image.* annotations (creation time as the config's too).`,
		Example: `  flint capstan import cloudius/hello -t registry.example/hello:v1 --push`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			img, err := capstan.Find(repo, args[0])
			if err != nil {
				return err
			}
			o := pack.Options{Disk: img.Disk, Annotations: img.Annotations()}
			if t, ok := img.Index.CreatedTime(); ok {
				o.Created = &t
			}
			return g.runPack(c.Context(), f, o)
		},
	}
	imp.Flags().StringVar(&repo, "repo", capstan.DefaultRepository(), "the Capstan repository ($CAPSTAN_ROOT/repository)")
	f.add(imp)
	c.AddCommand(imp)
	return c
}

func (g *globals) runPack(ctx context.Context, f *packFlags, o pack.Options) error {
	if f.tag == "" {
		return fmt.Errorf("no image name: give one with -t, e.g. -t registry.example/app:v1")
	}
	name, err := image.NormalizeRef(f.tag)
	if err != nil {
		return err
	}
	if f.output == "" && !f.push && !f.doImport {
		return fmt.Errorf("nowhere to put the image: give -o FILE, --push or --import")
	}
	plat, err := platforms.Parse(f.platform)
	if err != nil {
		return fmt.Errorf("--platform %q: %w", f.platform, err)
	}
	labels, err := keyValues("label", f.labels)
	if err != nil {
		return err
	}
	annotations, err := keyValues("annotation", f.annotations)
	if err != nil {
		return err
	}
	for k, v := range annotations {
		if o.Annotations == nil {
			o.Annotations = map[string]string{}
		}
		o.Annotations[k] = v
	}
	o.Kernel, o.Initrd, o.Cmd, o.Env, o.Workdir = f.kernel, f.initrd, f.cmd, f.env, f.workdir
	o.Backend, o.Runtime, o.Labels, o.Platform = f.backend, f.runtime, labels, plat
	o.Compression, o.DiskLayer, o.TempDir = f.compression, f.diskLayer, f.tempDir
	var ro registry.Options
	if f.push {
		// Before packing, so that a bad config.json fails fast.
		if ro, err = g.options(&f.remote, "pushed"); err != nil {
			return err
		}
	}

	p, err := pack.Pack(ctx, o)
	if err != nil {
		return err
	}
	defer p.Close()
	p.Name = name
	say := func(format string, args ...any) {
		if !f.remote.quiet {
			fmt.Fprintf(g.stdout, format+"\n", args...)
		}
	}
	say("packed %s %s (%s disk, %s)", name, p.Manifest.Digest, p.Disk.Format, bootMode(o.Kernel))
	// The tarball goes into place only once every output has succeeded.
	var out *image.Pending
	if f.output != "" {
		if out, err = image.WritePending(f.output, func(w io.Writer) error { return image.WriteTar(ctx, w, p.Image) }); err != nil {
			return err
		}
		defer out.Discard()
	}
	if f.push {
		if err := registry.Push(ctx, p.Image, name, ro); err != nil {
			return err
		}
		say("pushed %s", name)
	}
	if f.doImport {
		if err := containerd.Import(ctx, f.address, f.namespace, f.snapshotter, p.Image); err != nil {
			return err
		}
		say("imported %s into containerd (namespace %s)", name, f.namespace)
	}
	if out != nil {
		if err := out.Commit(); err != nil {
			return err
		}
		say("wrote %s", f.output)
	}
	if f.remote.quiet {
		fmt.Fprintln(g.stdout, p.Manifest.Digest)
	}
	return nil
}

func bootMode(kernel string) string {
	if kernel != "" {
		return "direct boot"
	}
	return "disk boot"
}
