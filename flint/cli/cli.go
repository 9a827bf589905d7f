// Package cli is Flint's command line: pack, capstan import, inspect, push,
// pull and unpack, built with cobra (flags anywhere on the line, help and
// completion for free; its pflag is already in the module graph). Each
// command parses its flags and calls the noun packages that do the work.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/progress"
	"github.com/feather-edge/feather/flint/registry"
)

// Main runs flint with args (without the program name) and returns its
// exit status: 0, or 1 after printing the error to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "flint",
		Short: "Pack, inspect, push, pull and import unikernel images as OCI images",
		Long: `Flint turns OSv unikernel builds (a raw or qcow2 disk, optionally a kernel) into OCI images that any
registry stores and that Feather runs with the io.containerd.osv.v1 runtime.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			level := "error"
			if g.debug {
				level = "debug"
			}
			log.SetLevel(level)
			log.L.Logger.SetOutput(stderr)
		},
	}
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "log registry and containerd requests")
	root.AddCommand(g.packCommand(), g.capstanCommand(), g.inspectCommand(), g.pushCommand(), g.pullCommand(), g.unpackCommand())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "flint: %s\n", message(err))
		return 1
	}
	return 0
}

// message is err's text for a person: without the errdefs category that
// wrapping appends (": invalid argument"), which says nothing more.
func message(err error) string {
	s := err.Error()
	for _, cat := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrFailedPrecondition,
		errdefs.ErrUnauthenticated, errdefs.ErrPermissionDenied, errdefs.ErrNotImplemented, errdefs.ErrDataLoss, errdefs.ErrAlreadyExists} {
		s = strings.TrimSuffix(s, ": "+cat.Error())
	}
	return s
}

// globals are the settings every command shares.
type globals struct {
	stdout, stderr io.Writer
	debug          bool
}

// remoteFlags are the flags of commands that talk to a registry.
type remoteFlags struct {
	plainHTTP    bool
	dockerConfig string
	retries      int
	quiet        bool
	cache        string
}

func (f *remoteFlags) add(c *cobra.Command, cache bool) {
	c.Flags().BoolVar(&f.plainHTTP, "plain-http", false, "talk plain HTTP to the registry (a registry on localhost)")
	c.Flags().StringVar(&f.dockerConfig, "docker-config", registry.DefaultDockerConfig(), "docker config.json with the registry credentials (docker login writes it)")
	c.Flags().IntVar(&f.retries, "retries", 3, "how many times to retry a failed transfer; it resumes where it stopped")
	if cache {
		c.Flags().StringVar(&f.cache, "cache", defaultCache(), "directory of the content cache that pulls fill and resume from")
	}
}

func defaultCache() string {
	if d := os.Getenv("FLINT_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "flint-cache")
	}
	return filepath.Join(d, "flint")
}

// options builds the registry options; verb names the transfer in
// progress lines. The progress display goes to stderr: bars on a
// terminal, a line per blob otherwise, none with --quiet.
func (g *globals) options(f *remoteFlags, verb string) (registry.Options, error) {
	dc, err := registry.LoadDockerConfig(f.dockerConfig)
	if err != nil {
		return registry.Options{}, err
	}
	o := registry.Options{PlainHTTP: f.plainHTTP, Credentials: dc.Credentials, Retries: f.retries}
	if !f.quiet {
		tty := false
		if file, ok := g.stderr.(*os.File); ok {
			tty = term.IsTerminal(int(file.Fd()))
		}
		o.Progress = progress.New(g.stderr, tty, verb)
	}
	return o, nil
}

func (f *remoteFlags) store() (content.Store, error) {
	s, err := local.NewStore(filepath.Join(f.cache, "content"))
	if err != nil {
		return nil, fmt.Errorf("content cache %s: %w", f.cache, err)
	}
	return s, nil
}

// isFile tells a tarball argument from an image reference: an existing
// file, or anything that looks like a path.
func isFile(arg string) bool {
	if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
		return true
	}
	return strings.HasSuffix(arg, ".tar") || strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../") || strings.HasPrefix(arg, "/")
}

// source opens the image that arg names: an OCI layout tarball, or a
// reference pulled into the cache. close releases it.
func (g *globals) source(ctx context.Context, arg, name string, f *remoteFlags, platform platforms.MatchComparer) (img image.Image, close func(), err error) {
	if isFile(arg) {
		if _, err := os.Stat(arg); err != nil {
			return img, nil, err
		}
		t, err := image.OpenTar(ctx, arg, name, platform)
		if err != nil {
			return img, nil, err
		}
		return t.Image, func() { t.Close() }, nil
	}
	o, err := g.options(f, "pulled")
	if err != nil {
		return img, nil, err
	}
	o.Platform = platform
	store, err := f.store()
	if err != nil {
		return img, nil, err
	}
	img, err = registry.Pull(ctx, arg, store, o)
	return img, func() {}, err
}

// parsePlatform parses --platform ("" is linux/amd64).
func parsePlatform(s string) (platforms.MatchComparer, error) {
	if s == "" {
		s = "linux/amd64"
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--platform %q: %w", s, err)
	}
	return platforms.Only(p), nil
}

// keyValues parses K=V flags into a map.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q is not KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}
