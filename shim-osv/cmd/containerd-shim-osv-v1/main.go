// Command containerd-shim-osv-v1 is the containerd shim of runtime
// io.containerd.osv.v1: it runs each container as an OSv unikernel in QEMU,
// and hands containers that are not VMs (a pod's sandbox) to the runc shim.
package main

import (
	"context"
	"os"

	"github.com/feather-edge/feather/shim-osv/manager"
	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/shim-osv/shim"
)

func main() {
	qemu.RunProbeChild()
	socket := os.Getenv(manager.SocketEnv) // set for the daemon only
	os.Unsetenv(manager.SocketEnv)
	// The shim waits for QEMU and virtiofsd itself: it reaps no other
	// child and is no subreaper.
	shim.Run(context.Background(), manager.New(), manager.NewService)
	if socket != "" {
		// Its name is this shim's own (see manager), which the daemon's
		// socket cleanup does not know.
		_ = shim.RemoveSocket(socket)
	}
}
