// Package plugin registers the task service with the shim's plugin
// registry; the shim's main imports it for that effect.
package plugin

import (
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/feather-edge/feather/shim-osv/runcshim"
	"github.com/feather-edge/feather/shim-osv/task"
)

func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			var (
				kinds task.KindSource
				runc  *runcshim.Shims
			)
			if addr := ic.Properties[plugins.PropertyGRPCAddress]; addr != "" {
				kinds = task.NewContainerdKinds(addr)
				cfg, err := runcConfig(ic)
				if err != nil {
					return nil, err
				}
				runc = runcshim.New(cfg)
			}
			return task.New(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service), kinds, runc)
		},
	})
}

// runcConfig is how to start runc shims: with what containerd gave this
// shim daemon (its bundle is its working directory; the socket directory is
// where the start action's symlink "s" points).
func runcConfig(ic *plugin.InitContext) (runcshim.Config, error) {
	ns, err := namespaces.NamespaceRequired(ic.Context)
	if err != nil {
		return runcshim.Config{}, err
	}
	bundle, err := os.Getwd()
	if err != nil {
		return runcshim.Config{}, err
	}
	socketDir := filepath.Join(defaults.DefaultStateDir, "s")
	if d, err := os.Readlink(filepath.Join(bundle, "s")); err == nil && d != "" {
		socketDir = d
	}
	opts, _ := ic.Context.Value(shim.OptsKey{}).(shim.Opts)
	return runcshim.Config{Namespace: ns, GRPCAddress: ic.Properties[plugins.PropertyGRPCAddress],
		TTRPCAddress: ic.Properties[plugins.PropertyTTRPCAddress], SocketDir: socketDir,
		Debug: opts.Debug, Bundle: bundle}, nil
}
