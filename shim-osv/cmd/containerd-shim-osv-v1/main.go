// Command containerd-shim-osv-v1 is the containerd shim of runtime
// io.containerd.osv.v1: it runs each container as an OSv unikernel in QEMU.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/feather-edge/feather/shim-osv/manager"
	"github.com/feather-edge/feather/shim-osv/qemu"
	_ "github.com/feather-edge/feather/shim-osv/task/plugin"
)

func main() {
	qemu.RunProbeChild()
	// The shim waits for QEMU and virtiofsd itself; containerd's reaper
	// would take their exit statuses.
	shim.RunShim(context.Background(), manager.New(), func(c *shim.Config) { c.NoReaper = true; c.NoSubreaper = true })
}
