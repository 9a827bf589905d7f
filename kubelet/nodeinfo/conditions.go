package nodeinfo

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Health is what the agent knows of its own parts, beyond the host's resources.
type Health struct {
	// Runtime is nil while containerd answers; otherwise the node is NotReady with "container runtime is down: "
	// and this error, as the kubelet reports a dead runtime.
	Runtime error
	// Network is nil while pods can be given a network; otherwise the node is NotReady ("container runtime
	// network not ready: …") and NetworkUnavailable.
	Network error
}

// signals are the measured levels the pressure conditions compare with Thresholds. A nil error means measured.
type signals struct {
	memAvailable     int64
	memErr           error
	storageAvailable int64
	storageTotal     int64
	storageErr       error
	pidLimit         int64
	pidUsed          int64
	pidErr           error
}

// measure reads the pressure signals; a signal that cannot be read carries its error.
func (m *Monitor) measure() signals {
	var s signals
	s.memAvailable, s.memErr = m.memoryAvailable()
	fs, err := m.storage()
	s.storageAvailable, s.storageTotal, s.storageErr = fs.available, fs.total, err
	s.pidLimit, s.pidUsed, s.pidErr = m.pids()
	return s
}

// Conditions measures the node and returns its conditions in the kubelet's order and words: NetworkUnavailable,
// MemoryPressure, DiskPressure, PIDPressure and Ready. A pressure whose signal cannot be read is Unknown, with the
// error as its message. prev are the node's current conditions: a condition whose status is unchanged keeps its
// LastTransitionTime; every condition gets now as LastHeartbeatTime.
func (m *Monitor) Conditions(prev []corev1.NodeCondition, h Health, now time.Time) []corev1.NodeCondition {
	return conditions(prev, m.measure(), m.Thresholds, h, now)
}

// conditions is Conditions on given measurements.
func conditions(prev []corev1.NodeCondition, s signals, t Thresholds, h Health, now time.Time) []corev1.NodeCondition {
	network := cond(corev1.NodeNetworkUnavailable, false, "NetworkReady", "pod network is ready",
		"NetworkPluginNotReady", "")
	if h.Network != nil {
		network = cond(corev1.NodeNetworkUnavailable, true, "", "", "NetworkPluginNotReady", "pod network is not ready: "+h.Network.Error())
	}

	memory := pressure(corev1.NodeMemoryPressure, s.memErr,
		t.MemoryAvailableBytes > 0 && s.memAvailable < t.MemoryAvailableBytes,
		"KubeletHasSufficientMemory", "kubelet has sufficient memory available",
		"KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
	disk := pressure(corev1.NodeDiskPressure, s.storageErr,
		t.StorageAvailablePercent > 0 && s.storageAvailable*100 < s.storageTotal*t.StorageAvailablePercent,
		"KubeletHasNoDiskPressure", "kubelet has no disk pressure",
		"KubeletHasDiskPressure", "kubelet has disk pressure")
	pid := pressure(corev1.NodePIDPressure, s.pidErr,
		t.PIDAvailablePercent > 0 && (s.pidLimit-s.pidUsed)*100 < s.pidLimit*t.PIDAvailablePercent,
		"KubeletHasSufficientPID", "kubelet has sufficient PID available",
		"KubeletHasInsufficientPID", "kubelet has insufficient PID available")

	// The kubelet's Ready message is its errors as an aggregate: the one error, or "[e1, e2]".
	var errs []string
	if h.Runtime != nil {
		errs = append(errs, "container runtime is down: "+h.Runtime.Error())
	}
	if h.Network != nil {
		errs = append(errs, "container runtime network not ready: "+h.Network.Error())
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "kubelet is posting ready status"}
	switch len(errs) {
	case 0:
	case 1:
		ready = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: errs[0]}
	default:
		ready = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "[" + strings.Join(errs, ", ") + "]"}
	}

	out := []corev1.NodeCondition{network, memory, disk, pid, ready}
	hb := metav1.NewTime(now)
	for i := range out {
		out[i].LastHeartbeatTime = hb
		out[i].LastTransitionTime = hb
		for _, p := range prev {
			if p.Type == out[i].Type && p.Status == out[i].Status && !p.LastTransitionTime.IsZero() {
				out[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	return out
}

// cond is a condition that is True (with trueReason/trueMessage) or False (with falseReason/falseMessage).
func cond(t corev1.NodeConditionType, isTrue bool, falseReason, falseMessage, trueReason, trueMessage string) corev1.NodeCondition {
	if isTrue {
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionTrue, Reason: trueReason, Message: trueMessage}
	}
	return corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: falseReason, Message: falseMessage}
}

// pressure is a pressure condition: Unknown when its signal could not be read, else True when under pressure.
func pressure(t corev1.NodeConditionType, err error, under bool, okReason, okMessage, badReason, badMessage string) corev1.NodeCondition {
	if err != nil {
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionUnknown, Reason: "MeasurementFailed",
			Message: fmt.Sprintf("cannot measure: %v", err)}
	}
	return cond(t, under, okReason, okMessage, badReason, badMessage)
}
