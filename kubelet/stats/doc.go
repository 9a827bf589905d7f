// Package stats gathers the figures of kubelet's stats summary
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1) for the node, its pods and their
// containers, and turns them into the Prometheus metrics kubelet serves on
// /metrics/resource and /metrics/cadvisor.
//
// Figures are gathered when a request comes and kept for at most
// Config.MaxAge, so that the endpoints scraped together share one gathering
// and an idle node pays nothing between scrapes:
//
//   - node: CPU from /proc/stat, memory from /proc/meminfo (working set as
//     kubelet computes it: usage less inactive file pages), network from
//     /proc/net/dev, the file systems of the agent's state and of images by
//     statfs, process limits;
//   - containers: the cgroup metrics of their containerd task (task
//     Metrics, cgroups v1 or v2). For an OSv unikernel that is the cgroup of
//     its VM, QEMU and virtiofsd: what the VM costs the node. Rootfs usage
//     is the container's snapshot, for a unikernel the bytes its instance
//     disk holds (the snapshot's usage on the feather snapshotter, which
//     makes the disk in it); logs usage is its CRI log directory;
//     Beside it, a unikernel's guest view (GuestRuntime: the guest's RAM by
//     QMP query-balloon, the part of it resident on the host) goes in the
//     container's userDefinedMetrics;
//   - pods: the sum of their containers, the network of the pod's network
//     namespace, and the usage of each volume under the agent's state;
//   - the node's system containers: kubelet and runtime as the processes
//     Config.SystemProcesses names, pods as every pod summed.
//
// CPU rates (usageNanoCores) are the difference between two gatherings;
// the first request for a container has none.
//
// A container that cannot be read (its task exited, its cgroup vanished, its
// shim does not answer in time) is left out, with a log line; everything
// else is still reported.
package stats
