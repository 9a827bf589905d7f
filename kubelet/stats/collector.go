package stats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Runtime is containerd as the collector reads it. Its methods block; ctx
// bounds them.
type Runtime interface {
	// Metrics returns the cgroup metrics (cgroups v1 or v2 Metrics) of
	// container id's task and when they were read; an error that is
	// errdefs.IsNotFound when it has no task (any more).
	Metrics(ctx context.Context, id string) (*anypb.Any, time.Time, error)
	// Rootfs returns the bytes and inodes that container id's writable
	// layer uses: its snapshot, or for a unikernel its instance disk
	// (inodes 0).
	Rootfs(ctx context.Context, id string) (bytes, inodes uint64, err error)
}

// Config configures New.
type Config struct {
	// NodeName names the node in the summary.
	NodeName string
	// Pods returns the pods on the node with their current status (the
	// provider's GetPods).
	Pods    func(ctx context.Context) ([]*corev1.Pod, error)
	Runtime Runtime
	// Proc is where procfs is mounted ("" for /proc).
	Proc string
	// StateDir's file system is the node's (kubelet's root directory);
	// ImageFsDir's holds images (containerd's root); LogDir holds the pods'
	// CRI logs (<ns>_<name>_<uid>/<container>/).
	StateDir, ImageFsDir, LogDir string
	// VolumesDir holds pod volumes at <uid>/volumes/<name>.
	VolumesDir string
	// PodNetwork returns the interfaces of pod uid's network namespace,
	// none for a pod on the host's network.
	PodNetwork func(ctx context.Context, uid types.UID) ([]statsv1alpha1.InterfaceStats, error)
	// Bridge is the pod network's bridge, left out of the node's network.
	Bridge string
	// SystemProcesses returns the pids of the processes that stand for
	// the node's system containers, by kubelet's names
	// (statsv1alpha1.SystemContainerKubelet: the agent,
	// SystemContainerRuntime: containerd); nil or a name left out: none.
	SystemProcesses func(ctx context.Context) map[string]int
	// MaxAge is how long a gathering is reused (0: not at all; the agent's
	// default is 10 s, below metrics-server's 15 s resolution, so that the
	// endpoints one scrape reads share a gathering); Timeout bounds each
	// container's metrics (default 3 s); GuestTimeout bounds the guest's
	// view of a unikernel, within Timeout (default 1 s).
	MaxAge, Timeout, GuestTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Collector gathers the stats summary; it is safe for concurrent use.
type Collector struct {
	cfg Config

	mu      sync.Mutex // held while gathering: concurrent requests share one
	at      time.Time
	summary *statsv1alpha1.Summary
	prev    map[string]cpuSample // the previous gathering's CPU times by container ID, "" for the node
}

type cpuSample struct {
	t  time.Time
	ns uint64
}

// New returns a Collector.
func New(cfg Config) *Collector {
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.GuestTimeout == 0 {
		cfg.GuestTimeout = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg, prev: map[string]cpuSample{}}
}

// Summary returns the stats summary, gathered now unless the last one is
// younger than MaxAge. It fails only when the node's own figures cannot be
// read; a pod or container that cannot be is left out and logged. The
// result is shared: callers must not modify it.
func (c *Collector) Summary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.summary != nil && c.cfg.Now().Sub(c.at) < c.cfg.MaxAge {
		return c.summary, nil
	}
	s, err := c.gather(ctx)
	if err != nil {
		return nil, err
	}
	c.summary, c.at = s, c.cfg.Now()
	return s, nil
}

func (c *Collector) gather(ctx context.Context) (*statsv1alpha1.Summary, error) {
	next := map[string]cpuSample{}
	node, err := c.node(ctx, next)
	if err != nil {
		return nil, err
	}
	pods, err := c.cfg.Pods(ctx)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	sort.Slice(pods, func(i, j int) bool {
		return pods[i].Namespace+"/"+pods[i].Name < pods[j].Namespace+"/"+pods[j].Name
	})
	out := &statsv1alpha1.Summary{Node: *node, Pods: []statsv1alpha1.PodStats{}}
	res := make([]*statsv1alpha1.PodStats, len(pods))
	var mu sync.Mutex // guards next
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, pod := range pods {
		if !active(pod) {
			continue
		}
		g.Go(func() error {
			res[i] = c.pod(gctx, pod, func(id string, s cpuSample) *uint64 {
				mu.Lock()
				defer mu.Unlock()
				next[id] = s
				return rate(c.prev[id], s)
			})
			return nil
		})
	}
	_ = g.Wait()
	for _, p := range res {
		if p != nil {
			out.Pods = append(out.Pods, *p)
		}
	}
	out.Node.SystemContainers = c.systemContainers(ctx, out.Pods, out.Node.CPU.Time, func(id string, s cpuSample) *uint64 {
		next[id] = s
		return rate(c.prev[id], s)
	})
	c.prev = next
	return out, nil
}

// active tells whether pod has a container running, which only makes it
// have figures.
func active(pod *corev1.Pod) bool {
	for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		if st.State.Running != nil {
			return true
		}
	}
	return false
}

// rate is the CPU use between two samples in nanocores, nil without a
// previous sample or when the counter went back (a new task).
func rate(prev, cur cpuSample) *uint64 {
	dt := cur.t.Sub(prev.t)
	if prev.t.IsZero() || dt <= 0 || cur.ns < prev.ns {
		return nil
	}
	v := uint64(float64(cur.ns-prev.ns) / dt.Seconds())
	return &v
}

// container is one running container's figures.
type container struct {
	stats statsv1alpha1.ContainerStats
	u     usage
}

func (c *Collector) pod(ctx context.Context, pod *corev1.Pod, sample func(string, cpuSample) *uint64) *statsv1alpha1.PodStats {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name))
	now := metav1.NewTime(c.cfg.Now())
	ps := &statsv1alpha1.PodStats{
		PodRef:     statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
		Containers: []statsv1alpha1.ContainerStats{},
	}
	if pod.Status.StartTime != nil {
		ps.StartTime = *pod.Status.StartTime
	}
	var cs []container
	for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		if st.State.Running == nil {
			continue
		}
		id, ok := strings.CutPrefix(st.ContainerID, "containerd://")
		if !ok {
			continue
		}
		ct, err := c.container(ctx, pod, st, id, sample)
		if err != nil {
			// Exited during the scrape, cgroup gone, shim not answering.
			log.G(ctx).WithError(err).WithField("container", st.Name).Info("stats: container left out")
			continue
		}
		cs = append(cs, ct)
		ps.Containers = append(ps.Containers, ct.stats)
	}
	if len(cs) > 0 {
		ps.CPU, ps.Memory, ps.ProcessStats = sumPod(cs, now)
	}
	if c.cfg.PodNetwork != nil && !pod.Spec.HostNetwork {
		ifs, err := c.cfg.PodNetwork(ctx, pod.UID)
		if err != nil {
			log.G(ctx).WithError(err).Info("stats: pod network left out")
		} else if n := network(ifs, "eth0"); n != nil {
			n.Time = now
			ps.Network = n
		}
	}
	ps.VolumeStats = c.volumes(ctx, pod.UID, now)
	ps.EphemeralStorage = c.ephemeral(ps, now)
	return ps
}

func (c *Collector) container(ctx context.Context, pod *corev1.Pod, st corev1.ContainerStatus, id string,
	sample func(string, cpuSample) *uint64) (container, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	data, at, err := c.cfg.Runtime.Metrics(ctx, id)
	if err != nil {
		return container{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	u, err := decode(data)
	if err != nil {
		return container{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	t := metav1.NewTime(at)
	cs := statsv1alpha1.ContainerStats{Name: st.Name, StartTime: st.State.Running.StartedAt}
	cs.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: ptr(u.cpuNs),
		UsageNanoCores: sample(id, cpuSample{t: at, ns: u.cpuNs})}
	cs.Memory = memory(u, t)
	if b, inodes, err := c.cfg.Runtime.Rootfs(ctx, id); err != nil {
		log.G(ctx).WithError(err).WithField("container", st.Name).Info("stats: rootfs usage left out")
	} else {
		fs := c.statfs(c.cfg.ImageFsDir, t)
		fs.UsedBytes = ptr(b)
		if inodes > 0 {
			fs.InodesUsed = ptr(inodes)
		}
		cs.Rootfs = fs
	}
	if g, ok := c.cfg.Runtime.(GuestRuntime); ok {
		gctx, cancel := context.WithTimeout(ctx, c.cfg.GuestTimeout)
		gm, err := g.Guest(gctx, id)
		cancel()
		switch {
		case errdefs.IsNotImplemented(err):
		case err != nil:
			// A QMP monitor that does not answer (QEMU hung, or busy).
			log.G(ctx).WithError(err).WithField("container", st.Name).Info("stats: guest view left out")
		default:
			cs.UserDefinedMetrics = gm.userDefined(t)
		}
	}
	logDir := filepath.Join(c.cfg.LogDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), st.Name)
	if b, inodes, err := diskUsage(logDir); err != nil {
		log.G(ctx).WithError(err).WithField("container", st.Name).Info("stats: logs usage left out")
	} else {
		fs := c.statfs(c.cfg.LogDir, t)
		fs.UsedBytes, fs.InodesUsed = ptr(b), ptr(inodes)
		cs.Logs = fs
	}
	return container{stats: cs, u: u}, nil
}

// memory makes a MemoryStats as kubelet does: available is the limit less
// the working set, when there is a limit.
func memory(u usage, t metav1.Time) *statsv1alpha1.MemoryStats {
	m := &statsv1alpha1.MemoryStats{Time: t, UsageBytes: ptr(u.mem), WorkingSetBytes: ptr(u.workingSet),
		RSSBytes: ptr(u.rss), PageFaults: ptr(u.pageFaults), MajorPageFaults: ptr(u.majorFaults)}
	if u.limit > 0 {
		m.AvailableBytes = ptr(sub(u.limit, u.workingSet))
	}
	return m
}

// sumPod adds up a pod's containers (Feather has no pod cgroup).
func sumPod(cs []container, now metav1.Time) (*statsv1alpha1.CPUStats, *statsv1alpha1.MemoryStats, *statsv1alpha1.ProcessStats) {
	var u usage
	var cores uint64
	allRates := true
	for _, c := range cs {
		u.cpuNs += c.u.cpuNs
		u.mem += c.u.mem
		u.workingSet += c.u.workingSet
		u.rss += c.u.rss
		u.pageFaults += c.u.pageFaults
		u.majorFaults += c.u.majorFaults
		u.pids += c.u.pids
		if r := c.stats.CPU.UsageNanoCores; r != nil {
			cores += *r
		} else {
			allRates = false
		}
	}
	cpu := &statsv1alpha1.CPUStats{Time: now, UsageCoreNanoSeconds: ptr(u.cpuNs)}
	if allRates {
		cpu.UsageNanoCores = ptr(cores)
	}
	return cpu, memory(u, now), &statsv1alpha1.ProcessStats{ProcessCount: ptr(u.pids)}
}

// volumes reports every volume the agent holds for pod uid: emptyDir,
// configMap, secret, projected, downwardAPI (hostPath volumes are the
// host's, as kubelet leaves them out).
func (c *Collector) volumes(ctx context.Context, uid types.UID, now metav1.Time) []statsv1alpha1.VolumeStats {
	if c.cfg.VolumesDir == "" {
		return nil
	}
	dir := filepath.Join(c.cfg.VolumesDir, string(uid), "volumes")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.G(ctx).WithError(err).Info("stats: volumes left out")
		}
		return nil
	}
	var out []statsv1alpha1.VolumeStats
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, inodes, err := diskUsage(p)
		if err != nil {
			log.G(ctx).WithError(err).WithField("volume", e.Name()).Info("stats: volume left out")
			continue
		}
		fs := c.statfs(p, now)
		fs.UsedBytes, fs.InodesUsed = ptr(b), ptr(inodes)
		out = append(out, statsv1alpha1.VolumeStats{Name: e.Name(), FsStats: *fs})
	}
	return out
}

// ephemeral is the pod's local storage as kubelet counts it: its
// containers' writable layers and logs and its volumes, on the node's file
// system.
func (c *Collector) ephemeral(ps *statsv1alpha1.PodStats, now metav1.Time) *statsv1alpha1.FsStats {
	var used, inodes uint64
	for _, cs := range ps.Containers {
		for _, fs := range []*statsv1alpha1.FsStats{cs.Rootfs, cs.Logs} {
			if fs != nil && fs.UsedBytes != nil {
				used += *fs.UsedBytes
			}
			if fs != nil && fs.InodesUsed != nil {
				inodes += *fs.InodesUsed
			}
		}
	}
	for _, v := range ps.VolumeStats {
		used += *v.UsedBytes
		inodes += *v.InodesUsed
	}
	fs := c.statfs(c.cfg.StateDir, now)
	fs.UsedBytes, fs.InodesUsed = ptr(used), ptr(inodes)
	return fs
}

// node gathers the node's own figures.
func (c *Collector) node(ctx context.Context, next map[string]cpuSample) (*statsv1alpha1.NodeStats, error) {
	t := c.cfg.Now()
	now := metav1.NewTime(t)
	cpuNs, err := hostCPU(c.cfg.Proc)
	if err != nil {
		return nil, fmt.Errorf("node cpu: %w", err)
	}
	total, u, err := hostMemory(c.cfg.Proc)
	if err != nil {
		return nil, fmt.Errorf("node memory: %w", err)
	}
	s := cpuSample{t: t, ns: cpuNs}
	next[""] = s
	ns := &statsv1alpha1.NodeStats{NodeName: c.cfg.NodeName, StartTime: metav1.NewTime(bootTime(c.cfg.Proc)),
		CPU:    &statsv1alpha1.CPUStats{Time: now, UsageCoreNanoSeconds: ptr(cpuNs), UsageNanoCores: rate(c.prev[""], s)},
		Memory: memory(u, now)}
	ns.Memory.AvailableBytes = ptr(sub(total, u.workingSet))
	if ifs, err := netDev(filepath.Join(c.cfg.Proc, "net/dev")); err != nil {
		log.G(ctx).WithError(err).Info("stats: node network left out")
	} else {
		var host []statsv1alpha1.InterfaceStats
		for _, i := range ifs {
			if hostInterface(i.Name, c.cfg.Bridge) {
				host = append(host, i)
			}
		}
		if n := network(host, defaultInterface(filepath.Join(c.cfg.Proc, "net/route"))); n != nil {
			n.Time = now
			ns.Network = n
		}
	}
	if c.cfg.StateDir != "" {
		ns.Fs = c.statfs(c.cfg.StateDir, now)
	}
	if c.cfg.ImageFsDir != "" {
		fs := c.statfs(c.cfg.ImageFsDir, now)
		ns.Runtime = &statsv1alpha1.RuntimeStats{ImageFs: fs, ContainerFs: fs}
	}
	ns.Rlimit = rlimit(c.cfg.Proc, now)
	return ns, nil
}

// statfs returns the capacity, free and used space and inodes of the file
// system holding path; only the time when it cannot be read.
func (c *Collector) statfs(path string, now metav1.Time) *statsv1alpha1.FsStats {
	fs := &statsv1alpha1.FsStats{Time: now}
	if path == "" {
		return fs
	}
	st, err := statFS(path)
	if err != nil {
		return fs
	}
	fs.CapacityBytes, fs.AvailableBytes = ptr(st.capacity), ptr(st.available)
	fs.UsedBytes = ptr(sub(st.capacity, st.free))
	fs.Inodes, fs.InodesFree = ptr(st.inodes), ptr(st.inodesFree)
	fs.InodesUsed = ptr(sub(st.inodes, st.inodesFree))
	return fs
}

// fsInfo is what statfs(2) tells of a file system, in bytes and inodes.
type fsInfo struct {
	capacity, free, available, inodes, inodesFree uint64
}

// diskUsage adds up the blocks allocated to, and counts the inodes of,
// everything under dir (du -s), without following links.
func diskUsage(dir string) (bytes, inodes uint64, err error) {
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p != dir {
				return nil // removed while walking
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		inodes++
		bytes += allocated(info)
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("%s: %w", dir, errdefs.ErrNotFound)
	}
	return bytes, inodes, err
}

func ptr[T any](v T) *T { return &v }
