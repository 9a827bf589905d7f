package pods

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

// LabelResources holds, as JSON, the resources (requests and limits) a
// container's run was given: at its start, then at each in-place resize
// (kubelet's allocated and actuated resources; they are one here, as the
// agent actuates at once).
const LabelResources = "feather.dev/resources"

// Kubelet's CFS values (pkg/kubelet/cm): period 100 ms, quota at least 1 ms,
// shares at least 2.
const (
	cfsPeriod   = 100000
	minQuota    = 1000
	minShares   = 2
	sharesPer1K = 1024
)

// allocated returns the part of c's resources the agent allocates: its
// requests and limits, without claims; nil lists stay nil.
func allocated(c *corev1.Container) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{}
	if len(c.Resources.Requests) > 0 {
		r.Requests = c.Resources.Requests.DeepCopy()
	}
	if len(c.Resources.Limits) > 0 {
		r.Limits = c.Resources.Limits.DeepCopy()
	}
	return r
}

func encodeResources(r corev1.ResourceRequirements) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func decodeResources(s string) *corev1.ResourceRequirements {
	if s == "" {
		return nil
	}
	r := &corev1.ResourceRequirements{}
	if err := json.Unmarshal([]byte(s), r); err != nil {
		return nil
	}
	return r
}

// linuxResources are the cgroup values of r, as kubelet computes them:
// shares from the CPU request (2 without), CFS quota from the CPU limit (-1,
// unlimited, without), the memory limit (-1 without).
func linuxResources(r corev1.ResourceRequirements) *specs.LinuxResources {
	shares := uint64(minShares)
	if req := r.Requests.Cpu(); !req.IsZero() {
		shares = uint64(max(minShares, req.MilliValue()*sharesPer1K/1000))
	}
	quota := int64(-1)
	if lim := r.Limits.Cpu(); !lim.IsZero() {
		quota = max(minQuota, lim.MilliValue()*cfsPeriod/1000)
	}
	mem := int64(-1)
	if lim := r.Limits.Memory(); !lim.IsZero() {
		mem = lim.Value()
	}
	period := uint64(cfsPeriod)
	return &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period},
		Memory: &specs.LinuxMemory{Limit: &mem},
	}
}

// sameResources reports whether a run given have needs no resize to want.
func sameResources(have, want corev1.ResourceRequirements) bool {
	norm := func(l corev1.ResourceList) corev1.ResourceList {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	return equality.Semantic.DeepEqual(norm(have.Requests), norm(want.Requests)) &&
		equality.Semantic.DeepEqual(norm(have.Limits), norm(want.Limits))
}

// needsRestart reports whether resizing from have to want restarts
// container c: a changed resource whose resizePolicy is RestartContainer.
func needsRestart(c *corev1.Container, have, want corev1.ResourceRequirements) bool {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if have.Requests[name].Equal(want.Requests[name]) && have.Limits[name].Equal(want.Limits[name]) {
			continue
		}
		for _, p := range c.ResizePolicy {
			if p.ResourceName == name && p.RestartPolicy == corev1.RestartContainer {
				return true
			}
		}
	}
	return false
}

// resizeCheck is the decision on a resize before it is actuated: "" to go
// on, or PodReasonInfeasible / PodReasonDeferred with kubelet's message.
// podRequests are the pod's requests after the resize, others' those of the
// node's other pods, allocatable the node's.
func resizeCheck(podRequests, others, allocatable corev1.ResourceList) (reason, msg string) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		capacity, ok := allocatable[name]
		if !ok {
			continue
		}
		want := podRequests[name]
		if want.Cmp(capacity) > 0 {
			return corev1.PodReasonInfeasible, fmt.Sprintf("Node didn't have enough capacity: %s, requested: %d, capacity: %d", name, quantityValue(name, want), quantityValue(name, capacity))
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		capacity, ok := allocatable[name]
		if !ok {
			continue
		}
		used := others[name]
		total := podRequests[name].DeepCopy()
		total.Add(used)
		if total.Cmp(capacity) > 0 {
			want := podRequests[name]
			return corev1.PodReasonDeferred, fmt.Sprintf("Node didn't have enough resource: %s, requested: %d, used: %d, capacity: %d", name, quantityValue(name, want), quantityValue(name, used), quantityValue(name, capacity))
		}
	}
	return "", ""
}

// quantityValue is kubelet's number in resize messages: millicores, bytes.
func quantityValue(name corev1.ResourceName, q resource.Quantity) int64 {
	if name == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// podRequests sums the CPU and memory requests of pod's main containers and
// sidecars, with init containers' largest request as a floor (kubelet's
// effective requests, without pod overhead).
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	add := func(l corev1.ResourceList) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := l[name]; ok {
				sum := out[name]
				sum.Add(q)
				out[name] = sum
			}
		}
	}
	for i := range pod.Spec.Containers {
		add(pod.Spec.Containers[i].Resources.Requests)
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if sidecar(c) {
			add(c.Resources.Requests)
			continue
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[name]; ok && q.Cmp(out[name]) > 0 {
				out[name] = q.DeepCopy()
			}
		}
	}
	return out
}

// resizeState is what a resize leaves in the pod's conditions.
type resizeState struct {
	// Pending: PodResizePending with Reason (Infeasible, Deferred) and
	// Message; else InProgress (PodResizeInProgress), with Reason "Error"
	// and Message when actuating failed.
	Pending         bool
	InProgress      bool
	Reason, Message string
}

// resize applies in-place resizes of the pod's running main containers and
// sidecars: their spec's resources differ from those their run was given.
// It decides as kubelet (Infeasible over the node's allocatable, Deferred
// over what the other pods leave; a unikernel's resize is Infeasible unless
// its resizePolicy restarts it), then updates the cgroups of the running
// task (containerd task Update), or, for a RestartContainer policy, kills
// the run and starts the next one with the new resources. It returns the
// state for the pod's conditions (nil: none left).
func (w *worker) resize(ctx context.Context, pod *corev1.Pod, insts []instance) *resizeState {
	type change struct {
		c       *corev1.Container
		init    bool
		in      instance
		want    corev1.ResourceRequirements
		restart bool
	}
	var changes []change
	v := &view{pod: pod, instances: insts}
	consider := func(c *corev1.Container, init bool) {
		runs := v.runs(c.Name)
		if len(runs) == 0 || !runs[0].Running || runs[0].Resources == nil {
			return
		}
		want := allocated(c)
		if sameResources(*runs[0].Resources, want) {
			return
		}
		changes = append(changes, change{c: c, init: init, in: runs[0], want: want, restart: needsRestart(c, *runs[0].Resources, want)})
	}
	for i := range pod.Spec.InitContainers {
		if sidecar(&pod.Spec.InitContainers[i]) {
			consider(&pod.Spec.InitContainers[i], true)
		}
	}
	for i := range pod.Spec.Containers {
		consider(&pod.Spec.Containers[i], false)
	}
	if len(changes) == 0 {
		return nil
	}
	for _, ch := range changes {
		if w.p.isUnikernel(ch.in) && !ch.restart {
			return &resizeState{Pending: true, Reason: corev1.PodReasonInfeasible, Message: fmt.Sprintf(
				"container %s is an OSv unikernel: its VM's vCPUs and memory are fixed when it boots, so it cannot be resized in place; set its resizePolicy to RestartContainer for cpu and memory to resize it by a restart", ch.c.Name)}
		}
	}
	w.p.mu.Lock()
	running := w.p.runningPodsLocked(w.uid) // now, not at admission: pods come and go
	w.p.mu.Unlock()
	others := corev1.ResourceList{}
	for _, o := range running {
		for name, q := range podRequests(o) {
			sum := others[name]
			sum.Add(q)
			others[name] = sum
		}
	}
	if reason, msg := resizeCheck(podRequests(pod), others, w.p.cfg.NodeAllocatable); reason != "" {
		return &resizeState{Pending: true, Reason: reason, Message: msg}
	}
	var errs []string
	for _, ch := range changes {
		log := w.log.WithField("container", ch.c.Name).WithField("resources", encodeResources(ch.want))
		if ch.restart {
			log.Info("resize: restarting the container with its new resources")
			w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s resize requires restart", ch.c.Name))
			w.killContainer(ctx, pod, ch.c, ch.in, podGrace(pod))
			if _, err := w.p.instances(ctx, w.uid, nil); err != nil { // reaps the run
				errs = append(errs, err.Error())
				continue
			}
			if err := w.start(ctx, pod, ch.c, ch.init, ch.in.Attempt+1); err != nil {
				errs = append(errs, fmt.Sprintf("restart %s: %v", ch.c.Name, err))
				continue
			}
			// A restart is a start: kubelet runs postStart again. Its
			// failure is the container's (killed, run again per
			// restartPolicy), not the resize's.
			if hasPostStart(ch.c) {
				insts, err := w.p.instances(ctx, w.uid, w.wake)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				if err := w.afterStart(pod, ch.c, insts); err != nil {
					log.WithError(err).Warn("resize: postStart hook of the restarted container failed")
				}
			}
			continue
		}
		if err := w.p.updateResources(ctx, ch.in.ID, ch.want); err != nil {
			log.WithError(err).Warn("resize")
			errs = append(errs, fmt.Sprintf("resize %s: %v", ch.c.Name, err))
			continue
		}
		log.Info("resized in place")
	}
	if len(errs) > 0 {
		return &resizeState{InProgress: true, Reason: "Error", Message: strings.Join(errs, "; ")}
	}
	return nil
}

// updateResources sets the cgroup values of container id's running task to
// r and records r on the container.
func (p *Provider) updateResources(ctx context.Context, id string, r corev1.ResourceRequirements) error {
	c, err := p.cd.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return err
	}
	if err := task.Update(ctx, client.WithResources(linuxResources(r))); err != nil {
		return fmt.Errorf("update task %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{LabelResources: encodeResources(r)}); err != nil {
		return fmt.Errorf("record resources of %s: %w", id, err)
	}
	return nil
}
