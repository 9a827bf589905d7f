// Package vmsnap is Feather's containerd snapshotter: containerd's overlay
// snapshotter for every layer, plus, in each active snapshot prepared on a
// VM image, that container's instance disk.
//
// A VM image's layer holds its boot disk at vmimage.DiskPath; committed, the
// layer is kept once, read-only, in the snapshot's directory. Preparing an
// active snapshot whose parent chain holds such a disk writes into the new
// snapshot's upper directory a qcow2 overlay backed by that disk, at
// vmimage.InstanceDiskPath: four clusters of metadata, whatever the disk's
// size. The shim boots it; every byte the VM writes lands in the snapshot,
// so the snapshot's usage (`ctr snapshots usage`) is the VM's writes, and
// removing the snapshot (or containerd's garbage collection) removes them.
//
// The snapshots containerd's unpacker prepares to extract a layer into
// (keys starting with snapshots.UnpackKeyPrefix) get no instance disk: they
// become image layers when committed.
package vmsnap
