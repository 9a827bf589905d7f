// Package plugin registers the task service with the shim's plugin
// registry; the shim's main imports it for that effect.
package plugin

import (
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

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
			var labels task.LabelSource
			if addr := ic.Properties[plugins.PropertyGRPCAddress]; addr != "" {
				labels = task.NewContainerdLabels(addr)
			}
			return task.New(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service), labels)
		},
	})
}
