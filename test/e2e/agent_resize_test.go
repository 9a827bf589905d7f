package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestAgentResize resizes pods in place through the resize subresource, as
// `kubectl patch --subresource resize` does: a container's cgroup limits
// change without a restart and its status reports them; a RestartContainer
// policy restarts it; a resize over the node's allocatable is Infeasible,
// a resize over what the other pods leave is Deferred until they go, and a
// unikernel's is Infeasible (its VM's size is fixed at boot).
func TestAgentResize(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })
	res := func(cpuReq, cpuLim, memLim string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuReq), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLim), corev1.ResourceMemory: resource.MustParse(memLim)},
		}
	}
	box := newPod("box", corev1.RestartPolicyAlways,
		corev1.Container{Name: "inplace", Image: c.busybox, Command: []string{"sleep", "3600"}, Resources: res("100m", "200m", "64Mi")},
		// Its postStart hook counts its starts in an emptyDir: a restart
		// by a resize is a start.
		corev1.Container{Name: "restart", Image: c.busybox, Command: []string{"sleep", "3600"}, Resources: res("100m", "200m", "64Mi"),
			ResizePolicy: []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.RestartContainer}},
			VolumeMounts: []corev1.VolumeMount{{Name: "hooks", MountPath: "/hooks"}},
			Lifecycle:    &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo start >> /hooks/starts"}}}}})
	box.Spec.Volumes = []corev1.Volume{{Name: "hooks", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	box.Spec.TerminationGracePeriodSeconds = ptrTo(int64(1)) // sleep ignores SIGTERM
	vm := newPod("vm", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}, Resources: res("100m", "200m", "128Mi")})
	vm.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, box, vm)
	for _, name := range []string{"box", "vm"} {
		c.waitPod(t, name, 3*time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && ready(p) })
	}
	resize := func(t *testing.T, pod string, containers ...corev1.Container) error {
		t.Helper()
		var parts []string
		for _, ct := range containers {
			parts = append(parts, fmt.Sprintf(`{"name":%q,"resources":{"requests":{"cpu":%q,"memory":%q},"limits":{"cpu":%q,"memory":%q}}}`, ct.Name,
				ct.Resources.Requests.Cpu().String(), ct.Resources.Requests.Memory().String(), ct.Resources.Limits.Cpu().String(), ct.Resources.Limits.Memory().String()))
		}
		patch := `{"spec":{"containers":[` + strings.Join(parts, ",") + `]}}`
		_, err := c.kube.CoreV1().Pods("default").Patch(ctx, pod, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "resize")
		return err
	}
	// cgroup reads a cgroup file of container from inside it, as the
	// conformance specs do: v1 (a controller's directory), else v2.
	cgroup := func(container, v1, v2 string) string {
		t.Helper()
		script := fmt.Sprintf("cat /sys/fs/cgroup/%s 2>/dev/null || cat /sys/fs/cgroup/%s", v1, v2)
		out, err := c.kubectl(ctx, t, "exec", "box", "-c", container, "--", "sh", "-c", script)
		if err != nil {
			ls, _ := c.kubectl(ctx, t, "exec", "box", "-c", container, "--", "sh", "-c", "mount | grep cgroup; ls -l /sys/fs/cgroup /sys/fs/cgroup/*/ | head -60")
			t.Fatalf("read the cgroup of %s: %v: %s\nits cgroup mounts:\n%s", container, err, out, ls)
		}
		return strings.Fields(out)[0]
	}
	if q := cgroup("inplace", "cpu/cpu.cfs_quota_us", "cpu.max"); q != "20000" {
		t.Errorf("before the resize: CPU quota %s, want 20000", q)
	}
	// shares are kubelet's (request × 1024 / 1000) under v1; runc's
	// conversion of them under v2 (cpu.weight).
	shares := func(container string, want int) {
		t.Helper()
		weight := 1 + ((want-2)*9999)/262142
		if got := cgroup(container, "cpu/cpu.shares", "cpu.weight"); got != fmt.Sprint(want) && got != fmt.Sprint(weight) {
			t.Errorf("%s: cpu shares %s, want %d (v2 weight %d)", container, got, want, weight)
		}
	}
	shares("inplace", 102)
	// waitStarts waits until the postStart hook has run want times.
	waitStarts := func(t *testing.T, when, want string) {
		t.Helper()
		var n string
		waitFor(t, "postStart "+when, 30*time.Second, func(ctx context.Context) (bool, error) {
			out, err := c.kubectl(ctx, t, "exec", "box", "-c", "restart", "--", "cat", "/hooks/starts")
			n = fmt.Sprintf("%q, %v", out, err)
			return err == nil && out == want, nil
		}, &n)
	}
	waitStarts(t, "before the resize", "start\n")

	t.Run("in place and by restart", func(t *testing.T) {
		want := res("150m", "300m", "96Mi")
		if err := resize(t, "box", corev1.Container{Name: "inplace", Resources: want}, corev1.Container{Name: "restart", Resources: want}); err != nil {
			t.Fatalf("resize box: %v", err)
		}
		var last string
		p := c.waitPod(t, "box", 2*time.Minute, func(p *corev1.Pod) bool {
			last = fmt.Sprintf("generation %d observed %d conditions %+v", p.Generation, p.Status.ObservedGeneration, p.Status.Conditions)
			if p.Status.ObservedGeneration < p.Generation || !ready(p) || resizeCondition(p) != nil {
				return false
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Resources == nil || !cs.Resources.Limits.Cpu().Equal(resource.MustParse("300m")) {
					return false
				}
			}
			return true
		})
		for _, cs := range p.Status.ContainerStatuses {
			wantRestarts := int32(0)
			if cs.Name == "restart" {
				wantRestarts = 1
			}
			if cs.RestartCount != wantRestarts {
				t.Errorf("%s: restartCount %d after the resize, want %d", cs.Name, cs.RestartCount, wantRestarts)
			}
			if !cs.Resources.Limits.Memory().Equal(resource.MustParse("96Mi")) || !cs.AllocatedResources.Cpu().Equal(resource.MustParse("150m")) {
				t.Errorf("%s: resources %v, allocated %v; want the resized ones", cs.Name, cs.Resources, cs.AllocatedResources)
			}
		}
		for _, name := range []string{"inplace", "restart"} {
			shares(name, 153)
			if q := cgroup(name, "cpu/cpu.cfs_quota_us", "cpu.max"); q != "30000" {
				t.Errorf("%s: CPU quota %s after the resize, want 30000 (%s)", name, q, last)
			}
			if m := cgroup(name, "memory/memory.limit_in_bytes", "memory.max"); m != fmt.Sprint(96<<20) {
				t.Errorf("%s: memory limit %s after the resize, want %d", name, m, 96<<20)
			}
		}
		// kubelet runs postStart for every start of a container.
		waitStarts(t, "after the restart by a resize", "start\nstart\n")
	})

	t.Run("deferred", func(t *testing.T) {
		// The API server refuses a resize over the node's allocatable
		// itself; one over what the other pods leave waits (Deferred) and
		// goes through once they are gone.
		if err := resize(t, "box", corev1.Container{Name: "inplace", Resources: res("500000m", "500000m", "96Mi")}); err == nil {
			t.Errorf("a resize over the node's allocatable was accepted")
		}
		hog := newPod("hog", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1400m")}}})
		hog.Spec.TerminationGracePeriodSeconds = ptrTo(int64(1))
		c.create(ctx, t, hog)
		c.waitPod(t, "hog", 2*time.Minute, phase(corev1.PodRunning))
		if err := resize(t, "box", corev1.Container{Name: "inplace", Resources: res("600m", "600m", "96Mi")}); err != nil {
			t.Fatalf("resize box: %v", err)
		}
		p := c.waitPod(t, "box", time.Minute, func(p *corev1.Pod) bool {
			rc := resizeCondition(p)
			return rc != nil && rc.Type == corev1.PodResizePending && rc.Reason == corev1.PodReasonDeferred
		})
		if rc := resizeCondition(p); !strings.Contains(rc.Message, "Node didn't have enough resource: cpu") {
			t.Errorf("Deferred resize: %q", rc.Message)
		}
		if q := cgroup("inplace", "cpu/cpu.cfs_quota_us", "cpu.max"); q != "30000" {
			t.Errorf("a deferred resize changed the CPU quota to %s", q)
		}
		if err := c.kube.CoreV1().Pods("default").Delete(ctx, "hog", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitPod(t, "box", 2*time.Minute, func(p *corev1.Pod) bool {
			return resizeCondition(p) == nil && p.Status.ContainerStatuses[0].Resources.Limits.Cpu().Equal(resource.MustParse("600m"))
		})
		if q := cgroup("inplace", "cpu/cpu.cfs_quota_us", "cpu.max"); q != "60000" {
			t.Errorf("after the deferred resize went through: CPU quota %s, want 60000", q)
		}
	})

	t.Run("unikernel", func(t *testing.T) {
		if err := resize(t, "vm", corev1.Container{Name: "c", Resources: res("100m", "200m", "256Mi")}); err != nil {
			t.Fatalf("resize vm: %v", err)
		}
		p := c.waitPod(t, "vm", time.Minute, func(p *corev1.Pod) bool {
			rc := resizeCondition(p)
			return rc != nil && rc.Reason == corev1.PodReasonInfeasible
		})
		if rc := resizeCondition(p); !strings.Contains(rc.Message, "unikernel") {
			t.Errorf("unikernel resize: %q", rc.Message)
		}
		if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 0 || !cs.Resources.Limits.Memory().Equal(resource.MustParse("128Mi")) {
			t.Errorf("unikernel after a refused resize: restarts %d, resources %v", cs.RestartCount, cs.Resources)
		}
	})
}

// resizeCondition returns the pod's PodResizePending or PodResizeInProgress
// condition, nil if none.
func resizeCondition(p *corev1.Pod) *corev1.PodCondition {
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodResizePending || c.Type == corev1.PodResizeInProgress {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
