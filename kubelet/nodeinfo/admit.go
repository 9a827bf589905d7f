package nodeinfo

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Reasons a pod is rejected, the kubelet's words (k8s.io/kubernetes/pkg/kubelet/lifecycle).
const (
	ReasonOutOfCPU              = "OutOfcpu"
	ReasonOutOfMemory           = "OutOfmemory"
	ReasonOutOfPods             = "OutOfpods"
	ReasonOutOfEphemeralStorage = "OutOfephemeral-storage"
)

// AdmitError tells why a pod does not fit on the node: the first resource that is short, as the kubelet reports
// it (its InsufficientResourceError).
type AdmitError struct {
	// Reason is the pod status reason and event reason, e.g. ReasonOutOfMemory.
	Reason string
	// Resource is the resource that is short: cpu, memory, pods or ephemeral-storage.
	Resource corev1.ResourceName
	// Requested is what the pod asks for; Used what the node's other pods have; Capacity the node's allocatable.
	// CPU is in milli-CPUs, memory and storage in bytes, pods in pods.
	Requested, Used, Capacity int64
}

// Error is the kubelet's message, e.g. "Node didn't have enough resource: memory, requested: 2147483648, used:
// 0, capacity: 1073741824".
func (e *AdmitError) Error() string {
	return fmt.Sprintf("Node didn't have enough resource: %s, requested: %d, used: %d, capacity: %d",
		e.Resource, e.Requested, e.Used, e.Capacity)
}

// PodStatus is the status the kubelet gives a pod it rejects: phase Failed, the reason, and the message
// "Pod was rejected: " + Error(). The caller keeps the pod's QOSClass and records a Warning event with Reason and
// Error().
func (e *AdmitError) PodStatus() corev1.PodStatus {
	return corev1.PodStatus{
		Phase:   corev1.PodFailed,
		Reason:  e.Reason,
		Message: "Pod was rejected: " + e.Error(),
	}
}

// Admit is the kubelet's resource admission check, run before a pod is started: the pod must fit in alloc (the
// node's allocatable) beside running, the node's other pods. Pods in running that have finished (Succeeded,
// Failed) and pod itself (same UID, or same namespace/name) are not counted. Checks go in the kubelet's order:
// pods, cpu, memory, ephemeral-storage; a resource the pod does not request is not checked. It returns nil or an
// *AdmitError for the first resource short.
func Admit(pod *corev1.Pod, running []*corev1.Pod, alloc Resources) error {
	var used Resources
	for _, p := range running {
		if p == nil || samePod(p, pod) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		used = used.add(PodRequests(p))
	}
	req := PodRequests(pod)
	short := func(r corev1.ResourceName, reason string, requested, used, capacity int64) *AdmitError {
		return &AdmitError{Reason: reason, Resource: r, Requested: requested, Used: used, Capacity: capacity}
	}
	if used.Pods+1 > alloc.Pods {
		return short(corev1.ResourcePods, ReasonOutOfPods, 1, used.Pods, alloc.Pods)
	}
	if req.CPUMilli > 0 && req.CPUMilli > alloc.CPUMilli-used.CPUMilli {
		return short(corev1.ResourceCPU, ReasonOutOfCPU, req.CPUMilli, used.CPUMilli, alloc.CPUMilli)
	}
	if req.MemoryBytes > 0 && req.MemoryBytes > alloc.MemoryBytes-used.MemoryBytes {
		return short(corev1.ResourceMemory, ReasonOutOfMemory, req.MemoryBytes, used.MemoryBytes, alloc.MemoryBytes)
	}
	if req.EphemeralStorageBytes > 0 && req.EphemeralStorageBytes > alloc.EphemeralStorageBytes-used.EphemeralStorageBytes {
		return short(corev1.ResourceEphemeralStorage, ReasonOutOfEphemeralStorage,
			req.EphemeralStorageBytes, used.EphemeralStorageBytes, alloc.EphemeralStorageBytes)
	}
	return nil
}

func samePod(a, b *corev1.Pod) bool {
	if a.UID != "" || b.UID != "" {
		return a.UID == b.UID
	}
	return a.Namespace == b.Namespace && a.Name == b.Name
}

// PodRequests is what a pod takes from the node, computed as the scheduler and kubelet do
// (k8s.io/component-helpers/resource.PodRequests): the sum of its containers' requests and its sidecars' (init
// containers with restartPolicy Always), or, if more, the most any one init container needs while it runs (its
// requests plus those of the sidecars started before it); then pod-level cpu and memory requests
// (spec.resources), when set, replace the containers'; then spec.overhead is added. A container's limit stands
// for its missing request, as API defaulting does. Pods is 1.
func PodRequests(pod *corev1.Pod) Resources {
	var sum Resources
	for i := range pod.Spec.Containers {
		sum = sum.add(containerRequests(&pod.Spec.Containers[i]))
	}
	var sidecars, inits Resources
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := containerRequests(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum = sum.add(r)
			sidecars = sidecars.add(r)
			r = sidecars
		} else {
			r = r.add(sidecars)
		}
		inits = inits.max(r)
	}
	req := sum.max(inits)
	if pod.Spec.Resources != nil {
		if q, ok := pod.Spec.Resources.Requests[corev1.ResourceCPU]; ok {
			req.CPUMilli = q.MilliValue()
		}
		if q, ok := pod.Spec.Resources.Requests[corev1.ResourceMemory]; ok {
			req.MemoryBytes = q.Value()
		}
	}
	req = req.add(ResourcesFromList(pod.Spec.Overhead))
	req.Pods = 1
	return req
}

func containerRequests(c *corev1.Container) Resources {
	l := corev1.ResourceList{}
	for k, v := range c.Resources.Limits {
		l[k] = v
	}
	for k, v := range c.Resources.Requests {
		l[k] = v
	}
	r := ResourcesFromList(l)
	r.Pods = 0
	return r
}
