package pods

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	nodev1client "k8s.io/client-go/kubernetes/typed/node/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/feather-edge/feather/kubelet/dns"
	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/podnet"
	"github.com/feather-edge/feather/kubelet/stdio"
)

// Config is what the provider needs from the agent.
type Config struct {
	// NodeName is the node's name; HostIP its address.
	NodeName, HostIP string
	// Namespace is the containerd namespace of the agent's containers.
	Namespace string
	// Runtimes maps RuntimeClass handlers and image backends to containerd
	// runtimes; "runc" is the default for plain containers.
	Runtimes map[string]string
	// VMSnapshotter is the containerd snapshotter of the containers that
	// do not run on Runtimes["runc"] (unikernels); "" is containerd's
	// default. When set, images are pulled without unpacking and unpacked
	// for the snapshotter of the container that uses them.
	VMSnapshotter string
	// PlainHTTP lists registry hosts pulled over plain HTTP (localhost and
	// 127.0.0.1 are tried over HTTP too, as containerd does).
	PlainHTTP []string
	// RegistryConfigDir holds per-registry hosts.toml files, as containerd's
	// config_path (DIR/<host>/hosts.toml: mirrors, CAs, plain HTTP); "" for
	// none.
	RegistryConfigDir string
	// LogDir holds the pods' CRI log files (kubelet: /var/log/pods).
	LogDir string
	// StateDir holds pod volumes; RunDir pod network namespaces.
	StateDir, RunDir string
	// Logger is the program run as each container's binary:// logger: it
	// must accept the arguments of logs.LoggerQuery (feather-cri-log, or
	// the agent itself).
	Logger string
	// LogRotation bounds each container run's log (kubelet's
	// containerLogMaxSize and containerLogMaxFiles); the zero value does not
	// rotate. The logger rotates: a change applies to containers started
	// after it.
	LogRotation logs.Rotation
	// Admit, if set, decides whether a new pod may run here: a non-nil
	// *Rejection fails the pod the way kubelet's admission does.
	Admit func(pod *corev1.Pod, running []*corev1.Pod) *Rejection
	// Network attaches pods to the pod network; nil leaves a pod's network
	// namespace with loopback only.
	Network Network
	// DNS makes the pods' resolv.conf.
	DNS dns.Config
	// ObservePull, if set, is told how long each image pull took and
	// whether it failed (the agent's metrics).
	ObservePull func(d time.Duration, err error)
	// TaskStarted, if set, is told of each container task started (after
	// its Start returned): its containerd runtime and its pid (a
	// unikernel's QEMU). It must not block (the agent's boot metric
	// watches the VM's boot from there).
	TaskStarted func(id, runtime string, pid uint32)
	// ConfigMaps and Services are read for containers' environments
	// (configMapKeyRef, envFrom, the services' variables); nil for none.
	// Services must have synced once before pods start, as kubelet waits.
	ConfigMaps corev1listers.ConfigMapLister
	Services   corev1listers.ServiceLister
	// NodeAllocatable is the node's allocatable resources: the value of a
	// resourceFieldRef to an unset limit.
	NodeAllocatable corev1.ResourceList
	// Finalize, if set, is called once a deleted pod's containers have all
	// exited and everything of it is removed, with the pod and its last
	// status (a terminal phase): it writes that status and then deletes the
	// pod from the API at once, as kubelet's status manager does (grace 0,
	// the pod's UID as precondition); virtual-kubelet alone would wait the
	// whole grace period. A pod already gone is no error. Without
	// Finalize, the last status goes to virtual-kubelet.
	Finalize func(ctx context.Context, pod *corev1.Pod) error
	// AllowedUnsafeSysctls are the sysctls (names, or prefixes ending in
	// *) a pod may set beyond the safe ones, as kubelet's
	// --allowed-unsafe-sysctls.
	AllowedUnsafeSysctls []string
	// PodUID, if set, returns the UID of the API's pod namespace/name as
	// the agent's pod informer last saw it, and false when it has none. A
	// pod that is gone, or whose name is another pod's now, gets no status
	// and no Finalize: virtual-kubelet keys pods by name and would write it
	// onto the pod of that name. Nil: every pod counts as in the API.
	PodUID func(namespace, name string) (types.UID, bool)
}

// Network attaches pods' network namespaces to the pod network; the agent
// adapts the cni package to it.
type Network interface {
	// Setup attaches pod, whose network namespace is at netns, and returns
	// its IPs, the primary first. It blocks while the plugins run. It is
	// idempotent, across agent restarts too: a pod already attached keeps
	// its addresses. An error that is errdefs.IsFailedPrecondition means the
	// network is not ready (no or a broken configuration, a missing plugin)
	// and nothing was done.
	Setup(ctx context.Context, pod *corev1.Pod, netns string) ([]string, error)
	// Teardown detaches pod uid, releasing its addresses. It is idempotent;
	// it must run before the namespace is removed, but works without it.
	Teardown(ctx context.Context, uid types.UID, netns string) error
	// Collect detaches every pod not in keep (start-up garbage collection).
	Collect(ctx context.Context, keep map[types.UID]bool) error
}

// Rejection is why a pod may not run on this node.
type Rejection struct{ Reason, Message string }

// Kube is the part of client-go's kubernetes.Interface the provider uses.
type Kube interface {
	NodeV1() nodev1client.NodeV1Interface
}

// Provider runs pods through containerd. It implements virtual-kubelet's
// nodeutil.Provider and node.PodNotifier.
type Provider struct {
	cfg     Config
	cd      *client.Client
	kube    Kube
	secrets corev1listers.SecretLister
	events  record.EventRecorder
	net     *podnet.Manager
	volumes Volumes
	env     *envSources
	sysctls *sysctlAllowlist

	mu      sync.Mutex
	workers map[types.UID]*worker
	notify  func(*corev1.Pod)
	waiters map[string]bool // container IDs whose task exit is awaited
	started map[string]bool // unikernel container IDs whose program has started
}

// Volumes materialises pod volumes; the volumes package implements it.
type Volumes interface {
	// Setup creates the pod's volumes and returns name → host path.
	Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error)
	// Teardown removes them all.
	Teardown(ctx context.Context, uid types.UID) error
	// Mounts returns container c's bind mounts of the directories Setup
	// returned.
	Mounts(pod *corev1.Pod, c *corev1.Container, dirs map[string]string) ([]specs.Mount, error)
	// Refresh rewrites what changes over time (tokens, configMaps, secrets,
	// labels) and says when to call it again (zero: never).
	Refresh(ctx context.Context, pod *corev1.Pod) (time.Time, error)
	// Orphans lists the pods with volumes that are not in keep.
	Orphans(keep map[types.UID]bool) ([]types.UID, error)
}

// New returns a provider using the containerd client cd and the Kubernetes
// client kube (with the node's identity), and recovers the pods whose
// containers containerd already has.
func New(ctx context.Context, cfg Config, cd *client.Client, kube Kube, secrets corev1listers.SecretLister,
	events record.EventRecorder, vols Volumes) (*Provider, error) {
	p := &Provider{cfg: cfg, cd: cd, kube: kube, secrets: secrets, events: events, volumes: vols,
		net:     &podnet.Manager{Dir: filepath.Join(cfg.RunDir, "netns")},
		workers: map[types.UID]*worker{}, waiters: map[string]bool{}, started: map[string]bool{}}
	p.env = &envSources{configMaps: cfg.ConfigMaps, secrets: secrets, services: cfg.Services,
		nodeName: cfg.NodeName, allocatable: cfg.NodeAllocatable}
	if cfg.HostIP != "" {
		p.env.hostIPs = []string{cfg.HostIP}
	}
	var err error
	if p.sysctls, err = newSysctlAllowlist(cfg.AllowedUnsafeSysctls); err != nil {
		return nil, fmt.Errorf("allowed unsafe sysctls: %w", err)
	}
	if err := p.recover(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Provider) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, p.cfg.Namespace)
}

// recover makes a worker, without a spec yet, for every pod that has
// containers in containerd, so GetPods reports them: virtual-kubelet then
// calls CreatePod for those that still exist (adopted as they are) and
// DeletePod for the rest.
func (p *Provider) recover(ctx context.Context) error {
	cs, err := p.cd.Containers(p.ctx(ctx), fmt.Sprintf("labels.%q", LabelPodUID))
	if err != nil {
		return fmt.Errorf("list containerd containers: %w", err)
	}
	for _, c := range cs {
		l, err := c.Labels(p.ctx(ctx))
		if err != nil {
			continue
		}
		uid := types.UID(l[LabelPodUID])
		if _, ok := p.workers[uid]; ok {
			continue
		}
		pod := &corev1.Pod{}
		pod.UID, pod.Namespace, pod.Name = uid, l[LabelPodNamespace], l[LabelPodName]
		p.workers[uid] = newWorker(p, pod, false)
		log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name).Info("recovered pod from containerd")
	}
	return p.collect(ctx)
}

// collect detaches from the pod network, and removes the network
// namespaces and volumes of, pods that have no containers left: deleted
// while the agent was down, or after a crash between making them and the
// first container; a pod that still exists gets them again when it is
// synced.
func (p *Provider) collect(ctx context.Context) error {
	keep := map[types.UID]bool{}
	for uid := range p.workers {
		keep[uid] = true
	}
	if p.cfg.Network != nil {
		// Before the namespaces go: the bridge plugin finds its rules
		// through the pod's interface.
		if err := p.cfg.Network.Collect(ctx, keep); err != nil {
			log.G(ctx).WithError(err).Warn("detach pods that are gone from the pod network")
		}
	}
	nets, err := p.net.List()
	if err != nil {
		return err
	}
	for _, uid := range nets {
		if !keep[types.UID(uid)] {
			log.G(ctx).WithField("pod-uid", uid).Info("removing the network namespace of a pod that is gone")
			if err := p.net.Remove(uid); err != nil {
				return err
			}
		}
	}
	if p.volumes == nil {
		return nil
	}
	orphans, err := p.volumes.Orphans(keep)
	if err != nil {
		return err
	}
	for _, uid := range orphans {
		log.G(ctx).WithField("pod-uid", uid).Info("removing the volumes of a pod that is gone")
		if err := p.volumes.Teardown(ctx, uid); err != nil {
			return err
		}
	}
	// After the unmounts: the view snapshots of image volumes of pods
	// that are gone.
	if err := p.removeImageVolumes(p.ctx(ctx), func(uid types.UID) bool { return !keep[uid] }); err != nil {
		log.G(ctx).WithError(err).Warn("remove the image volumes of pods that are gone")
	}
	return nil
}

// NotifyPods registers the callback that receives every status change.
func (p *Provider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

// find returns the worker of pod namespace/name. While a deleted pod is torn
// down, a new pod of its name may have a worker too: the new one's is
// returned.
func (p *Provider) find(namespace, name string) *worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	var found *worker
	for _, w := range p.workers {
		if w.key() != namespace+"/"+name {
			continue
		}
		if !w.isTerminating() {
			return w
		}
		found = w
	}
	return found
}

// inAPI reports whether the API has pod (a pod of its name and UID), as the
// agent's informer last saw it; without Config.PodUID, yes.
func (p *Provider) inAPI(pod *corev1.Pod) bool {
	if p.cfg.PodUID == nil {
		return true
	}
	uid, ok := p.cfg.PodUID(pod.Namespace, pod.Name)
	return ok && uid == pod.UID
}

// mayPublish decides whether a pod's status goes to virtual-kubelet, which
// keys pods by namespace/name and writes the status it is given onto the
// API's pod of that name, Running or not. final: the last status, with every
// container of the deleted pod stopped and a terminal phase; terminating: the
// pod is being deleted (DeletePod was called), so a status computed by a sync
// that began before is stale; inAPI: the API still has the pod, by name and
// UID (gone, or its name reused by a new pod, it must get none).
func mayPublish(final, terminating, inAPI bool) bool {
	return inAPI && (final || !terminating)
}

// CreatePod starts running pod (or adopts its recovered containers). Work
// happens in the pod's worker; errors reach the pod's status, not the caller.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[pod.UID]
	if !ok {
		w = newWorker(p, pod, true)
		p.workers[pod.UID] = w
	}
	running := p.runningPodsLocked(pod.UID)
	p.mu.Unlock()
	w.setSpec(pod, running)
	return nil
}

// UpdatePod takes the new spec; only what Kubernetes lets change is used.
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	return p.CreatePod(ctx, pod)
}

// DeletePod stops the pod's containers — SIGTERM, then SIGKILL after the
// grace period — and removes everything of it. It returns at once; the final
// status follows through NotifyPods.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[pod.UID]
	p.mu.Unlock()
	if !ok {
		return vkerrdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	grace := int64(30)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	w.terminate(time.Duration(grace) * time.Second)
	return nil
}

// Stopping reports whether pod uid is being torn down and Finalize will
// write its last status and delete it from the API once its containers are
// gone. Virtual-kubelet deletes a deleted pod from the API when its grace
// period ends, before the containers killed then are gone: the agent lets it
// not (see the agent's podClient), so that a pod never goes with phase
// Running, as under kubelet.
func (p *Provider) Stopping(uid types.UID) bool {
	p.mu.Lock()
	w := p.workers[uid]
	p.mu.Unlock()
	if w == nil || p.cfg.Finalize == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terminating && w.pod != nil
}

// removed forgets a pod once its worker has cleaned up.
func (p *Provider) removed(uid types.UID) {
	p.mu.Lock()
	delete(p.workers, uid)
	p.mu.Unlock()
}

// GetPod returns the pod with its current status, or NotFound.
func (p *Provider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	w := p.find(namespace, name)
	if w == nil {
		return nil, vkerrdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	pod := w.current()
	if pod == nil {
		// Recovered from containerd, not yet claimed by CreatePod.
		return nil, vkerrdefs.NotFoundf("pod %s/%s not yet adopted", namespace, name)
	}
	return pod, nil
}

// GetPodStatus returns the pod's current status.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod the node runs, recovered ones included.
func (p *Provider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*corev1.Pod
	for _, w := range p.workers {
		if pod := w.current(); pod != nil {
			out = append(out, pod)
		} else {
			out = append(out, w.skeleton())
		}
	}
	return out, nil
}

// runningPodsLocked returns the specs of the pods admitted so far, but uid.
func (p *Provider) runningPodsLocked(uid types.UID) []*corev1.Pod {
	var out []*corev1.Pod
	for id, w := range p.workers {
		if id == uid {
			continue
		}
		if pod := w.current(); pod != nil && pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded {
			out = append(out, pod)
		}
	}
	return out
}

// GetContainerLogs streams a container's CRI log as kubectl logs shows it.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	w := p.find(namespace, podName)
	if w == nil {
		return nil, vkerrdefs.NotFoundf("pod %s/%s is not on this node", namespace, podName)
	}
	path, done, err := w.logFor(ctx, containerName, opts.Previous)
	if err != nil {
		return nil, err
	}
	since := opts.SinceTime
	if opts.SinceSeconds > 0 {
		since = time.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	tail := opts.Tail
	if tail == 0 {
		tail = -1
	}
	return logs.NewReader(ctx, path, logs.Options{Tail: tail, LimitBytes: opts.LimitBytes, Timestamps: opts.Timestamps,
		Follow: opts.Follow, Since: since}, done)
}

// publish hands a pod with a new status to virtual-kubelet.
func (p *Provider) publish(pod *corev1.Pod) {
	p.mu.Lock()
	cb := p.notify
	p.mu.Unlock()
	if cb != nil {
		cb(pod)
	}
}

// logURI is the binary:// URI that makes the container's shim run the
// agent's logger, writing the CRI log at path and rotating it. The logger is a child of the
// shim, so logs keep flowing while the agent restarts.
func (p *Provider) logURI(path string) *url.URL {
	return &url.URL{Scheme: "binary", Path: p.cfg.Logger, RawQuery: logs.LoggerQuery(path, p.cfg.LogRotation).Encode()}
}

// taskIO returns the IO of the task of container c (containerd ID id), whose
// log is logPath: the binary:// logger, with a terminal if c has one, or, for
// a container that takes input (stdin: true) and runs under runc, the fifos
// of a stdio helper started here, returned too. A unikernel reads no input,
// so its stdin is never connected. runc says the container runs under runc.
func (p *Provider) taskIO(ctx context.Context, c *corev1.Container, id, logPath string, runc bool) (cio.Creator, *stdio.Helper, error) {
	tty := c.TTY && runc
	if !c.Stdin || !runc {
		cfg := cio.Config{Stdout: p.logURI(logPath).String(), Stderr: p.logURI(logPath).String(), Terminal: tty}
		return func(string) (cio.IO, error) { return logIO{cfg}, nil }, nil, nil
	}
	h, err := stdio.Start(ctx, p.cfg.Logger, stdio.Options{
		Dir: stdio.PathsFor(p.stdioDir(), id).Dir, Log: logPath, Rotation: p.cfg.LogRotation,
		TTY: tty, StdinOnce: c.StdinOnce,
	})
	if err != nil {
		return nil, nil, err
	}
	ps := h.Paths()
	cfg := cio.Config{Stdin: ps.Stdin, Stdout: ps.Stdout, Stderr: ps.Stderr, Terminal: tty}
	if tty {
		cfg.Stderr = "" // the terminal carries both streams
	}
	return func(string) (cio.IO, error) { return logIO{cfg}, nil }, h, nil
}

// logIO is the IO of a task whose streams someone else owns (a binary://
// logger, as cio.LogURI's, or a stdio helper's fifos): the agent copies
// nothing, and has nothing to wait for or close.
type logIO struct{ cfg cio.Config }

func (l logIO) Config() cio.Config { return l.cfg }
func (logIO) Cancel()              {}
func (logIO) Wait()                {}
func (logIO) Close() error         { return nil }

// stdioDir holds the directories of the containers' stdio helpers.
func (p *Provider) stdioDir() string {
	return filepath.Join(p.cfg.RunDir, "stdio")
}

// podLogDir is kubelet's /var/log/pods/<ns>_<name>_<uid>.
func (p *Provider) podLogDir(pod *corev1.Pod) string {
	return filepath.Join(p.cfg.LogDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}

func removeAll(dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	return os.RemoveAll(dir)
}
