// Package cni gives each pod of a Feather node an IP address on a CNI
// network: it runs the plugins of a network configuration list (libcni)
// against the pod's network namespace — ADD when the pod starts, CHECK when a
// restarted agent finds it attached, DEL when it goes — and writes a default
// configuration (bridge, host-local, portmap, loopback) when there is none.
//
// It knows nothing of Kubernetes beyond the CNI_ARGS kubelet passes
// (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID); the agent
// (kubelet/) creates the namespaces and calls it.
package cni
