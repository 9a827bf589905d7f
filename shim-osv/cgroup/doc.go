// Package cgroup creates, joins, reads and removes a container's cgroup
// through its cgroupfs files, for cgroups v1 and v2.
//
// It does what the shim used containerd's cgroups library for, and no more:
// the cgroup at a static path (the spec's cgroupsPath) with the container's
// resources written as the library writes them, processes added to it, the
// metrics read back in the runc shim's format (cgroups v1 or v2 Metrics, the
// library's stats messages) and the cgroup removed. It has no systemd driver
// and no device filter (the shim drops the spec's devices: the guest's
// devices are not the host's), so it links neither D-Bus nor eBPF.
//
// A Hierarchy says where the controllers are mounted; Host finds the host's.
// Tests point one at a temporary directory.
package cgroup
