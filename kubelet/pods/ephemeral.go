package pods

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// ephemeralNoUnikernel is why a pod with a unikernel gets no ephemeral
// container: the VM owns the pod's network and has no processes to share.
const ephemeralNoUnikernel = "ephemeral containers are not supported in a pod that runs an OSv unikernel: the VM owns the pod's network and has no processes or filesystem a debug container could share (kubectl logs and port-forward work)"

// ephemeral returns ephemeral container e as the container it runs as.
func ephemeral(e *corev1.EphemeralContainer) *corev1.Container {
	c := corev1.Container(e.EphemeralContainerCommon)
	return &c
}

// ensureEphemeral starts the ephemeral containers of pod that have not run
// yet, as kubelet does: once each, never restarted, whatever their exit and
// the pod's restartPolicy; with targetContainerName, in the PID namespace
// of that container's running task. It returns when to look again.
func (w *worker) ensureEphemeral(ctx context.Context, pod *corev1.Pod, v *view) time.Duration {
	next := time.Hour
	for i := range pod.Spec.EphemeralContainers {
		e := &pod.Spec.EphemeralContainers[i]
		if len(v.runs(e.Name)) > 0 {
			w.clearWaiting(e.Name)
			continue
		}
		if d := w.startEphemeral(ctx, pod, e, v); d < next {
			next = d
		}
	}
	return next
}

func (w *worker) startEphemeral(ctx context.Context, pod *corev1.Pod, e *corev1.EphemeralContainer, v *view) time.Duration {
	for _, in := range v.instances {
		if w.p.isUnikernel(in) {
			if w.setWaiting(pod, e.Name, "CreateContainerConfigError", ephemeralNoUnikernel) {
				w.p.events.Event(pod, corev1.EventTypeWarning, "Failed", ephemeralNoUnikernel)
			}
			return time.Hour
		}
	}
	var extra []oci.SpecOpts
	if t := e.TargetContainerName; t != "" {
		ns, err := w.pidNamespace(ctx, v, t)
		if err != nil {
			msg := fmt.Sprintf("target container %q of ephemeral container %s: %v", t, e.Name, err)
			if w.setWaiting(pod, e.Name, "CreateContainerError", msg) {
				w.p.events.Event(pod, corev1.EventTypeWarning, "Failed", msg)
			}
			return 10 * time.Second
		}
		extra = append(extra, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: ns}))
	}
	c := ephemeral(e)
	if err := w.start(ctx, pod, c, false, 0, extra...); err != nil {
		var we *waitErr
		if errors.As(err, &we) {
			if w.setWaiting(pod, c.Name, we.reason, we.msg) {
				w.p.events.Event(pod, corev1.EventTypeWarning, we.event, we.msg)
			}
			return we.retry
		}
		w.setWaiting(pod, c.Name, "CreateContainerError", err.Error())
		w.p.events.Event(pod, corev1.EventTypeWarning, "Failed", err.Error())
		return 10 * time.Second
	}
	w.clearWaiting(c.Name)
	return time.Hour
}

// pidNamespace returns the path of the PID namespace of container name's
// running task.
func (w *worker) pidNamespace(ctx context.Context, v *view, name string) (string, error) {
	runs := v.runs(name)
	if len(runs) == 0 || !runs[0].Running {
		return "", errors.New("it is not running")
	}
	c, err := w.p.cd.LoadContainer(ctx, runs[0].ID)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", runs[0].ID, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("task of %s: %w", runs[0].ID, err)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", task.Pid()), nil
}

// ephemeralStatuses are kubelet's status.ephemeralContainerStatuses: like a
// container's, in spec order; they count for neither phase nor readiness.
func (v *view) ephemeralStatuses() []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for i := range v.pod.Spec.EphemeralContainers {
		cs := v.containerStatus(ephemeral(&v.pod.Spec.EphemeralContainers[i]), false, "ContainerCreating")
		cs.Ready = false // kubelet: an ephemeral container is never ready
		out = append(out, cs)
	}
	return out
}
