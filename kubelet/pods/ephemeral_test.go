package pods

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestEphemeralStatus: ephemeral containers get statuses of their own, in
// spec order, are never ready, and change neither the phase nor the pod's
// readiness, even once exited; the pod status and its conditions carry the
// spec's generation (observedGeneration).
func TestEphemeralStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID, pod.Generation = "p", "default", "0123456789", 3
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	pod.Spec.Containers = []corev1.Container{{Name: "a", Image: "busybox"}}
	for _, n := range []string{"debug", "gone", "new"} {
		pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers,
			corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: n, Image: "busybox"}, TargetContainerName: "a"})
	}
	for _, tc := range []struct {
		name    string
		waiting map[string]waiting
		want    map[string]string // container → Running|Terminated|Waiting:<reason>
	}{
		{"created", nil, map[string]string{"debug": "Running", "gone": "Terminated", "new": "Waiting:ContainerCreating"}},
		{"refused", map[string]waiting{"new": {"CreateContainerConfigError", ephemeralNoUnikernel}},
			map[string]string{"debug": "Running", "gone": "Terminated", "new": "Waiting:CreateContainerConfigError"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &view{pod: pod, waiting: tc.waiting, instances: []instance{
				{ID: "a", Name: "a", Running: true, StartedAt: t0},
				{ID: "debug", Name: "debug", Running: true, StartedAt: t0},
				{ID: "gone", Name: "gone", Exited: true, ExitCode: 1, StartedAt: t0, FinishedAt: t0.Add(time.Second)},
			}}
			st := v.status()
			if st.Phase != corev1.PodRunning {
				t.Errorf("phase %s, want Running", st.Phase)
			}
			if len(st.EphemeralContainerStatuses) != 3 {
				t.Fatalf("ephemeral statuses %+v", st.EphemeralContainerStatuses)
			}
			for i, cs := range st.EphemeralContainerStatuses {
				if cs.Name != pod.Spec.EphemeralContainers[i].Name {
					t.Errorf("status %d is %s", i, cs.Name)
				}
				if got := stateName(cs.State); got != tc.want[cs.Name] {
					t.Errorf("%s: state %s, want %s", cs.Name, got, tc.want[cs.Name])
				}
				if cs.Ready {
					t.Errorf("%s is ready", cs.Name)
				}
			}
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d, want 3", st.ObservedGeneration)
			}
			for _, c := range st.Conditions {
				if c.ObservedGeneration != 3 {
					t.Errorf("condition %s: observedGeneration %d, want 3", c.Type, c.ObservedGeneration)
				}
				if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != corev1.ConditionTrue {
					t.Errorf("condition %s is %s: ephemeral containers must not count", c.Type, c.Status)
				}
			}
		})
	}
}

func stateName(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running"
	case s.Terminated != nil:
		return "Terminated"
	case s.Waiting != nil:
		return "Waiting:" + s.Waiting.Reason
	}
	return ""
}
