// Command containerd-shim-osv-v1 is the containerd shim of runtime
// io.containerd.osv.v1: it runs each container as an OSv unikernel in QEMU,
// and hands containers that are not VMs (a pod's sandbox) to the runc shim.
package main

import (
	"context"
	"os"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/feather-edge/feather/shim-osv/manager"
	"github.com/feather-edge/feather/shim-osv/qemu"
	_ "github.com/feather-edge/feather/shim-osv/task/plugin"
)

func main() {
	qemu.RunProbeChild()
	socket := os.Getenv(manager.SocketEnv) // set for the daemon only
	os.Unsetenv(manager.SocketEnv)
	// The shim waits for QEMU and virtiofsd itself; containerd's reaper
	// would take their exit statuses.
	shim.RunShim(context.Background(), manager.New(), func(c *shim.Config) { c.NoReaper = true; c.NoSubreaper = true })
	if socket != "" {
		// Its name is this shim's own (see manager), which pkg/shim does
		// not know to remove.
		_ = shim.RemoveSocket(socket)
	}
}
