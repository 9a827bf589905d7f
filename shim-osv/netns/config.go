package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
)

// Config describes a namespace's configured interface, as Discover finds it.
type Config struct {
	// Interface is the interface's name, e.g. "eth0".
	Interface string
	// MAC is the interface's hardware address; the VM's NIC must use it.
	MAC net.HardwareAddr
	// MTU is the interface's MTU; the tap gets the same.
	MTU int
	// Addr is the interface's IPv4 address with its mask.
	Addr *net.IPNet
	// Gateway is the IPv4 default route's gateway, nil if there is none.
	Gateway net.IP
}

// TapName returns the name of the tap device for container id: "tap" and the
// first 12 hex digits of the id's SHA-256, always a valid interface name
// (15 characters). It is deterministic, so cleanup after a crash finds the
// same device.
func TapName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "tap" + hex.EncodeToString(sum[:])[:12]
}
