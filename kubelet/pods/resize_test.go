package pods

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func rl(kv ...string) corev1.ResourceList {
	if len(kv) == 0 {
		return nil
	}
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func TestLinuxResources(t *testing.T) {
	for _, tc := range []struct {
		name       string
		r          corev1.ResourceRequirements
		shares     uint64
		quota, mem int64
	}{
		{name: "none", shares: 2, quota: -1, mem: -1},
		{name: "requests only", r: corev1.ResourceRequirements{Requests: rl("cpu", "250m", "memory", "64Mi")}, shares: 256, quota: -1, mem: -1},
		{name: "limits", r: corev1.ResourceRequirements{Requests: rl("cpu", "500m"), Limits: rl("cpu", "1500m", "memory", "128Mi")}, shares: 512, quota: 150000, mem: 128 << 20},
		// kubelet's floors: 2 shares, a 1 ms quota (a 5m limit is 500 µs).
		{name: "tiny", r: corev1.ResourceRequirements{Requests: rl("cpu", "1m"), Limits: rl("cpu", "5m")}, shares: 2, quota: 1000, mem: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := linuxResources(tc.r)
			if *lr.CPU.Shares != tc.shares || *lr.CPU.Quota != tc.quota || *lr.CPU.Period != 100000 || *lr.Memory.Limit != tc.mem {
				t.Errorf("shares %d quota %d/%d memory %d; want %d, %d/100000, %d", *lr.CPU.Shares, *lr.CPU.Quota, *lr.CPU.Period, *lr.Memory.Limit, tc.shares, tc.quota, tc.mem)
			}
		})
	}
}

func TestResizeDecisions(t *testing.T) {
	restartMem := []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.RestartContainer}}
	for _, tc := range []struct {
		name       string
		have, want corev1.ResourceRequirements
		policy     []corev1.ContainerResizePolicy
		same       bool
		restart    bool
	}{
		{name: "unchanged", have: corev1.ResourceRequirements{Requests: rl("cpu", "100m")}, want: corev1.ResourceRequirements{Requests: rl("cpu", "0.1")}, same: true},
		{name: "empty and nil lists", have: corev1.ResourceRequirements{Requests: corev1.ResourceList{}}, want: corev1.ResourceRequirements{}, same: true},
		{name: "cpu up", have: corev1.ResourceRequirements{Requests: rl("cpu", "100m")}, want: corev1.ResourceRequirements{Requests: rl("cpu", "200m")}, policy: restartMem},
		{name: "limit added", have: corev1.ResourceRequirements{Requests: rl("cpu", "100m")}, want: corev1.ResourceRequirements{Requests: rl("cpu", "100m"), Limits: rl("cpu", "200m")}},
		{name: "memory with RestartContainer", have: corev1.ResourceRequirements{Requests: rl("memory", "64Mi")}, want: corev1.ResourceRequirements{Requests: rl("memory", "96Mi")}, policy: restartMem, restart: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameResources(tc.have, tc.want); got != tc.same {
				t.Errorf("sameResources = %v, want %v", got, tc.same)
			}
			c := &corev1.Container{Name: "c", ResizePolicy: tc.policy}
			if got := needsRestart(c, tc.have, tc.want); got != tc.restart {
				t.Errorf("needsRestart = %v, want %v", got, tc.restart)
			}
		})
	}
}

func TestResizeCheck(t *testing.T) {
	alloc := rl("cpu", "2", "memory", "1Gi")
	for _, tc := range []struct {
		name        string
		pod, others corev1.ResourceList
		reason, msg string
	}{
		{name: "fits", pod: rl("cpu", "1", "memory", "512Mi"), others: rl("cpu", "500m")},
		{name: "over allocatable", pod: rl("cpu", "3"), reason: corev1.PodReasonInfeasible, msg: "Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000"},
		{name: "over what is left", pod: rl("memory", "768Mi"), others: rl("memory", "512Mi"), reason: corev1.PodReasonDeferred,
			msg: "Node didn't have enough resource: memory, requested: 805306368, used: 536870912, capacity: 1073741824"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := resizeCheck(tc.pod, tc.others, alloc)
			if reason != tc.reason || msg != tc.msg {
				t.Errorf("resizeCheck = %q, %q; want %q, %q", reason, msg, tc.reason, tc.msg)
			}
		})
	}
}

func TestPodRequests(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "big-init", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "3")}},
			{Name: "side", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways), Resources: corev1.ResourceRequirements{Requests: rl("memory", "10Mi")}},
		},
		Containers: []corev1.Container{
			{Name: "a", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1", "memory", "20Mi")}},
			{Name: "b", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m")}},
		},
	}}
	got := podRequests(pod)
	if cpu, mem := got[corev1.ResourceCPU], got[corev1.ResourceMemory]; cpu.MilliValue() != 3000 || mem.Value() != 30<<20 {
		t.Errorf("podRequests = cpu %s memory %s; want 3 (the init container's floor) and 30Mi", &cpu, &mem)
	}
}

// TestStatusResources: a running container reports the resources its run
// was given and their requests as allocated; a run without a record none.
func TestStatusResources(t *testing.T) {
	r := &corev1.ResourceRequirements{Requests: rl("cpu", "100m"), Limits: rl("memory", "64Mi")}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
	v := &view{pod: pod, instances: []instance{
		{ID: "a", Name: "a", Running: true, Resources: r},
		{ID: "b", Name: "b", Running: true},
	}, resize: &resizeState{Pending: true, Reason: corev1.PodReasonInfeasible, Message: "no"}}
	st := v.status()
	a, b := st.ContainerStatuses[0], st.ContainerStatuses[1]
	if a.Resources == nil || !sameResources(*a.Resources, *r) || !a.AllocatedResources.Cpu().Equal(resource.MustParse("100m")) || len(a.AllocatedResources) != 1 {
		t.Errorf("a: resources %v, allocated %v; want %v and its requests", a.Resources, a.AllocatedResources, r)
	}
	if b.Resources != nil || b.AllocatedResources != nil {
		t.Errorf("b: resources %v, allocated %v; want none", b.Resources, b.AllocatedResources)
	}
	var found bool
	for _, c := range st.Conditions {
		if c.Type == corev1.PodResizePending {
			found = c.Status == corev1.ConditionTrue && c.Reason == corev1.PodReasonInfeasible && c.Message == "no"
		}
		if c.Type == corev1.PodResizeInProgress {
			t.Errorf("PodResizeInProgress with a pending resize")
		}
	}
	if !found {
		t.Errorf("no PodResizePending Infeasible condition: %+v", st.Conditions)
	}
}
