// Package netns wires a VM into a pod's network namespace.
//
// The VM owns the pod's IP: QEMU runs inside the pod's network namespace (the
// shim starts it from within Do), and the namespace's configured interface
// (the CNI veth, e.g. eth0) is connected to a tap device with tc mirred
// redirects both ways, as Kata Containers' "tcfilter" mode does. The VM's NIC
// uses the veth's MAC address, and the guest is given the veth's IPv4 address,
// mask and gateway (from Discover) on its kernel command line, so nothing
// outside the namespace notices that a VM answers instead of the namespace's
// own stack.
//
// The namespace functions are Linux-only and need CAP_NET_ADMIN and
// CAP_SYS_ADMIN.
package netns
