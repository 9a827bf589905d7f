// Package volumes materialises a pod's volumes on the node and turns its containers' volumeMounts into OCI bind
// mounts, for the Feather agent.
//
// # Layout
//
// Every volume of a pod lives in its own directory:
//
//	<Root>/<podUID>/volumes/<volume name>/
//
// What that directory is depends on the volume:
//
//   - emptyDir: a plain directory, mode 0777 (or emptyDir.mode). With medium Memory a tmpfs is mounted on it,
//     sized min(sizeLimit, the pod's memory limit), where the pod's limit is the sum of its containers' memory
//     limits, or the node's allocatable memory when a container has none (as kubelet does). On disk, sizeLimit is
//     not enforced: Feather has no eviction manager yet, and a quota would need project quotas on the node's
//     filesystem.
//
//   - configMap and downwardAPI: an atomic-writer directory (below) on disk.
//
//   - secret and projected: an atomic-writer directory on a tmpfs (nosuid, nodev, mode 0755, the kernel's default
//     size bound; it holds only what is written) mounted on the volume directory, so that secret data and service
//     account tokens never reach the disk. Kubelet does the same.
//
//   - hostPath: no directory under Root. Setup checks the host path against the volume's type (creating it for
//     DirectoryOrCreate and FileOrCreate, and a missing one of no type as a directory, as containerd's CRI plugin
//     does) and returns the host path itself; Teardown never touches it.
//
//   - image (KEP-4639): an empty directory, the mount point. The agent pulls the image when a container that
//     mounts the volume starts (its pull errors are that container's: ErrImagePull, ImagePullBackOff), makes a
//     containerd view snapshot of it and mounts that read-only on the directory with MountImage, once for the
//     pod. Mounts of it are always read-only; a subPath must exist in the image. Teardown unmounts it.
//
// Other volume types (persistentVolumeClaim, csi, nfs, …) are refused with an error wrapping
// errdefs.ErrNotImplemented.
//
// # Atomic updates
//
// configMap, secret, downwardAPI and projected volumes are written the way kubelet's AtomicWriter writes them, so
// an application that watches its config files sees either the old set of files or the new one, never a mix:
//
//	<volume>/..2026_01_02_15_04_05.123456789/   the files of one version (nested paths as directories)
//	<volume>/..data -> ..2026_01_02_15_04_05.123456789
//	<volume>/<top-level name> -> ..data/<top-level name>    one symlink per top-level file or directory
//
// An update writes the new version into a fresh timestamped directory, points a temporary symlink ..data_tmp at
// it and renames that over ..data (rename(2) is atomic), then adds the top-level symlinks of new names, removes
// those of names that went away and removes the old version. A crash at any point leaves ..data pointing at a
// complete version; leftovers are removed by the next write. Contents equal to what ..data already holds are not
// rewritten. Names starting with ".." are reserved for this scheme and are refused as item paths, as kubelet does.
//
// Since every path is relative, holds no ".." element and is written below the new version's directory, which
// this package has just created, no key can escape its volume. Paths are checked before anything is written.
//
// A container that mounts such a volume sees updates through the ..data swap. A subPath mount of a key binds
// the file of the version current at the time the container starts and, as with kubelet, is not updated.
//
// # Unikernels
//
// Mounts gives the same bind mounts for containers and for OSv unikernels: the OSv shim passes every directory
// bind mount of the OCI spec to the VM through virtio-fs. OSv's virtio-fs is read-only and takes directories only,
// so the shim refuses a subPath mount of a single file; that is the shim's decision, not this package's.
//
// # Refresh
//
// The agent calls Setup before it creates a pod's containers, then Refresh at the time Refresh last returned (and
// whenever the pod's labels or annotations change). Refresh renews projected service account tokens once 80% of
// their lifetime has passed (or 24 hours, whichever is first: kubelet's rule), and rewrites configMap, secret,
// downwardAPI and projected volumes whose content changed. Teardown unmounts what Setup mounted and removes
// <Root>/<podUID>; at agent start, Orphans lists the pod directories of pods the node no longer runs, and it
// finds their mounts again in /proc/self/mountinfo, so no state is kept outside the directories themselves.
package volumes
