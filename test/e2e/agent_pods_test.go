package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// newPod returns a pod named name on the agent's node with spec.
func newPod(name string, policy corev1.RestartPolicy, containers ...corev1.Container) *corev1.Pod {
	spec := podTemplate(containers...)
	spec.RestartPolicy = policy
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}}, Spec: spec}
}

func (c *cluster) create(ctx context.Context, t *testing.T, objs ...any) {
	t.Helper()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			_, err = c.kube.CoreV1().Pods("default").Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = c.kube.CoreV1().ConfigMaps("default").Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Secret:
			_, err = c.kube.CoreV1().Secrets("default").Create(ctx, o, metav1.CreateOptions{})
		case *nodev1.RuntimeClass:
			_, err = c.kube.NodeV1().RuntimeClasses().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("create %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (c *cluster) pod(ctx context.Context, t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := c.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPod polls pod name until ok says so; the failure shows the status.
func (c *cluster) waitPod(t *testing.T, name string, timeout time.Duration, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last string
	var got *corev1.Pod
	waitFor(t, "pod "+name, timeout, func(ctx context.Context) (bool, error) {
		p, err := c.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got, last = p, fmt.Sprintf("%s %+v", p.Status.Phase, p.Status)
		return ok(p), nil
	}, &last)
	return got
}

func phase(want corev1.PodPhase) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Status.Phase == want }
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// TestAgentPods runs pods whose containers exit, crash, read volumes, fail to
// pull, or do not fit, and checks what Kubernetes shows of them.
func TestAgentPods(t *testing.T) {
	registries := t.TempDir()
	c := newCluster(t, "--registry-config-dir", registries)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	// Subtests run in parallel, after this function returns.
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	t.Run("restartPolicy", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name   string
			policy corev1.RestartPolicy
			script string
			phase  corev1.PodPhase
			code   int32
		}{
			{"never-ok", corev1.RestartPolicyNever, "exit 0", corev1.PodSucceeded, 0},
			{"never-fail", corev1.RestartPolicyNever, "exit 3", corev1.PodFailed, 3},
			{"onfailure-ok", corev1.RestartPolicyOnFailure, "exit 0", corev1.PodSucceeded, 0},
		} {
			c.create(ctx, t, newPod(tc.name, tc.policy, corev1.Container{Name: "c", Image: c.busybox, Command: sh(tc.script)}))
			p := c.waitPod(t, tc.name, time.Minute, phase(tc.phase))
			st := p.Status.ContainerStatuses[0]
			if st.State.Terminated == nil || st.State.Terminated.ExitCode != tc.code || st.RestartCount != 0 {
				t.Errorf("%s: container status %+v", tc.name, st)
			}
		}
	})

	t.Run("activeDeadlineSeconds", func(t *testing.T) {
		t.Parallel()
		p := newPod("deadline", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("exec sleep 3600")})
		p.Spec.ActiveDeadlineSeconds = ptrTo(int64(3))
		p.Spec.TerminationGracePeriodSeconds = ptrTo(int64(1))
		c.create(ctx, t, p)
		got := c.waitPod(t, "deadline", time.Minute, phase(corev1.PodFailed))
		if got.Status.Reason != "DeadlineExceeded" || len(got.Status.ContainerStatuses) != 1 {
			t.Errorf("deadline: status %+v", got.Status)
		}
		c.waitPod(t, "deadline", 30*time.Second, func(p *corev1.Pod) bool {
			st := p.Status.ContainerStatuses
			return len(st) == 1 && st[0].State.Terminated != nil && st[0].RestartCount == 0
		})
		c.waitEvent(t, "deadline", "DeadlineExceeded", "longer than the specified deadline", 10*time.Second)
	})

	t.Run("crashloop", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t, newPod("crash", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("echo run; exit 1")}))
		// Each run's start and end, by restart count, from the statuses seen.
		started, finished := map[int32]time.Time{}, map[int32]time.Time{}
		note := func(n int32, t *corev1.ContainerStateTerminated) {
			if t != nil {
				started[n], finished[n] = t.StartedAt.Time, t.FinishedAt.Time
			}
		}
		p := c.waitPod(t, "crash", 2*time.Minute, func(p *corev1.Pod) bool {
			st := p.Status.ContainerStatuses
			if len(st) != 1 {
				return false
			}
			note(st[0].RestartCount, st[0].State.Terminated)
			// In CrashLoopBackOff the last termination is the latest run's.
			if st[0].State.Waiting != nil {
				note(st[0].RestartCount, st[0].LastTerminationState.Terminated)
			} else if st[0].RestartCount > 0 {
				note(st[0].RestartCount-1, st[0].LastTerminationState.Terminated)
			}
			if r := st[0].State.Running; r != nil {
				started[st[0].RestartCount] = r.StartedAt.Time
			}
			return st[0].RestartCount >= 2 && st[0].State.Waiting != nil
		})
		st := p.Status.ContainerStatuses[0]
		if st.State.Waiting.Reason != "CrashLoopBackOff" || st.LastTerminationState.Terminated == nil || st.LastTerminationState.Terminated.ExitCode != 1 {
			t.Errorf("crashing container: %+v", st)
		}
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("phase %s, want Running (restarting)", p.Status.Phase)
		}
		out, err := c.logs(ctx, "crash", &corev1.PodLogOptions{Previous: true})
		if err != nil || out != "run\n" {
			t.Errorf("logs --previous = %q, %v", out, err)
		}
		events, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=crash,reason=BackOff"})
		if err != nil || len(events.Items) == 0 {
			t.Errorf("no BackOff event: %v", err)
		}
		// The back-off grows: about 10 s before the first restart, 20 s
		// before the second (times in the status have second precision).
		if started[1].IsZero() || started[2].IsZero() || finished[0].IsZero() || finished[1].IsZero() {
			t.Fatalf("runs not all seen: started %v finished %v", started, finished)
		}
		d1, d2 := started[1].Sub(finished[0]), started[2].Sub(finished[1])
		if d1 < 9*time.Second || d1 > 13*time.Second || d2 < 19*time.Second || d2 > 23*time.Second {
			t.Errorf("back-off before restarts 1 and 2: %v, %v; want about 10 s, then 20 s; agent log:\n%s", d1, d2, c.agent.Log(300))
		}
	})

	t.Run("volumes", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hello from a configMap\n"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("s3cret\n")}})
		vols := []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
			{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptrTo(int64(3600))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
					Items: []corev1.KeyToPath{{Key: "greeting", Path: "cfg-greeting"}}}},
			}}}},
			{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		mounts := []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec"},
			{Name: "info", MountPath: "/info"}, {Name: "proj", MountPath: "/proj"}, {Name: "work", MountPath: "/work"}}
		init := corev1.Container{Name: "init", Image: c.busybox, Command: sh("echo written by init > /work/init.txt"), VolumeMounts: mounts}
		files := []string{"/work/init.txt", "/cfg/greeting", "/sec/password", "/info/name", "/proj/cfg-greeting"}
		want := "written by init\nhello from a configMap\ns3cret\nvols-%s" + "hello from a configMap\n"

		ctr := newPod("vols-container", corev1.RestartPolicyNever,
			corev1.Container{Name: "main", Image: c.busybox, VolumeMounts: mounts,
				Command: sh("cat " + strings.Join(files, " ") + " && test -s /proj/token")})
		ctr.Spec.InitContainers, ctr.Spec.Volumes = []corev1.Container{init}, vols
		// The same as a unikernel: the image's feather.backend label makes
		// it a VM; the init container stays a container.
		vm := newPod("vols-vm", corev1.RestartPolicyNever,
			corev1.Container{Name: "main", Image: c.unikernel, VolumeMounts: mounts, Args: append([]string{"/cat"}, files...)})
		vm.Spec.InitContainers, vm.Spec.Volumes = []corev1.Container{init}, vols
		c.create(ctx, t, ctr, vm)
		for _, name := range []string{"vols-container", "vols-vm"} {
			p := c.waitPod(t, name, 2*time.Minute, phase(corev1.PodSucceeded))
			if st := p.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 0 {
				t.Errorf("%s: init container %+v", name, st)
			}
			out, err := c.logs(ctx, name, &corev1.PodLogOptions{Container: "main"})
			w := fmt.Sprintf(want, strings.TrimPrefix(name, "vols-"))
			if err != nil || !strings.Contains(out, w) {
				t.Errorf("%s: logs %q (%v), want them to contain %q", name, out, err, w)
			}
		}
	})

	t.Run("mirror", func(t *testing.T) {
		t.Parallel()
		// A registry that does not exist, mirrored by the harness's one
		// through a containerd hosts.toml in the agent's config dir.
		reg, _, _ := strings.Cut(c.busybox, "/")
		dir := filepath.Join(registries, "mirror.feather.test")
		toml := fmt.Sprintf("server = \"https://mirror.feather.test\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", reg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		c.create(ctx, t, newPod("mirrored", corev1.RestartPolicyNever, corev1.Container{Name: "c",
			Image: "mirror.feather.test/feather/busybox:test", Command: sh("echo pulled through a mirror")}))
		c.waitPod(t, "mirrored", time.Minute, phase(corev1.PodSucceeded))
	})

	t.Run("logs", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t, newPod("talk", corev1.RestartPolicyAlways,
			corev1.Container{Name: "a", Image: c.busybox, Command: sh("for i in 1 2 3 4 5; do echo line $i; done; exec sleep 3600")},
			// stderr is logged too (its order against stdout is not kept:
			// two pipes, as with kubelet).
			corev1.Container{Name: "b", Image: c.busybox, Command: sh("echo I am b >&2; exec sleep 3600")}))
		c.waitPod(t, "talk", time.Minute, phase(corev1.PodRunning))
		get := func(opts *corev1.PodLogOptions, want string) {
			t.Helper()
			var last string
			waitFor(t, fmt.Sprintf("logs %+v", opts), 20*time.Second, func(ctx context.Context) (bool, error) {
				out, err := c.logs(ctx, "talk", opts)
				last = fmt.Sprintf("%q %v", out, err)
				return err == nil && out == want, nil
			}, &last)
		}
		get(&corev1.PodLogOptions{Container: "a"}, "line 1\nline 2\nline 3\nline 4\nline 5\n")
		get(&corev1.PodLogOptions{Container: "a", TailLines: ptrTo(int64(2))}, "line 4\nline 5\n")
		get(&corev1.PodLogOptions{Container: "b"}, "I am b\n")
		get(&corev1.PodLogOptions{Container: "a", SinceSeconds: ptrTo(int64(1)), TailLines: ptrTo(int64(1))}, "")
		out, err := c.logs(ctx, "talk", &corev1.PodLogOptions{Container: "b", Timestamps: true})
		ts, line, _ := strings.Cut(strings.TrimSuffix(out, "\n"), " ")
		if _, perr := time.Parse(time.RFC3339Nano, ts); err != nil || perr != nil || line != "I am b" {
			t.Errorf("--timestamps: %q (%v)", out, err)
		}
		// Kubelet's answer: 400 with the reason, which kubectl prints.
		// (Stream decodes the Status, as kubectl does.)
		if _, err := c.kube.CoreV1().Pods("default").GetLogs("talk", &corev1.PodLogOptions{Container: "b", Previous: true}).Stream(ctx); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `previous terminated container "b" in pod "talk" not found`) {
			t.Errorf("--previous without a previous run: %v", err)
		}
		// -f: the stream stays open while the container runs.
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
		defer fcancel()
		stream, err := c.kube.CoreV1().Pods("default").GetLogs("talk", &corev1.PodLogOptions{Container: "b", Follow: true}).Stream(fctx)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := stream.Read(buf)
		if string(buf[:n]) != "I am b\n" {
			t.Errorf("-f first read %q", buf[:n])
		}
		stream.Close()
	})

	t.Run("bad input", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t, newPod("noimage", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox + "-does-not-exist"}))
		seen := map[string]bool{}
		c.waitPod(t, "noimage", 90*time.Second, func(p *corev1.Pod) bool {
			if st := p.Status.ContainerStatuses; len(st) == 1 && st[0].State.Waiting != nil {
				seen[st[0].State.Waiting.Reason] = true
			}
			return seen["ErrImagePull"] && seen["ImagePullBackOff"]
		})

		// An unknown RuntimeClass is refused by the API server; a known one
		// whose handler this node does not have fails the container.
		p := newPod("norc", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox})
		p.Spec.RuntimeClassName = ptrTo("no-such-class")
		if _, err := c.kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "no-such-class") {
			t.Errorf("pod with an unknown RuntimeClass: %v", err)
		}
		c.create(ctx, t, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "wasm"}, Handler: "wasm"})
		p.Spec.RuntimeClassName = ptrTo("wasm")
		c.create(ctx, t, p)
		c.waitPod(t, "norc", time.Minute, func(p *corev1.Pod) bool {
			st := p.Status.ContainerStatuses
			return len(st) == 1 && st[0].State.Waiting != nil && st[0].State.Waiting.Reason == "CreateContainerConfigError" &&
				strings.Contains(st[0].State.Waiting.Message, `handler "wasm"`)
		})

		// A key path that would leave its volume is refused by the API server
		// (and by the agent's volumes package, see its tests).
		p = newPod("escape", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox})
		p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "greeting", Path: "../../x"}}}}}}
		if _, err := c.kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("pod with key path ../../x: %v", err)
		}

		// Two unikernels in one pod: the first owns the pod's network, the
		// second is refused with the reason.
		c.create(ctx, t, newPod("twovms", corev1.RestartPolicyAlways,
			corev1.Container{Name: "first", Image: c.unikernel, Args: []string{"/sleep", "600"}},
			corev1.Container{Name: "second", Image: c.unikernel, Args: []string{"/sleep", "600"}}))
		c.waitPod(t, "twovms", time.Minute, func(p *corev1.Pod) bool {
			st := p.Status.ContainerStatuses
			return len(st) == 2 && st[0].State.Running != nil && st[1].State.Waiting != nil &&
				st[1].State.Waiting.Reason == "CreateContainerConfigError" &&
				strings.Contains(st[1].State.Waiting.Message, "one unikernel per pod")
		})

		// More memory than the node has: bound to the node directly, as the
		// scheduler would not place it, and rejected like kubelet does.
		p = newPod("toobig", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("sleep 3600"),
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Ti")}}})
		p.Spec.NodeName = c.agent.Name
		c.create(ctx, t, p)
		got := c.waitPod(t, "toobig", time.Minute, phase(corev1.PodFailed))
		if got.Status.Reason != "OutOfmemory" || !strings.Contains(got.Status.Message, "Node didn't have enough resource: memory") {
			t.Errorf("toobig: reason %q message %q", got.Status.Reason, got.Status.Message)
		}
		// As kubelet shows it: no container statuses (kubectl's STATUS is
		// the reason), one event.
		if len(got.Status.ContainerStatuses) != 0 {
			t.Errorf("toobig: container statuses %+v", got.Status.ContainerStatuses)
		}
		count := func(ctx context.Context) int32 {
			evs, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=toobig,reason=OutOfmemory"})
			if err != nil {
				t.Fatal(err)
			}
			n := int32(0)
			for _, e := range evs.Items {
				n += max(e.Count, 1)
			}
			return n
		}
		waitFor(t, "OutOfmemory event", 30*time.Second, func(ctx context.Context) (bool, error) { return count(ctx) > 0, nil })
		// Updating the pod makes the agent sync it again: no second event.
		got.Labels["touched"] = "yes"
		if _, err := c.kube.CoreV1().Pods("default").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitPod(t, "toobig", 30*time.Second, func(p *corev1.Pod) bool { return p.Labels["touched"] == "yes" })
		c.waitEvent(t, "toobig", "OutOfmemory", "", 10*time.Second)
		n := count(ctx)
		if n != 1 {
			t.Errorf("toobig: %d OutOfmemory events, want 1", n)
		}
	})
}
