package nodeinfo

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources is an amount of the resources a node offers and a pod requests.
type Resources struct {
	// CPUMilli is CPU time in thousandths of a CPU.
	CPUMilli int64
	// MemoryBytes is memory in bytes.
	MemoryBytes int64
	// Pods is a number of pods.
	Pods int64
	// EphemeralStorageBytes is local (ephemeral) storage in bytes.
	EphemeralStorageBytes int64
}

// List returns r as a ResourceList with the keys cpu, memory, pods and ephemeral-storage, as in a node's capacity.
func (r Resources) List() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(r.CPUMilli, resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(r.MemoryBytes, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(r.Pods, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(r.EphemeralStorageBytes, resource.BinarySI),
	}
}

// ResourcesFromList reads cpu, memory, pods and ephemeral-storage from l; a missing key reads as zero and other keys
// are ignored.
func ResourcesFromList(l corev1.ResourceList) Resources {
	var r Resources
	if q, ok := l[corev1.ResourceCPU]; ok {
		r.CPUMilli = q.MilliValue()
	}
	if q, ok := l[corev1.ResourceMemory]; ok {
		r.MemoryBytes = q.Value()
	}
	if q, ok := l[corev1.ResourcePods]; ok {
		r.Pods = q.Value()
	}
	if q, ok := l[corev1.ResourceEphemeralStorage]; ok {
		r.EphemeralStorageBytes = q.Value()
	}
	return r
}

// add returns r+o, field by field.
func (r Resources) add(o Resources) Resources {
	return Resources{
		CPUMilli:              r.CPUMilli + o.CPUMilli,
		MemoryBytes:           r.MemoryBytes + o.MemoryBytes,
		Pods:                  r.Pods + o.Pods,
		EphemeralStorageBytes: r.EphemeralStorageBytes + o.EphemeralStorageBytes,
	}
}

// max returns the larger of r and o, field by field.
func (r Resources) max(o Resources) Resources {
	return Resources{
		CPUMilli:              max(r.CPUMilli, o.CPUMilli),
		MemoryBytes:           max(r.MemoryBytes, o.MemoryBytes),
		Pods:                  max(r.Pods, o.Pods),
		EphemeralStorageBytes: max(r.EphemeralStorageBytes, o.EphemeralStorageBytes),
	}
}
