package nodeinfo

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// res is a ResourceList of cpu and memory ("" leaves one out).
func res(cpu, memory string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if memory != "" {
		l[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	return l
}

func ctr(cpu, memory string) corev1.Container {
	return corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: res(cpu, memory)}}
}

func sidecar(cpu, memory string) corev1.Container {
	c := ctr(cpu, memory)
	always := corev1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

func pod(uid string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: uid, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{Containers: containers},
	}
}

func withInit(p *corev1.Pod, inits ...corev1.Container) *corev1.Pod {
	p.Spec.InitContainers = inits
	return p
}

func TestAdmit(t *testing.T) {
	alloc := Resources{CPUMilli: 2000, MemoryBytes: 2 * gi, Pods: 3, EphemeralStorageBytes: 10 * gi}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		running []*corev1.Pod
		want    *AdmitError
	}{
		{name: "fits", pod: pod("a", ctr("1", "1Gi")), running: []*corev1.Pod{pod("b", ctr("500m", "512Mi"))}},
		{name: "fits exactly", pod: pod("a", ctr("1500m", "1536Mi")), running: []*corev1.Pod{pod("b", ctr("500m", "512Mi"))}},
		{name: "no requests", pod: pod("a", corev1.Container{Name: "c"}), running: []*corev1.Pod{pod("b", ctr("2", "2Gi"))}},
		{name: "out of memory", pod: pod("a", ctr("100m", "1Gi")), running: []*corev1.Pod{pod("b", ctr("500m", "1536Mi"))},
			want: &AdmitError{Reason: "OutOfmemory", Resource: "memory", Requested: gi, Used: 1536 * mi, Capacity: 2 * gi}},
		{name: "out of cpu", pod: pod("a", ctr("1500m", "")), running: []*corev1.Pod{pod("b", ctr("1", "")), nil},
			want: &AdmitError{Reason: "OutOfcpu", Resource: "cpu", Requested: 1500, Used: 1000, Capacity: 2000}},
		{name: "cpu before memory", pod: pod("a", ctr("3", "3Gi")),
			want: &AdmitError{Reason: "OutOfcpu", Resource: "cpu", Requested: 3000, Used: 0, Capacity: 2000}},
		{name: "too many pods", pod: pod("a", ctr("1m", "1Mi")), running: []*corev1.Pod{pod("b"), pod("c"), pod("d")},
			want: &AdmitError{Reason: "OutOfpods", Resource: "pods", Requested: 1, Used: 3, Capacity: 3}},
		{name: "finished pods do not count", pod: pod("a", ctr("2", "")), running: []*corev1.Pod{
			func() *corev1.Pod { p := pod("b", ctr("1", "")); p.Status.Phase = corev1.PodSucceeded; return p }(),
			func() *corev1.Pod { p := pod("c", ctr("1", "")); p.Status.Phase = corev1.PodFailed; return p }(),
		}},
		{name: "the pod itself does not count", pod: pod("a", ctr("2", "")), running: []*corev1.Pod{pod("a", ctr("2", ""))}},
		{name: "init container larger than the app", pod: withInit(pod("a", ctr("500m", "")), ctr("1500m", "")),
			running: []*corev1.Pod{pod("b", ctr("1", ""))},
			want:    &AdmitError{Reason: "OutOfcpu", Resource: "cpu", Requested: 1500, Used: 1000, Capacity: 2000}},
		{name: "init containers take the max, not the sum", pod: withInit(pod("a", ctr("500m", "")), ctr("1", ""), ctr("1", "")),
			running: []*corev1.Pod{pod("b", ctr("1", ""))}},
		{name: "app containers sum", pod: pod("a", ctr("600m", ""), ctr("600m", "")), running: []*corev1.Pod{pod("b", ctr("1", ""))},
			want: &AdmitError{Reason: "OutOfcpu", Resource: "cpu", Requested: 1200, Used: 1000, Capacity: 2000}},
		{name: "overhead added", pod: func() *corev1.Pod {
			p := pod("a", ctr("", "1Gi"))
			p.Spec.Overhead = res("", "64Mi")
			return p
		}(), running: []*corev1.Pod{pod("b", ctr("", "1Gi"))},
			want: &AdmitError{Reason: "OutOfmemory", Resource: "memory", Requested: gi + 64*mi, Used: gi, Capacity: 2 * gi}},
		{name: "out of ephemeral storage", pod: pod("a", corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("11Gi")}}}),
			want: &AdmitError{Reason: "OutOfephemeral-storage", Resource: "ephemeral-storage", Requested: 11 * gi, Capacity: 10 * gi}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Admit(tc.pod, tc.running, alloc)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Admit() = %v, want nil", err)
				}
				return
			}
			var ae *AdmitError
			if !errors.As(err, &ae) {
				t.Fatalf("Admit() = %v, want %+v", err, tc.want)
			}
			if *ae != *tc.want {
				t.Errorf("Admit() = %+v, want %+v", *ae, *tc.want)
			}
		})
	}
}

func TestAdmitErrorStatus(t *testing.T) {
	err := Admit(pod("a", ctr("", "3Gi")), nil, Resources{CPUMilli: 1000, MemoryBytes: 2 * gi, Pods: 10})
	var ae *AdmitError
	if !errors.As(err, &ae) {
		t.Fatalf("Admit() = %v", err)
	}
	const msg = "Node didn't have enough resource: memory, requested: 3221225472, used: 0, capacity: 2147483648"
	if err.Error() != msg {
		t.Errorf("Error() = %q, want %q", err.Error(), msg)
	}
	s := ae.PodStatus()
	if s.Phase != corev1.PodFailed || s.Reason != "OutOfmemory" || s.Message != "Pod was rejected: "+msg {
		t.Errorf("PodStatus() = %+v", s)
	}
}

func TestPodRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want Resources
	}{
		{name: "containers sum", pod: pod("a", ctr("100m", "100Mi"), ctr("200m", "50Mi")),
			want: Resources{CPUMilli: 300, MemoryBytes: 150 * mi, Pods: 1}},
		{name: "init max per resource", pod: withInit(pod("a", ctr("100m", "100Mi")), ctr("1", "10Mi"), ctr("10m", "1Gi")),
			want: Resources{CPUMilli: 1000, MemoryBytes: gi, Pods: 1}},
		// Sidecars run beside the app containers and beside the init containers that follow them.
		{name: "sidecars", pod: withInit(pod("a", ctr("100m", "100Mi")), ctr("1", ""), sidecar("200m", "200Mi"), ctr("900m", "")),
			want: Resources{CPUMilli: 1100, MemoryBytes: 300 * mi, Pods: 1}},
		{name: "limits stand for missing requests", pod: pod("a", corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{
			Limits: res("2", "1Gi"), Requests: res("1", "")}}),
			want: Resources{CPUMilli: 1000, MemoryBytes: gi, Pods: 1}},
		{name: "pod-level requests replace the containers'", pod: func() *corev1.Pod {
			p := pod("a", ctr("100m", "100Mi"), ctr("100m", "100Mi"))
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: res("", "1Gi")}
			p.Spec.Overhead = res("50m", "")
			return p
		}(), want: Resources{CPUMilli: 250, MemoryBytes: gi, Pods: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodRequests(tc.pod); got != tc.want {
				t.Errorf("PodRequests() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
