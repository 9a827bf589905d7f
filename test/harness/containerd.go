package harness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
)

// Containerd is a containerd daemon of its own: its own root, state, sockets
// and config under Dir, the pinned build from _output/bin, runc from the
// system. Runtime shims are looked up in bin/, _output/bin and then $PATH, so
// Feather's own shims are found once built.
type Containerd struct {
	// Dir holds root/, state/, its config, sockets and log.
	Dir string
	// Address is the gRPC socket, for clients and ctr --address.
	Address string
	// Config is the path of the config file it runs with.
	Config string

	ctr    string
	bin    string
	opts   ContainerdOptions
	proc   *Process
	client *client.Client
}

// ContainerdOptions adjust the daemon's configuration.
type ContainerdOptions struct {
	// Config is TOML appended to the harness's config, e.g. [proxy_plugins]
	// tables or runtime settings; it must not repeat the tables the harness
	// writes ([grpc], [ttrpc], [debug], [metrics] and the opt and
	// image-verifier plugin tables).
	Config string
	// HostPath, when set, replaces the test's $PATH after Feather's own bin
	// directories in containerd's PATH (which its shims inherit), e.g. to
	// run a shim without one of the host's tools.
	HostPath string
	// CRI, when set, enables containerd's CRI plugin, for a kubelet.
	CRI *CRIOptions
	// Snapshotter, when set, is Feather's snapshotter (Env.StartSnapshotter),
	// which containerd then reaches as SnapshotterName; CRI's runtimes of
	// type io.containerd.osv.v1 use it.
	Snapshotter *Snapshotter
}

// The daemon's config: version 3 is containerd 2.x's. CRI (unless asked
// for) and NRI are off — tests drive containerd through its own API — and so
// are the snapshotters this machine cannot serve, to keep the log to what
// matters.
var containerdConfig = template.Must(template.New("config").Parse(`version = 3
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
temp = "{{.Dir}}/tmp"
disabled_plugins = [
{{- if not .CRI}}
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
{{- end}}
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
]

[grpc]
  address = "{{.Dir}}/containerd.sock"

[ttrpc]
  address = "{{.Dir}}/containerd.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "{{.Dir}}/image-verifier"

{{.CRI}}
{{.Extra}}
`))

// containerdDir is where StartContainerd keeps the daemon's config, root and
// state.
func (e *Env) containerdDir() string { return filepath.Join(e.Dir, "containerd") }

// StartContainerd starts a containerd daemon and returns once it answers on
// its socket. It fails t if it does not.
func (e *Env) StartContainerd(opts ContainerdOptions) *Containerd {
	e.t.Helper()
	bin := RequiresBin(e.t, "containerd")
	ctr := RequiresBin(e.t, "ctr")
	RequiresBin(e.t, "containerd-shim-runc-v2")
	_, err := exec.LookPath("runc")
	Prerequisite(e.t, err == nil, "runc not found: run `make deps` (Debian package runc)")

	c := &Containerd{Dir: e.containerdDir(), ctr: ctr, bin: bin, opts: opts}
	c.Address = filepath.Join(c.Dir, "containerd.sock")
	c.Config = filepath.Join(c.Dir, "config.toml")
	e.onClose(c.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.start(ctx, bin, opts); err != nil {
		e.t.Fatalf("harness: containerd: %v", err)
	}
	return c
}

func (c *Containerd) start(ctx context.Context, bin string, opts ContainerdOptions) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	var cfg strings.Builder
	vmSnapshotter, extra := "", opts.Config
	if opts.Snapshotter != nil {
		vmSnapshotter, extra = SnapshotterName, opts.Snapshotter.containerdConfig()+extra
	}
	criConfig, err := opts.CRI.config(c.Dir, vmSnapshotter)
	if err != nil {
		return err
	}
	if err := containerdConfig.Execute(&cfg, struct{ Dir, CRI, Extra string }{c.Dir, criConfig, extra}); err != nil {
		return err
	}
	if err := os.WriteFile(c.Config, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	// Shims are found on containerd's PATH: Feather's own first.
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	host := os.Getenv("PATH")
	if opts.HostPath != "" {
		host = opts.HostPath
	}
	path := "PATH=" + strings.Join([]string{filepath.Join(root, "bin"), filepath.Join(root, "_output", "bin"), host}, ":")
	c.proc, err = startProcess("containerd", filepath.Join(c.Dir, "containerd.log"), []string{path},
		bin, "--config", c.Config)
	if err != nil {
		return err
	}
	return c.proc.waitReady(ctx, func(ctx context.Context) error {
		if c.client == nil {
			cl, err := client.New(c.Address, client.WithTimeout(time.Second))
			if err != nil {
				return err
			}
			c.client = cl
		}
		_, err := c.client.Version(ctx)
		return err
	})
}

// Restart stops the daemon alone — its shims and their tasks keep running,
// as through a crash or an upgrade — and starts it again on the same state.
func (c *Containerd) Restart(ctx context.Context) error {
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
	c.proc.Stop(10 * time.Second)
	return c.start(ctx, c.bin, c.opts)
}

// Pid is the daemon's process ID (e.g. for its /proc/PID/io).
func (c *Containerd) Pid() int { return c.proc.Pid() }

// Client returns a client of this daemon; the harness closes it.
func (c *Containerd) Client() *client.Client { return c.client }

// LogFile is containerd's log (its shims' logs included), at debug level.
func (c *Containerd) LogFile() string { return c.proc.Log }

// Ctr runs the real ctr against this daemon (`ctr --address … ARGS…`) and
// returns its standard output; the error carries its standard error (where
// ctr writes its own messages and warnings).
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.Address}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Import imports an OCI image layout tarball into namespace ns and unpacks
// its images for the default snapshotter, as `ctr image import` does.
func (c *Containerd) Import(ctx context.Context, ns, tarball string) ([]client.Image, error) {
	ctx = namespaces.WithNamespace(ctx, ns)
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	imgs, err := c.client.Import(ctx, f, client.WithImportPlatform(platforms.Default()))
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", tarball, err)
	}
	var out []client.Image
	for _, img := range imgs {
		image := client.NewImage(c.client, img)
		if err := image.Unpack(ctx, ""); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		out = append(out, image)
	}
	return out, nil
}

// stop removes every task and container the daemon still has — that stops
// their shims and unmounts their root filesystems — then stops the daemon and
// removes the per-namespace directories containerd's defaults left behind.
func (c *Containerd) stop() error {
	if c.proc == nil {
		return nil
	}
	var errs []error
	var nss []string
	if c.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var err error
		nss, err = c.client.NamespaceService().List(ctx)
		errs = append(errs, err)
		for _, ns := range nss {
			errs = append(errs, c.clean(namespaces.WithNamespace(ctx, ns)))
		}
		errs = append(errs, c.client.Close())
	}
	c.proc.Stop(10 * time.Second)
	for _, ns := range nss {
		removeNamespaceDirs(ns)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("containerd: clean up: %w", err)
	}
	return nil
}

// clean kills and deletes every task and deletes every container, with its
// snapshot, in the context's namespace.
func (c *Containerd) clean(ctx context.Context) error {
	ctrs, err := c.client.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ctr := range ctrs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete task %s: %w", ctr.ID(), err))
			}
		} else if !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("task of %s: %w", ctr.ID(), err))
		}
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container %s: %w", ctr.ID(), err))
		}
	}
	return errors.Join(errs...)
}

// removeNamespaceDirs removes what containerd's defaults leave behind for
// namespace ns once its containers are gone: the (by now empty) cgroup
// /<ns> in every cgroup v1 controller and in the v2 hierarchy, and runc's
// state directory /run/containerd/runc/<ns>.
func removeNamespaceDirs(ns string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	dirs = append(dirs, "/sys/fs/cgroup/"+ns, "/run/containerd/runc/"+ns)
	for _, d := range dirs {
		_ = syscall.Rmdir(d) // fails, harmlessly, where it is missing or still in use
	}
}

// Where containerd and its shims keep what lies outside a daemon's own Dir.
const (
	containerdRunDir = "/run/containerd"
	cgroupRoot       = "/sys/fs/cgroup"
)

// sweepTasks removes what the shims of the tasks still recorded under the
// containerd of harness tree dir — one that was killed, not stopped — left
// outside the tree: their sockets (in runDir/s, named as the shims name
// them: the SHA-256 of ADDRESS/NS/ID, of ADDRESS/NS/ID/debug and of
// ADDRESS/NS/ID/feather-osv), runc's state (runDir/runc/NS/ID) and the
// tasks' cgroups (cgroups/*/NS/ID and cgroups/NS/ID). Their processes must be gone first. It returns an error
// naming each task: after an orderly stop there is none.
func sweepTasks(dir, runDir, cgroups string) error {
	cdir := filepath.Join(dir, "containerd")
	address := filepath.Join(cdir, "containerd.sock")
	bundles, _ := filepath.Glob(filepath.Join(cdir, "state", "io.containerd.runtime.v2.task", "*", "*"))
	var errs []error
	for _, b := range bundles {
		id, ns := filepath.Base(b), filepath.Base(filepath.Dir(b))
		// The runc shim's (and its debug socket), and the OSv shim's, which
		// shim-osv/manager keys ID/feather-osv.
		for _, p := range []string{filepath.Join(address, ns, id), filepath.Join(address, ns, id, "debug"), filepath.Join(address, ns, id, "feather-osv")} {
			_ = os.Remove(filepath.Join(runDir, "s", fmt.Sprintf("%x", sha256.Sum256([]byte(p)))))
		}
		_ = os.RemoveAll(filepath.Join(runDir, "runc", ns, id))
		cgs, _ := filepath.Glob(filepath.Join(cgroups, "*", ns, id))
		for _, cg := range append(cgs, filepath.Join(cgroups, ns, id)) {
			removeCgroup(cg)
		}
		errs = append(errs, fmt.Errorf("leaked task %s/%s: removed its shim sockets, runc state and cgroups", ns, id))
	}
	return errors.Join(errs...)
}

// removeCgroup removes the cgroup directory dir and those below it, deepest
// first; cgroupfs removes a cgroup with rmdir, once it holds no process.
func removeCgroup(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}
