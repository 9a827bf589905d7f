// Package pods runs Kubernetes pods through containerd: it is the Feather
// agent's virtual-kubelet provider.
//
// Every container of a pod, and every restart of one, is a containerd
// container in one containerd namespace (default "feather"), labelled with
// its pod's UID, namespace and name, its container name and its attempt
// (restart count). A container's runtime is chosen per container: the pod's
// RuntimeClass handler (mapped to a containerd runtime by the agent's
// config), else the image's feather.backend label, else runc; containers and
// unikernels can share a pod. Each pod has a worker goroutine that brings
// containerd to what the pod asks for — init containers in order, then the
// app containers, restarted per restartPolicy with kubelet's back-off — and
// pushes the pod status to virtual-kubelet whenever it changes.
//
// State lives in containerd, not in memory: an exited task's code and times
// are written onto its container's labels before the task is deleted, and a
// restarted agent rebuilds every pod's status from containerd alone, adopting
// running tasks without restarting them.
package pods
