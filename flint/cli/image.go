package cli

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/spf13/cobra"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/inspect"
	"github.com/feather-edge/feather/flint/registry"
	"github.com/feather-edge/feather/flint/unpack"
)

func (g *globals) inspectCommand() *cobra.Command {
	f := &remoteFlags{}
	var format, name, platform string
	c := &cobra.Command{
		Use:   "inspect REF|TAR",
		Short: "Show what a Feather image holds: kind, command, env, disk, kernel, layers",
		Long: `Show what a Feather VM image holds — backend, runtime, command, environment, the disk's format and virtual
size, whether it has a kernel, its layers' digests and sizes — read from the image itself, every layer checked
against its digest. REF is pulled from its registry (into the cache, so a later pull is free); TAR is an OCI
image layout tarball. It fails on an image that does not match its digests or holds absolute or ".." paths,
and lists as problems what keeps it from running on Feather.`,
		Example: `  flint inspect registry.example/hello:v1
  flint inspect hello.tar -o json | jq .disk`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("-o %q: want text or json", format)
			}
			plat, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			f.quiet = f.quiet || format == "json"
			img, done, err := g.source(c.Context(), args[0], name, f, plat)
			if err != nil {
				return err
			}
			defer done()
			r, err := inspect.Inspect(c.Context(), img)
			if err != nil {
				return fmt.Errorf("inspect %s: %w", args[0], err)
			}
			if format == "json" {
				return r.WriteJSON(g.stdout)
			}
			return r.WriteText(g.stdout)
		},
	}
	c.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	c.Flags().StringVar(&name, "name", "", "which image of a tarball that holds several")
	c.Flags().StringVar(&platform, "platform", "linux/amd64", "which manifest of a multi-platform image")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress display")
	f.add(c, true)
	return c
}

func (g *globals) pushCommand() *cobra.Command {
	f := &remoteFlags{}
	var name string
	c := &cobra.Command{
		Use:   "push TAR [REF]",
		Short: "Push an OCI image layout tarball to a registry",
		Long: `Push the image of an OCI image layout tarball (flint pack -o writes one) to REF, by default the name the
tarball gives it. The image is checked first (digests, no absolute or ".." paths). Blobs the registry has are
not sent again, so a push that failed half way continues where it stopped.`,
		Example: `  flint push hello.tar registry.example/hello:v1
  flint push --plain-http hello.tar localhost:5000/hello:v1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			t, err := image.OpenTar(ctx, args[0], name, platforms.All)
			if err != nil {
				return err
			}
			defer t.Close()
			ref := t.Name
			if len(args) == 2 {
				ref = args[1]
			}
			if ref == "" {
				return fmt.Errorf("%s names no image: give the reference to push to", args[0])
			}
			r, err := inspect.Inspect(ctx, t.Image)
			if err != nil {
				return fmt.Errorf("refusing to push %s: %w", args[0], err)
			}
			if err := r.Check(); err != nil {
				fmt.Fprintf(g.stderr, "flint: warning: %v\n", err)
			}
			o, err := g.options(f, "pushed")
			if err != nil {
				return err
			}
			if err := registry.Push(ctx, t.Image, ref, o); err != nil {
				return err
			}
			n, _ := image.NormalizeRef(ref)
			fmt.Fprintf(g.stdout, "pushed %s %s\n", n, t.Manifest.Digest)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "which image of a tarball that holds several")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress display")
	f.add(c, false)
	return c
}

func (g *globals) pullCommand() *cobra.Command {
	f := &remoteFlags{}
	var output, platform string
	c := &cobra.Command{
		Use:   "pull REF -o FILE",
		Short: "Pull an image from a registry into an OCI image layout tarball",
		Long: `Pull REF into the content cache and write it as an OCI image layout tarball (ctr image import and
flint push read it). Blobs in the cache are not fetched again, and a download that failed half way continues
where it stopped.`,
		Example: `  flint pull registry.example/hello:v1 -o hello.tar`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if output == "" {
				return fmt.Errorf("nowhere to write the image: give -o FILE")
			}
			plat, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			ctx := c.Context()
			img, done, err := g.source(ctx, args[0], "", f, plat)
			if err != nil {
				return err
			}
			defer done()
			if _, err := inspect.Inspect(ctx, img); err != nil {
				return fmt.Errorf("refusing %s: %w", args[0], err)
			}
			if err := image.WriteTarFile(ctx, output, img); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "pulled %s %s to %s\n", img.Name, img.Manifest.Digest, output)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "the tarball to write (required)")
	c.Flags().StringVar(&platform, "platform", "linux/amd64", "which manifest of a multi-platform image")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress display")
	f.add(c, true)
	return c
}

func (g *globals) unpackCommand() *cobra.Command {
	f := &remoteFlags{}
	var name, platform string
	c := &cobra.Command{
		Use:   "unpack REF|TAR DIR",
		Short: "Extract an image's files (feather/disk, feather/kernel, …) into a new directory",
		Long: `Extract the root filesystem of an image — for a Feather VM image its disk, kernel and initrd — into DIR,
which must not exist. Nothing is ever written outside DIR: an image with absolute or ".." paths is refused
whole, links are not created, and DIR appears only once all is extracted.`,
		Example: `  flint unpack registry.example/hello:v1 hello && qemu-img info hello/feather/disk`,
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			plat, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			ctx := c.Context()
			img, done, err := g.source(ctx, args[0], name, f, plat)
			if err != nil {
				return err
			}
			defer done()
			res, err := unpack.Unpack(ctx, img, args[1])
			if err != nil {
				return fmt.Errorf("unpack %s: %w", args[0], err)
			}
			fmt.Fprintf(g.stdout, "unpacked %s into %s: %s\n", args[0], args[1], strings.Join(res.Files, " "))
			if len(res.Skipped) > 0 {
				fmt.Fprintf(g.stderr, "flint: skipped (links and special files are not extracted): %s\n", strings.Join(res.Skipped, " "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "which image of a tarball that holds several")
	c.Flags().StringVar(&platform, "platform", "linux/amd64", "which manifest of a multi-platform image")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress display")
	f.add(c, true)
	return c
}
