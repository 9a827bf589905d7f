package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/kubelet/logs"
)

// Kubelet's restart back-off: 10 s, doubling, at most 5 min, forgotten after
// a run of 10 min.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

// worker owns one pod: it alone creates, starts and removes the pod's
// containers, in its goroutine, woken by spec changes and task exits.
type worker struct {
	p   *Provider
	uid types.UID
	log *log.Entry

	mu           sync.Mutex
	pod          *corev1.Pod // nil until CreatePod (recovered pods)
	status       *corev1.PodStatus
	skel         *corev1.Pod
	admitted     bool
	running      []*corev1.Pod // other pods, for admission
	failed       *waiting
	waiting      map[string]waiting
	pullBackoff  map[string]time.Time // image → when to try again
	pullDelay    map[string]time.Duration
	grace        time.Duration
	terminating  bool
	started      time.Time
	netns        string
	attached     bool                 // to the pod network (or hostNetwork)
	podIPs       []string             // from the pod network
	netRetry     time.Time            // when to try the pod network again
	netDelay     time.Duration        // back-off of failed attachments
	resolv       string               // the pod's resolv.conf
	released     bool                 // detached from the pod network: the pod ended
	mounts       map[string]string    // volume name → host path
	refreshAt    time.Time            // when volumes change next (zero: never)
	probes       map[string]*probeSet // by container name; the worker goroutine's
	evictCheckAt time.Time            // when the emptyDirs' usage is measured next
	resizing     *resizeState         // the last resize's outcome, nil when none is left

	// hookCtx ends when the pod is deleted: a postStart hook running then
	// is cut short.
	hookCtx    context.Context
	hookCancel context.CancelFunc

	kick chan struct{}
}

func newWorker(p *Provider, pod *corev1.Pod, withSpec bool) *worker {
	w := &worker{p: p, uid: pod.UID, skel: pod.DeepCopy(), kick: make(chan struct{}, 1),
		waiting: map[string]waiting{}, pullBackoff: map[string]time.Time{}, pullDelay: map[string]time.Duration{},
		probes: map[string]*probeSet{},
		log:    log.L.WithField("pod", pod.Namespace+"/"+pod.Name)}
	if withSpec {
		w.pod = pod.DeepCopy()
	}
	w.hookCtx, w.hookCancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

func (w *worker) key() string { return w.skel.Namespace + "/" + w.skel.Name }

func (w *worker) skeleton() *corev1.Pod { return w.skel.DeepCopy() }

// current returns the pod with its latest status, or nil before CreatePod.
func (w *worker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pod == nil {
		return nil
	}
	pod := w.pod.DeepCopy()
	if w.status != nil {
		pod.Status = *w.status.DeepCopy()
	}
	return pod
}

func (w *worker) setSpec(pod *corev1.Pod, running []*corev1.Pod) {
	w.mu.Lock()
	w.pod = pod.DeepCopy()
	w.running = running
	w.mu.Unlock()
	w.wake()
}

func (w *worker) terminate(grace time.Duration) {
	w.mu.Lock()
	w.terminating, w.grace = true, grace
	w.mu.Unlock()
	w.hookCancel()
	w.wake()
}

// isTerminating reports whether the pod is being deleted.
func (w *worker) isTerminating() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terminating
}

func (w *worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run is the worker's loop: sync, publish, sleep until woken or due.
func (w *worker) run() {
	ctx := w.p.ctx(context.Background())
	for {
		next, done := w.sync(ctx)
		if done {
			return
		}
		t := time.NewTimer(next)
		select {
		case <-w.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// sync brings containerd to the pod's spec once, publishes the status if it
// changed, and says when to look again.
func (w *worker) sync(ctx context.Context) (next time.Duration, done bool) {
	next = time.Minute
	w.mu.Lock()
	pod, terminating, grace := w.pod, w.terminating, w.grace
	w.mu.Unlock()

	insts, err := w.p.instances(ctx, w.uid, w.wake)
	if err != nil {
		w.log.WithError(err).Warn("list containers")
		return 5 * time.Second, false
	}
	if terminating {
		w.stop(ctx, insts, grace)
		return 0, true
	}
	if pod == nil {
		return time.Minute, false // recovered; waiting for CreatePod or DeletePod
	}
	if w.started.IsZero() {
		w.started = time.Now()
		if pod.Status.StartTime != nil {
			w.started = pod.Status.StartTime.Time
		}
	}
	next = w.reconcile(ctx, pod, insts)
	insts, err = w.p.instances(ctx, w.uid, w.wake)
	if v := (&view{pod: pod, instances: insts}); err == nil && w.failed == nil && v.mainDone() && v.anyRunning() {
		// The main containers ended during that reconcile (a job that
		// exits at once): the next stops what still runs, so that the
		// pod's terminal status, the only one virtual-kubelet sends,
		// has its sidecars terminated.
		next = w.reconcile(ctx, pod, insts)
		insts, err = w.p.instances(ctx, w.uid, w.wake)
	}
	if err == nil {
		if w.failed == nil {
			w.syncProbes(ctx, pod, insts)
		} else {
			w.stopProbes()
		}
		w.publish(pod, insts)
		if booting(insts) {
			// Nothing wakes the worker when a program starts: look
			// again soon.
			next = min(next, bootPoll)
		}
	}
	w.releaseIfDone(ctx)
	return next, false
}

// bootPoll is how often a worker looks whether a booting unikernel's
// program has started.
const bootPoll = 250 * time.Millisecond

// booting reports whether a unikernel of insts runs but its program has not
// started yet.
func booting(insts []instance) bool {
	for _, in := range insts {
		if in.Running && in.Booting {
			return true
		}
	}
	return false
}

// reconcile starts what should run. It returns when to look again.
func (w *worker) reconcile(ctx context.Context, pod *corev1.Pod, insts []instance) (next time.Duration) {
	if !w.admitted {
		if len(insts) == 0 {
			w.mu.Lock()
			running := w.running
			w.mu.Unlock()
			var r *Rejection
			if w.p.sysctls != nil {
				r = w.p.sysctls.admit(pod)
			}
			if r == nil && w.p.cfg.Admit != nil {
				r = w.p.cfg.Admit(pod, running)
			}
			if r != nil {
				// Decided once: one event, as kubelet's rejectPod.
				w.admitted = true
				w.failed = &waiting{Reason: r.Reason, Message: r.Message}
				w.p.events.Event(pod, corev1.EventTypeWarning, r.Reason, r.Message)
				return time.Hour
			}
		}
		w.admitted = true
	}
	if w.failed != nil {
		return time.Hour
	}
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && !w.started.IsZero() {
		left := time.Until(w.started.Add(time.Duration(*d) * time.Second))
		if left <= 0 {
			w.deadlineExceeded(ctx, pod, insts)
			return time.Hour
		}
		defer func() { next = min(next, left) }()
	}
	if d := w.checkStorage(ctx, pod, insts); d > 0 {
		if w.failed != nil {
			return time.Hour
		}
		defer func() { next = min(next, d) }()
	}
	if !pod.Spec.HostNetwork && w.netns == "" {
		p, err := w.p.net.Ensure(string(pod.UID))
		if err != nil {
			w.setWaiting(pod, "", "CreatePodSandboxError", err.Error())
			return 10 * time.Second
		}
		w.netns = p
	}
	if !w.attached {
		if d := w.attach(ctx, pod); d > 0 {
			return d
		}
	}
	if w.resolv == "" {
		if err := w.writeResolv(pod); err != nil {
			w.setWaiting(pod, "", "CreateContainerConfigError", err.Error())
			return 10 * time.Second
		}
	}
	if w.mounts == nil {
		if w.p.volumes == nil || len(pod.Spec.Volumes) == 0 {
			w.mounts = map[string]string{}
		} else {
			m, err := w.p.volumes.Setup(ctx, pod)
			if err != nil {
				w.setWaiting(pod, "", "CreateContainerConfigError", err.Error())
				w.p.events.Event(pod, corev1.EventTypeWarning, "FailedMount", err.Error())
				return 10 * time.Second
			}
			w.mounts = m
			w.refreshAt = time.Now()
		}
	}
	next = time.Minute
	if w.p.volumes != nil && !w.refreshAt.IsZero() && !time.Now().Before(w.refreshAt) {
		at, err := w.p.volumes.Refresh(ctx, pod)
		if err != nil {
			w.log.WithError(err).Warn("refresh volumes")
			w.p.events.Event(pod, corev1.EventTypeWarning, "FailedMount", err.Error())
		}
		w.refreshAt = at
	}
	if !w.refreshAt.IsZero() {
		next = min(next, max(time.Until(w.refreshAt), time.Second))
	}
	view := &view{pod: pod, instances: insts}
	policy := pod.Spec.RestartPolicy
	if view.mainDone() {
		// The pod ended: its sidecars are stopped, last first, and
		// not run again (kubelet's terminal pod).
		w.stopSidecars(ctx, pod, insts, podGrace(pod))
		return time.Hour
	}
	evicted, d := w.checkEviction(ctx, pod, insts)
	if evicted {
		return time.Hour
	}
	next = min(next, d)
	probes := w.probeStates()
	mainRan := view.mainStarted()
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		runs := view.runs(c.Name)
		if sidecar(c) {
			// Started in turn, then kept running (restarted with
			// back-off) beside the later ones and the main containers.
			d := w.ensure(ctx, pod, c, true, runs)
			next = min(next, d)
			ps, probed := probes[c.Name]
			if !mainRan && !sidecarStarted(runs, ps, probed) {
				if probed {
					return next // its startup probe's result wakes us
				}
				return min(next, time.Second) // just started: look again soon
			}
			continue
		}
		if mainRan {
			continue // the init phase is over; only sidecars are kept
		}
		if len(runs) > 0 {
			l := runs[0]
			if l.Running || (l.Exited && l.ExitCode == 0) {
				if l.Running {
					return min(next, time.Minute)
				}
				continue
			}
			if l.Exited && !restarts(policy, true, l.ExitCode) {
				w.stopSidecars(ctx, pod, insts, podGrace(pod))
				return time.Hour // the pod failed
			}
		}
		return min(next, w.ensure(ctx, pod, c, true, runs))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if d := w.ensure(ctx, pod, c, false, view.runs(c.Name)); d < next {
			next = d
		}
	}
	if r := w.resize(ctx, pod, insts); r != nil {
		w.mu.Lock()
		news := w.resizing == nil || *w.resizing != *r
		w.resizing = r
		w.mu.Unlock()
		if news && r.Pending && r.Reason == corev1.PodReasonInfeasible {
			w.p.events.Event(pod, corev1.EventTypeWarning, "ResizeInfeasible", r.Message)
		}
		if !r.Pending || r.Reason == corev1.PodReasonDeferred {
			next = min(next, 5*time.Second) // try again: resources may free up
		}
	} else {
		w.mu.Lock()
		w.resizing = nil
		w.mu.Unlock()
	}
	return min(next, w.ensureEphemeral(ctx, pod, view))
}

// ensure runs container c unless it runs or has ended for good: a first
// run, or a restart after kubelet's back-off. It returns when to look again.
func (w *worker) ensure(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, runs []instance) time.Duration {
	attempt := 0
	if len(runs) > 0 {
		l := runs[0]
		if l.Running {
			w.clearWaiting(c.Name)
			return time.Minute
		}
		if !l.Exited {
			return time.Second // just created
		}
		if !restartsContainer(pod, c, init, l.ExitCode) {
			w.clearWaiting(c.Name)
			return time.Hour
		}
		attempt = l.Attempt + 1
		delay := backoffBase << min(l.Attempt, 5)
		if l.FinishedAt.Sub(l.StartedAt) >= backoffReset {
			delay = 0
		}
		delay = min(delay, backoffMax)
		if wait := time.Until(l.FinishedAt.Add(delay)); wait > 0 {
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, c.Name, pod.Name, pod.Namespace, pod.UID)
			if w.setWaiting(pod, c.Name, "CrashLoopBackOff", msg) {
				w.p.events.Event(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+c.Name)
			}
			return wait
		}
	}
	if err := w.start(ctx, pod, c, init, attempt); err != nil {
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
	if hasPostStart(c) {
		insts, err := w.p.instances(ctx, w.uid, w.wake)
		if err == nil && w.afterStart(pod, c, insts) != nil {
			return time.Second
		}
	}
	w.clearWaiting(c.Name)
	return time.Minute
}

func hasPostStart(c *corev1.Container) bool {
	return c.Lifecycle != nil && c.Lifecycle.PostStart != nil
}

// afterStart runs the postStart hook of container c on its run just started
// (the latest in insts, if it runs), as kubelet runs it after every start of
// a container: its first, each restart per restartPolicy, and the restart
// of an in-place resize whose resizePolicy is RestartContainer. A failed
// hook has the run killed (see postStart) and the container recorded as
// waiting with PostStartHookError; its error is returned.
func (w *worker) afterStart(pod *corev1.Pod, c *corev1.Container, insts []instance) error {
	if !hasPostStart(c) {
		return nil
	}
	runs := (&view{instances: insts}).runs(c.Name)
	if len(runs) == 0 || !runs[0].Running {
		return nil
	}
	if err := w.postStart(w.p.ctx(w.hookCtx), pod, c, runs[0]); err != nil {
		w.setWaiting(pod, c.Name, "PostStartHookError", err.Error())
		return err
	}
	return nil
}

// setWaiting records why container name (or, with "", every container not
// yet run) waits; it reports whether that is news.
func (w *worker) setWaiting(pod *corev1.Pod, name, reason, msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := []string{name}
	if name == "" {
		names = nil
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			names = append(names, c.Name)
		}
	}
	news := false
	for _, n := range names {
		if w.waiting[n] != (waiting{reason, msg}) {
			news = true
			w.waiting[n] = waiting{reason, msg}
		}
	}
	return news
}

func (w *worker) clearWaiting(name string) {
	w.mu.Lock()
	delete(w.waiting, name)
	w.mu.Unlock()
}

// publish computes the status and hands it to virtual-kubelet if it changed
// and may be published (mayPublish).
func (w *worker) publish(pod *corev1.Pod, insts []instance) {
	if out, changed := w.statusOf(pod, insts, false); changed {
		w.log.WithField("phase", out.Status.Phase).Debug("status published")
		w.p.publish(out)
	}
}

// statusOf returns pod with its status computed from insts, and whether it
// changed and may be published (mayPublish); final is the last status of a
// deleted pod whose every container has stopped: its phase is terminal.
func (w *worker) statusOf(pod *corev1.Pod, insts []instance, final bool) (*corev1.Pod, bool) {
	w.mu.Lock()
	terminating := w.terminating
	v := &view{pod: pod, instances: insts, waiting: map[string]waiting{}, failed: w.failed,
		hostIP: w.p.cfg.HostIP, started: w.started, prev: w.status, probes: w.probeStates(), resize: w.resizing,
		terminal: final}
	for k, x := range w.waiting {
		v.waiting[k] = x
	}
	w.mu.Unlock()
	if !mayPublish(final, terminating, w.p.inAPI(pod)) {
		w.log.WithField("final", final).WithField("terminating", terminating).Debug("status not published: the pod is being deleted or gone")
		return nil, false
	}
	if pod.Spec.HostNetwork && w.p.cfg.HostIP != "" {
		v.podIPs = []string{w.p.cfg.HostIP}
	} else {
		v.podIPs = w.ips()
	}
	st := v.status()
	w.mu.Lock()
	same := w.status != nil && equality.Semantic.DeepEqual(*w.status, st)
	if !same {
		w.status = &st
	}
	w.mu.Unlock()
	out := pod.DeepCopy()
	out.Status = st
	return out, !same
}

// stop kills every running task of the pod (SIGTERM, SIGKILL after grace),
// removes its containers, volumes, network namespace and logs, and
// publishes a final status.
func (w *worker) stop(ctx context.Context, insts []instance, grace time.Duration) {
	w.stopProbes()
	w.mu.Lock()
	spec := w.pod
	w.mu.Unlock()
	// Main containers first, together; then the sidecars, last first,
	// each with what is left of the grace period (kubelet's
	// killContainersWithSyncResult for restartable init containers).
	deadline := time.Now().Add(grace)
	var wg sync.WaitGroup
	for _, in := range insts {
		if !in.Running || (spec != nil && isSidecar(spec, in.Name)) {
			continue
		}
		if spec != nil {
			w.p.events.Event(spec, corev1.EventTypeNormal, "Killing", "Stopping container "+in.Name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *corev1.Container
			if spec != nil {
				c = specContainer(spec, in.Name)
			}
			w.killContainer(ctx, spec, c, in, grace)
		}()
	}
	wg.Wait()
	if spec != nil {
		w.stopSidecars(ctx, spec, insts, max(time.Until(deadline), minGrace))
	}
	// Off the pod network as soon as nothing runs (kubelet's
	// StopPodSandbox): virtual-kubelet deletes the pod from the API once
	// its containers are gone, and the agent may be stopped right then.
	detached := w.detach(ctx)
	final, _ := w.p.instances(ctx, w.uid, nil)
	for _, in := range final {
		if err := w.p.removeContainer(ctx, in.ID); err != nil {
			w.log.WithError(err).WithField("container", in.ID).Warn("remove container")
		}
	}
	if w.p.volumes != nil {
		if err := w.p.volumes.Teardown(ctx, w.uid); err != nil {
			w.log.WithError(err).Warn("remove volumes")
		} else if err := w.p.removeImageVolumes(ctx, func(uid types.UID) bool { return uid == w.uid }); err != nil {
			w.log.WithError(err).Warn("remove image volume snapshots")
		}
	}
	if detached {
		if err := w.p.net.Remove(string(w.uid)); err != nil {
			w.log.WithError(err).Warn("remove network namespace")
		}
	}
	_ = removeAll(w.p.terminationDir(w.uid))
	for _, f := range []string{"etc-hosts", "hostname", "resolv.conf"} {
		_ = os.Remove(filepath.Join(w.podFilesDir(), f))
	}
	_ = os.Remove(w.podFilesDir()) // the pod's state dir, unless volumes are in it
	w.mu.Lock()
	pod := w.pod
	if pod == nil {
		pod = w.skel
	}
	w.mu.Unlock()
	_ = removeAll(w.p.podLogDir(pod))
	// Every container terminated, the phase terminal.
	for i := range final {
		if !final[i].Exited {
			final[i].Exited, final[i].Running, final[i].FinishedAt = true, false, time.Now()
			final[i].ExitCode, final[i].Reason = 137, "Error"
		}
	}
	var out *corev1.Pod
	changed := false
	if w.pod != nil {
		out, changed = w.statusOf(pod, final, true)
	}
	w.p.removed(w.uid)
	switch {
	case out != nil && w.p.cfg.Finalize != nil:
		// The last status, then the deletion, in that order: through
		// virtual-kubelet's queue the status could come after the pod
		// went, which would go with phase Running.
		if err := w.p.cfg.Finalize(ctx, out); err != nil {
			w.log.WithError(err).Warn("write the finished pod's last status and delete it from the API")
		}
	case changed:
		// Virtual-kubelet deletes the pod once it has seen it.
		w.p.publish(out)
	}
}

// isSidecar reports whether name is a sidecar init container of pod.
func isSidecar(pod *corev1.Pod, name string) bool {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return sidecar(&pod.Spec.InitContainers[i])
		}
	}
	return false
}

// stopSidecars kills the running sidecars of pod one by one, in reverse
// order of the spec, each with its preStop hook, sharing grace.
func (w *worker) stopSidecars(ctx context.Context, pod *corev1.Pod, insts []instance, grace time.Duration) {
	deadline := time.Now().Add(grace)
	v := &view{pod: pod, instances: insts}
	for _, c := range sidecarsLastFirst(pod) {
		runs := v.runs(c.Name)
		if len(runs) == 0 || !runs[0].Running {
			continue
		}
		w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", "Stopping container "+c.Name)
		w.killContainer(ctx, pod, c, runs[0], max(time.Until(deadline), minGrace))
	}
}

// sidecarsLastFirst returns pod's sidecar init containers in the order they
// are stopped: the reverse of the spec's.
func sidecarsLastFirst(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := len(pod.Spec.InitContainers) - 1; i >= 0; i-- {
		if c := &pod.Spec.InitContainers[i]; sidecar(c) {
			out = append(out, c)
		}
	}
	return out
}

// logFor returns the log file of container name (its previous run's with
// previous) and a channel closed once that run has ended.
func (w *worker) logFor(ctx context.Context, name string, previous bool) (string, <-chan struct{}, error) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if pod == nil {
		return "", nil, vkerrdefs.NotFoundf("pod %s not yet adopted", w.key())
	}
	insts, err := w.p.instances(w.p.ctx(ctx), w.uid, nil)
	if err != nil {
		return "", nil, err
	}
	runs := (&view{instances: insts}).runs(name)
	i := 0
	if previous {
		i = 1
	}
	// Kubelet answers these with 400 Bad Request, which kubectl shows.
	if len(runs) <= i {
		if previous {
			return "", nil, vkerrdefs.InvalidInputf("previous terminated container %q in pod %q not found", name, pod.Name)
		}
		return "", nil, vkerrdefs.InvalidInputf("container %q in pod %q is waiting to start", name, pod.Name)
	}
	in := runs[i]
	done := make(chan struct{})
	if in.Running {
		go func() {
			defer close(done)
			w.p.waitExit(ctx, in.ID)
		}()
	} else {
		close(done)
	}
	return logs.Path(w.p.podLogDir(pod), name, in.Attempt), done, nil
}

// containerID names attempt of container name of the pod: containerd IDs
// are at most 76 characters, so the UID is shortened.
func containerID(uid types.UID, name string, attempt int) string {
	short := string(uid)
	if len(short) > 8 {
		short = short[:8]
	}
	if len(name) > 60 {
		name = name[:60]
	}
	return short + "-" + name + "-" + strconv.Itoa(attempt)
}

// waitErr is a start failure that makes the container wait with reason and
// try again after retry.
type waitErr struct {
	reason, event, msg string
	retry              time.Duration
}

func (e *waitErr) Error() string { return e.reason + ": " + e.msg }

var _ = syscall.SIGTERM
var _ client.Task

// deadlineExceeded fails the pod whose activeDeadlineSeconds has passed, as
// kubelet does: phase Failed, reason DeadlineExceeded, one event, every
// running container killed (preStop first) and none run again. It blocks
// until the kills are done, as kubelet's syncTerminatingPod.
func (w *worker) deadlineExceeded(ctx context.Context, pod *corev1.Pod, insts []instance) {
	const msg = "Pod was active on the node longer than the specified deadline"
	w.p.events.Event(pod, corev1.EventTypeNormal, "DeadlineExceeded", msg)
	w.failPod(ctx, pod, insts, "DeadlineExceeded", msg)
}

// failPod kills every running container of the pod (preStop first; the
// sidecars after the others, last first), and fails it with reason and msg;
// none runs again. It blocks until the kills are done.
func (w *worker) failPod(ctx context.Context, pod *corev1.Pod, insts []instance, reason, msg string) {
	w.stopProbes()
	// The kills end before the phase turns Failed: virtual-kubelet sends no
	// status of a pod after it is Failed, so the containers' ends must be in
	// that one.
	// Sidecar init containers are killed too, after the main and regular
	// init containers, last first, as on deletion (kubelet's
	// killPodWithSyncResult for a terminal pod); w.failed keeps any of them
	// from being started again.
	grace := podGrace(pod)
	deadline := time.Now().Add(grace)
	var wg sync.WaitGroup
	for _, in := range insts {
		if !in.Running || isSidecar(pod, in.Name) {
			continue
		}
		w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", "Stopping container "+in.Name)
		wg.Go(func() { w.killContainer(ctx, pod, specContainer(pod, in.Name), in, grace) })
	}
	wg.Wait()
	w.stopSidecars(ctx, pod, insts, max(time.Until(deadline), minGrace))
	w.failed = &waiting{Reason: reason, Message: msg}
}
