package pods

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// instance is one containerd container of a pod: one run (attempt) of one
// of its containers, as its labels and task describe it.
type instance struct {
	ID      string
	Name    string // the Kubernetes container name
	Attempt int    // 0 for the first run; the restart count
	Init    bool
	Image   string
	ImageID string
	Runtime string
	// Running: its task runs. Exited: it ran and ended; ExitCode,
	// FinishedAt and Reason say how.
	Running, Exited bool
	// Booting: it runs, but it is a unikernel whose program has not
	// started yet (the VM boots); it is neither started nor ready.
	Booting               bool
	StartedAt, FinishedAt time.Time
	ExitCode              int32
	Reason                string
	// Message is the termination message of an exited run.
	Message string
	// Resources are those the run was given (LabelResources); nil for a
	// run started before the agent recorded them.
	Resources *corev1.ResourceRequirements
}

// waiting is why a container does not run now, when its instances do not
// say it: an image pull failing, a back-off, a configuration error.
type waiting struct{ Reason, Message string }

// view is everything a pod's status is computed from.
type view struct {
	pod       *corev1.Pod
	instances []instance
	waiting   map[string]waiting // by container name
	failed    *waiting           // the whole pod failed (admission, …)
	hostIP    string
	podIPs    []string
	started   time.Time
	prev      *corev1.PodStatus // for the conditions' transition times
	// resize is the state of an in-place resize, nil when none is left.
	resize *resizeState
	// probes are the probe results of the running containers that have
	// probes, by name; a running container without is started and ready.
	probes map[string]probeState
	// terminal: the pod was deleted and everything of it has stopped; its
	// phase is terminal, as kubelet's status manager makes a deleted pod's
	// (TerminatePod): never Running for a pod about to be gone.
	terminal bool
}

// latest returns the instances of container name, newest attempt first.
func (v *view) runs(name string) []instance {
	var out []instance
	for _, in := range v.instances {
		if in.Name == name {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b instance) int { return b.Attempt - a.Attempt })
	return out
}

// restarts reports whether a container that exited with code is run again
// under the pod's restartPolicy; init containers are re-run on failure
// unless the policy is Never, as kubelet does.
func restarts(policy corev1.RestartPolicy, init bool, code int32) bool {
	switch {
	case policy == corev1.RestartPolicyNever:
		return false
	case init || policy == corev1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

// sidecar reports whether init container c is a sidecar (KEP-753:
// restartPolicy Always): it keeps running beside the main containers, is
// restarted whenever it exits, and takes no part in the phase.
func sidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// restartsContainer is restarts for container c of pod: a sidecar is run
// again whatever its exit code, until the pod's main containers are done.
func restartsContainer(pod *corev1.Pod, c *corev1.Container, init bool, code int32) bool {
	if init && sidecar(c) {
		return true
	}
	return restarts(pod.Spec.RestartPolicy, init, code)
}

// sidecarStarted reports whether a sidecar's latest run lets the next init
// container start: it runs and its startup probe (if any) has passed.
func sidecarStarted(runs []instance, ps probeState, probed bool) bool {
	return len(runs) > 0 && runs[0].Running && (!probed || ps.started)
}

// anyRunning reports whether a container of the pod runs.
func (v *view) anyRunning() bool {
	for _, in := range v.instances {
		if in.Running {
			return true
		}
	}
	return false
}

// mainDone reports whether every main container of pod has ended for good
// (none will be restarted): the pod is then Succeeded or Failed and its
// sidecars are stopped.
func (v *view) mainDone() bool {
	for i := range v.pod.Spec.Containers {
		c := &v.pod.Spec.Containers[i]
		runs := v.runs(c.Name)
		if len(runs) == 0 || !runs[0].Exited || restarts(v.pod.Spec.RestartPolicy, false, runs[0].ExitCode) {
			return false
		}
	}
	return true
}

func terminated(in instance) *corev1.ContainerStateTerminated {
	reason := in.Reason
	if reason == "" {
		reason = "Completed"
		if in.ExitCode != 0 {
			reason = "Error"
		}
	}
	return &corev1.ContainerStateTerminated{
		ExitCode:    in.ExitCode,
		Reason:      reason,
		Message:     in.Message,
		StartedAt:   metav1.NewTime(in.StartedAt),
		FinishedAt:  metav1.NewTime(in.FinishedAt),
		ContainerID: "containerd://" + in.ID,
	}
}

// containerStatus is kubelet's status of container c.
func (v *view) containerStatus(c *corev1.Container, init bool, pendingReason string) corev1.ContainerStatus {
	st := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	runs := v.runs(c.Name)
	w, isWaiting := v.waiting[c.Name]
	if len(runs) == 0 {
		if !isWaiting {
			w = waiting{Reason: pendingReason}
		}
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
		return st
	}
	latest := runs[0]
	st.RestartCount = int32(latest.Attempt)
	st.ContainerID = "containerd://" + latest.ID
	if latest.ImageID != "" {
		st.ImageID = latest.ImageID
	}
	var prev *instance
	if len(runs) > 1 {
		prev = &runs[1]
	}
	switch {
	case latest.Running:
		st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(latest.StartedAt)}
		ps, probed := v.probes[c.Name]
		st.Ready, st.Started = !probed || ps.ready, ptr(!probed || ps.started)
		if latest.Booting {
			// A unikernel is ready (without a readiness probe) and
			// started (without a startup probe) once its program has
			// started, not when its VM has.
			if c.ReadinessProbe == nil {
				st.Ready = false
			}
			if c.StartupProbe == nil {
				st.Started = ptr(st.Ready) // a passed readiness probe: it serves
			}
		}
	case isWaiting:
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
		if latest.Exited {
			prev = &latest
		}
		st.Started = ptr(false)
	case latest.Exited:
		st.State.Terminated = terminated(latest)
		st.Started = ptr(false)
	default:
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		st.Started = ptr(false)
	}
	if prev != nil && prev.Exited {
		st.LastTerminationState.Terminated = terminated(*prev)
	}
	if latest.Resources != nil {
		// Kubelet's allocated and actual resources: the agent actuates
		// what it allocates at once.
		r := latest.Resources.DeepCopy()
		if len(r.Requests) > 0 {
			st.AllocatedResources = r.Requests.DeepCopy()
		}
		if st.State.Running != nil {
			st.Resources = r
		}
	}
	if init && !sidecar(c) && st.State.Terminated != nil && st.State.Terminated.ExitCode == 0 {
		st.Ready = true // kubelet: an init container that completed is ready
	}
	return st
}

// mainStarted reports whether any main container of the pod has run: its
// init phase is then over for good.
func (v *view) mainStarted() bool {
	for i := range v.pod.Spec.Containers {
		if len(v.runs(v.pod.Spec.Containers[i].Name)) > 0 {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// status computes the pod's status as kubelet would report it.
func (v *view) status() corev1.PodStatus {
	pod := v.pod
	st := corev1.PodStatus{
		HostIP:             v.hostIP,
		QOSClass:           pod.Status.QOSClass,
		ObservedGeneration: pod.Generation,
	}
	if v.hostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: v.hostIP}}
	}
	for _, ip := range v.podIPs {
		st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(v.podIPs) > 0 {
		st.PodIP = v.podIPs[0]
	}
	if !v.started.IsZero() {
		st.StartTime = ptr(metav1.NewTime(v.started))
	}
	if v.failed != nil && len(v.instances) == 0 {
		// Rejected before anything ran, as kubelet's rejectPod shows it:
		// phase, reason and message, no container statuses (so kubectl's
		// STATUS column is the reason, not ContainerCreating).
		rej := corev1.PodStatus{Phase: corev1.PodFailed, Reason: v.failed.Reason, Message: v.failed.Message, QOSClass: st.QOSClass, ObservedGeneration: pod.Generation}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				rej.Conditions = append(rej.Conditions, c)
			}
		}
		return rej
	}

	policy := pod.Spec.RestartPolicy
	initDone, initFailed := true, false
	var incompleteInit, unready []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := v.containerStatus(c, true, "PodInitializing")
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if sidecar(c) {
			// Counted for readiness like a main container, never for
			// the phase; initialised once started (kubelet keeps that
			// after a later restart, as here once a main container ran).
			if !cs.Ready {
				unready = append(unready, c.Name)
			}
			ps, probed := v.probes[c.Name]
			if !sidecarStarted(v.runs(c.Name), ps, probed) && !v.mainStarted() {
				initDone = false
				incompleteInit = append(incompleteInit, c.Name)
			}
			continue
		}
		if cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
			continue
		}
		initDone = false
		incompleteInit = append(incompleteInit, c.Name)
		if cs.State.Terminated != nil && !restarts(policy, true, cs.State.Terminated.ExitCode) {
			initFailed = true
		}
	}
	appReason := "PodInitializing"
	if initDone {
		appReason = "ContainerCreating"
	}
	allDone, allOK, anyRun := true, true, false
	succeeded := true // every main container ended with 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := v.containerStatus(c, false, appReason)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		if cs.RestartCount > 0 || cs.State.Running != nil || cs.State.Terminated != nil {
			anyRun = true
		}
		t := cs.State.Terminated
		if t == nil || t.ExitCode != 0 {
			succeeded = false
		}
		if t == nil || restarts(policy, false, t.ExitCode) {
			allDone = false
			continue
		}
		if t.ExitCode != 0 {
			allOK = false
		}
	}

	switch {
	case v.failed != nil:
		st.Phase, st.Reason, st.Message = corev1.PodFailed, v.failed.Reason, v.failed.Message
	case v.terminal && succeeded:
		st.Phase = corev1.PodSucceeded
	case v.terminal:
		st.Phase = corev1.PodFailed
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone:
		st.Phase = corev1.PodPending
	case allDone && allOK:
		st.Phase = corev1.PodSucceeded
	case allDone:
		st.Phase = corev1.PodFailed
	case anyRun:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}

	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: pod.Generation}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		c.LastTransitionTime = metav1.Now()
		if v.prev != nil {
			for _, p := range v.prev.Conditions {
				if p.Type == t && p.Status == c.Status {
					c.LastTransitionTime = p.LastTransitionTime
				}
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	st.EphemeralContainerStatuses = v.ephemeralStatuses()
	names := func(n []string) string { return "[" + strings.Join(n, " ") + "]" }
	cond(corev1.PodScheduled, true, "", "")
	cond(corev1.PodInitialized, initDone, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: %s", names(incompleteInit)))
	readyReason := "ContainersNotReady"
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		readyReason = "PodCompleted"
	}
	msg := fmt.Sprintf("containers with unready status: %s", names(unready))
	cond(corev1.ContainersReady, len(unready) == 0, readyReason, msg)
	cond(corev1.PodReady, len(unready) == 0, readyReason, msg)
	if r := v.resize; r != nil {
		t := corev1.PodResizeInProgress
		if r.Pending {
			t = corev1.PodResizePending
		}
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, Reason: r.Reason, Message: r.Message,
			ObservedGeneration: pod.Generation, LastTransitionTime: metav1.Now()}
		if v.prev != nil {
			for _, p := range v.prev.Conditions {
				if p.Type == t && p.Reason == c.Reason {
					c.LastTransitionTime = p.LastTransitionTime
				}
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	return st
}
