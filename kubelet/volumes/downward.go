package volumes

import (
	corev1 "k8s.io/api/core/v1"
)

// podMemoryLimit is the pod's memory limit as kubelet sizes a memory emptyDir by it: the larger of the sum of its
// containers' limits and its largest init container limit; 0 when a container has no limit.
func podMemoryLimit(pod *corev1.Pod) int64 {
	var sum int64
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			return 0
		}
		sum += q.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			return 0
		}
		sum = max(sum, q.Value())
	}
	return sum
}
