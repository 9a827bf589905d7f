package pods

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/stdio"
	"github.com/feather-edge/feather/osv"
	"github.com/feather-edge/feather/vmimage"
)

// instances lists the pod's containerd containers. Along the way it reaps:
// a task that has exited gets its code and times written onto the
// container's labels and is deleted (its shim goes away); a container left
// half-made by a crash is removed. wake, if set, is called when a running
// task exits.
func (p *Provider) instances(ctx context.Context, uid types.UID, wake func()) ([]instance, error) {
	cs, err := p.cd.Containers(ctx, fmt.Sprintf("labels.%q==%q", LabelPodUID, string(uid)))
	if err != nil {
		return nil, err
	}
	var out []instance
	for _, c := range cs {
		info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
		if err != nil {
			continue
		}
		l := info.Labels
		in := instance{ID: c.ID(), Name: l[LabelContainer], Attempt: atoi(l[LabelAttempt]), Init: l[LabelInit] == "true",
			Image: info.Image, ImageID: l[LabelImageID], Runtime: info.Runtime.Name,
			StartedAt: parseTime(l[LabelStartedAt]), Resources: decodeResources(l[LabelResources])}
		if code, ok := l[LabelExitCode]; ok {
			in.Exited, in.ExitCode, in.FinishedAt, in.Reason = true, int32(atoi(code)), parseTime(l[LabelFinishedAt]), l[LabelReason]
			in.Message = p.runMessage(l, uid, in)
			out = append(out, in)
			continue
		}
		task, err := c.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			// Created but never started (the agent died in between), or
			// its task vanished with containerd's state: start over.
			if in.StartedAt.IsZero() {
				_ = p.removeContainer(ctx, c.ID())
				continue
			}
			in.Exited, in.ExitCode, in.FinishedAt, in.Reason = true, 255, time.Now(), "Unknown"
			_ = p.recordExit(ctx, c, in)
			in.Message = p.runMessage(l, uid, in)
			out = append(out, in)
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := task.Status(ctx)
		if err != nil {
			return nil, err
		}
		switch st.Status {
		case client.Stopped:
			in.Exited, in.ExitCode, in.FinishedAt = true, int32(st.ExitStatus), st.ExitTime
			if in.FinishedAt.IsZero() {
				in.FinishedAt = time.Now()
			}
			if err := p.recordExit(ctx, c, in); err != nil {
				return nil, err
			}
			if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("delete exited task %s: %w", c.ID(), err)
			}
			// The first status after the exit has the message: a pod
			// that ends Failed gets no later one from virtual-kubelet.
			// One taken from the log waits for the logger to write the
			// run's last output: the shim closes the container's pipes
			// when the task is deleted.
			if p.fallsBackToLogs(l, uid, in) {
				if !logs.WaitWriter(p.runLogPath(l, in), logDrainWait) {
					log.G(ctx).WithField("container", c.ID()).Warn("the logger did not finish in time: the termination message may miss the log's last lines")
				}
			}
			in.Message = p.runMessage(l, uid, in)
		case client.Created:
			_ = p.removeContainer(ctx, c.ID())
			continue
		default:
			in.Running = true
			if p.isUnikernel(in) {
				in.Booting = !p.programStarted(ctx, task, c.ID())
			}
			if wake != nil {
				p.watch(ctx, task, c.ID(), wake)
			}
		}
		out = append(out, in)
	}
	return out, nil
}

// programStarted reports whether the program of unikernel id, whose task
// runs, has started: the shim says so in the task's Pids (the Info of type
// osv.ProgramStartedTypeURL), once its console printed the start line. The
// answer is remembered once yes, until the container is removed.
func (p *Provider) programStarted(ctx context.Context, task client.Task, id string) bool {
	p.mu.Lock()
	done := p.started[id]
	p.mu.Unlock()
	if done {
		return true
	}
	ps, err := task.Pids(ctx)
	if err != nil {
		return false
	}
	if !startedIn(ps) {
		return false
	}
	p.mu.Lock()
	p.started[id] = true
	p.mu.Unlock()
	return true
}

// startedIn reports whether a VM's process list says its program started.
func startedIn(ps []client.ProcessInfo) bool {
	for _, pi := range ps {
		if pi.Info != nil && pi.Info.GetTypeUrl() == osv.ProgramStartedTypeURL {
			return true
		}
	}
	return false
}

// recordExit writes an exited run's code and times onto its container.
func (p *Provider) recordExit(ctx context.Context, c client.Container, in instance) error {
	labels := map[string]string{LabelExitCode: fmt.Sprint(in.ExitCode), LabelFinishedAt: formatTime(in.FinishedAt)}
	if in.Reason != "" {
		labels[LabelReason] = in.Reason
	}
	if _, err := c.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("record exit of %s: %w", c.ID(), err)
	}
	return nil
}

// watch wakes the pod's worker when the task exits; once per container.
func (p *Provider) watch(ctx context.Context, task client.Task, id string, wake func()) {
	p.mu.Lock()
	if p.waiters[id] {
		p.mu.Unlock()
		return
	}
	p.waiters[id] = true
	p.mu.Unlock()
	ch, err := task.Wait(ctx)
	if err != nil {
		p.mu.Lock()
		delete(p.waiters, id)
		p.mu.Unlock()
		return
	}
	go func() {
		<-ch
		p.mu.Lock()
		delete(p.waiters, id)
		p.mu.Unlock()
		wake()
	}()
}

// taskExit returns container id's task and the channel its exit status
// arrives on.
func (p *Provider) taskExit(ctx context.Context, id string) (client.Task, <-chan client.ExitStatus, error) {
	c, err := p.cd.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return nil, nil, err
	}
	return task, ch, nil
}

// waitExit returns when container id's task has exited or ctx ends.
func (p *Provider) waitExit(ctx context.Context, id string) {
	ctx = p.ctx(ctx)
	_, ch, err := p.taskExit(ctx, id)
	if err != nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// kill stops container id's task: SIGTERM, then SIGKILL after grace.
func (p *Provider) kill(ctx context.Context, id string, grace time.Duration) {
	task, ch, err := p.taskExit(ctx, id)
	if err != nil {
		return
	}
	if grace > 0 {
		_ = task.Kill(ctx, syscall.SIGTERM)
		select {
		case <-ch:
			return
		case <-time.After(grace):
		}
	}
	_ = task.Kill(ctx, syscall.SIGKILL)
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
	}
}

// removeContainer deletes container id, its task and its snapshot.
func (p *Provider) removeContainer(ctx context.Context, id string) error {
	c, err := p.cd.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	}
	// The helper of a container with stdin ends with the task; this is in
	// case it could not (it was killed).
	_ = stdio.RemoveAll(p.stdioDir(), id)
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	p.mu.Lock()
	delete(p.started, id)
	p.mu.Unlock()
	return nil
}

// start creates and starts run attempt of container c.
// extra are spec options added last (an ephemeral container's target PID
// namespace).
func (w *worker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, attempt int, extra ...oci.SpecOpts) error {
	p := w.p
	image, err := w.image(ctx, pod, c)
	if err != nil {
		return err
	}
	runtime, err := p.runtimeFor(ctx, pod, image)
	if err != nil {
		return &waitErr{reason: "CreateContainerConfigError", event: "Failed", msg: err.Error(), retry: 30 * time.Second}
	}
	if uses := execProbes(c); runtime != p.cfg.Runtimes["runc"] && len(uses) > 0 {
		return &waitErr{reason: "CreateContainerConfigError", event: "Failed", msg: unikernelExecError(c, uses).Error(), retry: time.Hour}
	}
	if err := p.oneVM(ctx, pod, c, runtime); err != nil {
		return &waitErr{reason: "CreateContainerConfigError", event: "Failed", msg: err.Error(), retry: 30 * time.Second}
	}
	var mounts []specs.Mount
	if p.volumes != nil {
		if err := w.imageVolumes(ctx, pod, c); err != nil {
			return err
		}
		mounts, err = p.volumes.Mounts(pod, c, w.mounts)
	}
	if err != nil {
		return &waitErr{reason: "CreateContainerConfigError", event: "Failed", msg: err.Error(), retry: 30 * time.Second}
	}
	id := containerID(pod.UID, c.Name, attempt)
	_ = p.removeContainer(ctx, id) // a leftover of a crash between create and start
	tm, err := p.terminationMount(pod.UID, id, c, runtime != p.cfg.Runtimes["runc"])
	if err != nil {
		return fmt.Errorf("termination log of %s: %w", c.Name, err)
	}
	mounts = append(mounts, tm)
	labels := map[string]string{
		LabelPodUID: string(pod.UID), LabelPodNamespace: pod.Namespace, LabelPodName: pod.Name,
		LabelContainer: c.Name, LabelAttempt: fmt.Sprint(attempt), LabelImageID: image.Target().Digest.String(),
		LabelResources: encodeResources(allocated(c)),
	}
	if init {
		labels[LabelInit] = "true"
	}
	if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		labels[LabelFallbackToLogs] = "true"
	}
	specOpts, err := w.specOpts(ctx, pod, c, image, mounts, runtime != p.cfg.Runtimes["runc"])
	if err != nil {
		// A configMap, secret or key the environment needs may appear:
		// tried again as kubelet's pod worker does, every 10 s.
		return &waitErr{reason: "CreateContainerConfigError", event: "Failed", msg: err.Error(), retry: 10 * time.Second}
	}
	if runtime == p.cfg.Runtimes["runc"] {
		specOpts = append(specOpts, withCgroupMount(c))
		if c.TTY {
			specOpts = append(specOpts, oci.WithTTY)
		}
	}
	specOpts = append(specOpts, extra...)
	snapshotter := p.snapshotterFor(runtime)
	if err := ensureUnpacked(ctx, image, snapshotter); err != nil {
		return err
	}
	cont, err := p.cd.NewContainer(ctx, id,
		client.WithImage(image),
		client.WithImageConfigLabels(image),
		client.WithAdditionalContainerLabels(labels),
		client.WithSnapshotter(snapshotter),
		client.WithNewSnapshot(id, image),
		client.WithRuntime(runtime, nil),
		client.WithNewSpec(specOpts...))
	if err != nil {
		return fmt.Errorf("create container %s: %w", c.Name, err)
	}
	w.log.WithField("container", id).WithField("runtime", runtime).Debug("container created")
	p.events.Event(pod, corev1.EventTypeNormal, "Created", "Created container "+c.Name)
	logPath := logs.Path(p.podLogDir(pod), c.Name, attempt)
	if err := os.MkdirAll(strings.TrimSuffix(logPath, "/"+fmt.Sprint(attempt)+".log"), 0o755); err != nil {
		return err
	}
	creator, helper, err := p.taskIO(ctx, c, id, logPath, runtime == p.cfg.Runtimes["runc"])
	if err != nil {
		_ = p.removeContainer(ctx, id)
		return fmt.Errorf("create task of %s: %w", c.Name, err)
	}
	task, err := cont.NewTask(ctx, creator)
	if err != nil {
		if helper != nil {
			helper.Stop()
		}
		_ = p.removeContainer(ctx, id)
		return fmt.Errorf("create task of %s: %w", c.Name, err)
	}
	if _, err := cont.SetLabels(ctx, map[string]string{LabelStartedAt: formatTime(time.Now())}); err != nil {
		_ = p.removeContainer(ctx, id)
		return err
	}
	p.watch(ctx, task, id, w.wake)
	if err := task.Start(ctx); err != nil {
		_ = p.removeContainer(ctx, id)
		return fmt.Errorf("start %s: %w", c.Name, err)
	}
	w.log.WithField("container", id).Debug("task started")
	if p.cfg.TaskStarted != nil {
		p.cfg.TaskStarted(id, runtime, task.Pid())
	}
	p.events.Event(pod, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	return nil
}

// oneVM refuses a second unikernel running at once in a pod: a VM owns its
// pod's network interface (every frame to the pod IP is redirected to its
// tap), and a pod has one IP. Unikernel init containers run one after the
// other, so they are fine.
func (p *Provider) oneVM(ctx context.Context, pod *corev1.Pod, c *corev1.Container, runtime string) error {
	if runtime == p.cfg.Runtimes["runc"] {
		return nil
	}
	insts, err := p.instances(ctx, pod.UID, nil)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if in.Running && in.Name != c.Name && in.Runtime != p.cfg.Runtimes["runc"] {
			return fmt.Errorf("container %s is a unikernel, but unikernel %s already runs in pod %s and owns its network (one unikernel per pod at a time)", c.Name, in.Name, pod.Name)
		}
	}
	return nil
}

// runtimeFor picks container c's containerd runtime: the pod's RuntimeClass
// handler, else the image's feather.backend label, else runc.
func (p *Provider) runtimeFor(ctx context.Context, pod *corev1.Pod, image client.Image) (string, error) {
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		obj, err := p.kube.NodeV1().RuntimeClasses().Get(ctx, *rc, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("RuntimeClass %q not found", *rc)
		}
		if err != nil {
			return "", fmt.Errorf("get RuntimeClass %q: %w", *rc, err)
		}
		rt, ok := p.cfg.Runtimes[obj.Handler]
		if !ok {
			return "", fmt.Errorf("RuntimeClass %q: handler %q is not configured on node %s (known: %s)", *rc, obj.Handler, p.cfg.NodeName, strings.Join(p.handlers(), ", "))
		}
		return rt, nil
	}
	cfg, err := image.Config(ctx)
	if err != nil {
		return "", err
	}
	blob, err := readContent(ctx, image, cfg)
	if err != nil {
		return "", err
	}
	kind, err := vmimage.KindOf(blob)
	if err != nil {
		return "", err
	}
	if kind.IsVM() {
		if err := kind.Validate(); err != nil {
			return "", fmt.Errorf("image %s: %w", image.Name(), err)
		}
		rt, ok := p.cfg.Runtimes[kind.Backend]
		if !ok {
			return "", fmt.Errorf("image %s needs backend %q, which node %s does not run", image.Name(), kind.Backend, p.cfg.NodeName)
		}
		return rt, nil
	}
	return p.cfg.Runtimes["runc"], nil
}

func (p *Provider) handlers() []string {
	var hs []string
	for h := range p.cfg.Runtimes {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	return hs
}

// snapshotterFor returns the snapshotter of containers on runtime: ""
// (containerd's default) for runc, Config.VMSnapshotter for the others.
func (p *Provider) snapshotterFor(runtime string) string {
	if runtime == p.cfg.Runtimes["runc"] {
		return ""
	}
	return p.cfg.VMSnapshotter
}

// ensureUnpacked unpacks image for snapshotter ("" the default) unless it is
// already.
func ensureUnpacked(ctx context.Context, image client.Image, snapshotter string) error {
	ok, err := image.IsUnpacked(ctx, snapshotter)
	if err == nil && ok {
		return nil
	}
	if err := image.Unpack(ctx, snapshotter); err != nil {
		var types []string
		if m, merr := images.Manifest(ctx, image.ContentStore(), image.Target(), image.Platform()); merr == nil {
			for _, l := range m.Layers {
				types = append(types, l.MediaType)
			}
		}
		return fmt.Errorf("unpack image %s (snapshotter %q): %w", image.Name(), snapshotter, vmimage.ExplainUnpack(types, err))
	}
	return nil
}

// image returns c's image, pulled per its imagePullPolicy.
func (w *worker) image(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (client.Image, error) {
	return w.pull(ctx, pod, c.Image, c.ImagePullPolicy)
}

// pull returns image, pulled per policy (kubelet's default when empty:
// Always for a :latest tag, else IfNotPresent) with the pod's
// imagePullSecrets, as kubelet's image puller does for containers and image
// volumes alike. Its errors are *waitErr with kubelet's reasons
// (InvalidImageName, ErrImageNeverPull, ErrImagePull, ImagePullBackOff).
func (w *worker) pull(ctx context.Context, pod *corev1.Pod, image string, policy corev1.PullPolicy) (client.Image, error) {
	p := w.p
	ref, err := reference.ParseDockerRef(image)
	if err != nil {
		return nil, &waitErr{reason: "InvalidImageName", event: "InspectFailed", msg: fmt.Sprintf("invalid image name %q: %v", image, err), retry: time.Hour}
	}
	name := ref.String()
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if t, ok := ref.(reference.Tagged); ok && t.Tag() == "latest" {
			policy = corev1.PullAlways
		}
	}
	if policy != corev1.PullAlways {
		img, err := p.cd.GetImage(ctx, name)
		if err == nil {
			return img, nil
		}
		if policy == corev1.PullNever {
			return nil, &waitErr{reason: "ErrImageNeverPull", event: "ErrImageNeverPull",
				msg: fmt.Sprintf("Container image %q is not present with pull policy of Never", image), retry: 30 * time.Second}
		}
	}
	w.mu.Lock()
	until := w.pullBackoff[name]
	w.mu.Unlock()
	if time.Now().Before(until) {
		return nil, &waitErr{reason: "ImagePullBackOff", event: "BackOff", msg: fmt.Sprintf("Back-off pulling image %q", image), retry: time.Until(until)}
	}
	p.events.Event(pod, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", image))
	start := time.Now()
	pullOpts := []client.RemoteOpt{client.WithResolver(p.resolver(ctx, pod))}
	if p.cfg.VMSnapshotter == "" {
		// Else unpacked by start, for the snapshotter of its runtime.
		pullOpts = append(pullOpts, client.WithPullUnpack)
	}
	img, err := p.cd.Pull(ctx, name, pullOpts...)
	if p.cfg.ObservePull != nil {
		p.cfg.ObservePull(time.Since(start), err)
	}
	if err != nil {
		w.mu.Lock()
		d := max(backoffBase, min(w.pullDelay[name]*2, backoffMax))
		w.pullDelay[name], w.pullBackoff[name] = d, time.Now().Add(d)
		w.mu.Unlock()
		return nil, &waitErr{reason: "ErrImagePull", event: "Failed", msg: fmt.Sprintf("Failed to pull image %q: %v", image, err), retry: d}
	}
	w.mu.Lock()
	delete(w.pullDelay, name)
	delete(w.pullBackoff, name)
	w.mu.Unlock()
	p.events.Event(pod, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s", image, time.Since(start).Round(time.Millisecond)))
	return img, nil
}

// resolver reaches registries as configured in Config.RegistryConfigDir
// (containerd's hosts.toml layout: mirrors, CAs, plain HTTP), over plain
// HTTP for the Config.PlainHTTP hosts and localhost, with the pod's
// imagePullSecrets as credentials.
func (p *Provider) resolver(ctx context.Context, pod *corev1.Pod) remotes.Resolver {
	opts := config.HostOptions{Credentials: p.pullCredentials(pod)}
	if p.cfg.RegistryConfigDir != "" {
		opts.HostDir = config.HostDirFromRoot(p.cfg.RegistryConfigDir)
	}
	hosts := config.ConfigureHosts(ctx, opts)
	plainOpts := opts
	plainOpts.DefaultScheme = "http"
	plain := config.ConfigureHosts(ctx, plainOpts)
	return docker.NewResolver(docker.ResolverOptions{Hosts: func(host string) ([]docker.RegistryHost, error) {
		if slices.Contains(p.cfg.PlainHTTP, host) {
			return plain(host)
		}
		return hosts(host)
	}})
}

// pullCredentials reads the pod's kubernetes.io/dockerconfigjson (and
// legacy dockercfg) imagePullSecrets.
func (p *Provider) pullCredentials(pod *corev1.Pod) func(host string) (string, string, error) {
	type entry struct{ Username, Password, Auth string }
	auths := map[string]entry{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		if p.secrets == nil {
			break
		}
		s, err := p.secrets.Secrets(pod.Namespace).Get(ref.Name)
		if err != nil {
			continue
		}
		var cfg struct{ Auths map[string]entry }
		if b, ok := s.Data[corev1.DockerConfigJsonKey]; ok {
			_ = json.Unmarshal(b, &cfg)
		} else if b, ok := s.Data[corev1.DockerConfigKey]; ok {
			_ = json.Unmarshal(b, &cfg.Auths)
		}
		for h, e := range cfg.Auths {
			h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://"), "/")
			h = strings.TrimSuffix(h, "/v1")
			if _, ok := auths[h]; !ok {
				auths[h] = e
			}
		}
	}
	return func(host string) (string, string, error) {
		e, ok := auths[host]
		if !ok && host == "registry-1.docker.io" {
			e, ok = auths["index.docker.io"]
		}
		if !ok {
			return "", "", nil
		}
		if e.Username == "" && e.Auth != "" {
			if b, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
				u, pw, _ := strings.Cut(string(b), ":")
				return u, pw, nil
			}
		}
		return e.Username, e.Password, nil
	}
}

// specOpts turns container c of pod into OCI spec options.
func (w *worker) specOpts(ctx context.Context, pod *corev1.Pod, c *corev1.Container, image client.Image, mounts []specs.Mount, vm bool) ([]oci.SpecOpts, error) {
	ic, err := imageConfig(ctx, image)
	if err != nil {
		return nil, err
	}
	host := hostname(pod, w.p.cfg.DNS.ClusterDomain)
	ips := w.ips()
	if pod.Spec.HostNetwork {
		// The node's UTS namespace and name, as containerd's CRI
		// plugin gives a hostNetwork pod.
		if h, err := os.Hostname(); err == nil {
			host = h
		}
		if w.p.cfg.HostIP != "" {
			ips = []string{w.p.cfg.HostIP}
		}
	}
	etc, err := w.etcFilesMounts(pod, c, ips, host)
	if err != nil {
		return nil, err
	}
	vars, err := w.p.env.environment(pod, c, w.ips())
	if err != nil {
		return nil, err
	}
	command, cargs := expandArgs(c.Command, vars), expandArgs(c.Args, vars)
	args := append(slices.Clone(ic.Entrypoint), ic.Cmd...)
	switch {
	case len(command) > 0:
		args = append(command, cargs...)
	case len(cargs) > 0:
		args = append(slices.Clone(ic.Entrypoint), cargs...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("container %s: no command: the image has none and the pod gives none", c.Name)
	}
	opts := []oci.SpecOpts{oci.WithImageConfig(image), oci.WithProcessArgs(args...)}
	if pod.Spec.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, oci.WithHostname(host))
	}
	// HOSTNAME first, as containerd's CRI sets it; the pod's env may
	// override it.
	env := []string{"HOSTNAME=" + host}
	for _, e := range vars {
		env = append(env, e.Name+"="+e.Value)
	}
	opts = append(opts, oci.WithEnv(env))
	if c.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(c.WorkingDir))
	}
	mounts = slices.Concat(mounts, etc, w.resolvMount())
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	if pod.Spec.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
		if w.resolv == "" {
			opts = append(opts, oci.WithHostResolvconf)
		}
	} else if w.netns != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: w.netns}))
	}
	// Kubelet's cgroup values, as an in-place resize sets them later.
	lr := linuxResources(allocated(c))
	if lim := *lr.Memory.Limit; lim > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(lim)))
	}
	if q := *lr.CPU.Quota; q > 0 {
		opts = append(opts, oci.WithCPUCFS(q, *lr.CPU.Period))
	}
	// Shares always: without a CPU request kubelet's 2, not the cgroup's
	// default 1024 (a resize that adds a request would lower them).
	opts = append(opts, oci.WithCPUShares(*lr.CPU.Shares))
	if vm {
		// A VM has no users, capabilities, seccomp or sysctls of the
		// host's to apply; only runAsNonRoot, a check of the image, is.
		if err := verifyRunAsNonRoot(pod, c, effectiveSecurityContext(pod, c), ic.User); err != nil {
			return nil, err
		}
		return opts, nil
	}
	sec, err := securityOpts(pod, c, imageUserConfig{User: ic.User}, filepath.Join(w.p.cfg.StateDir, "seccomp"))
	if err != nil {
		return nil, err
	}
	return append(opts, sec...), nil
}

// withCgroupMount mounts the container's cgroups at /sys/fs/cgroup, read-only
// unless it is privileged, as containerd's CRI does for kubelet (runc binds
// the container's own cgroup directories there): programs read their limits
// from it (the JVM, Go's GOMAXPROCS, kubelet's resize tests).
func withCgroupMount(c *corev1.Container) oci.SpecOpts {
	opts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
		opts[len(opts)-1] = "rw"
	}
	return oci.WithMounts([]specs.Mount{{Source: "cgroup", Destination: "/sys/fs/cgroup", Type: "cgroup", Options: opts}})
}
