package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
	"github.com/feather-edge/feather/vmimage"
)

// criNode is an upstream kubelet on containerd's CRI plugin with runtime
// handler osv → io.containerd.osv.v1, a pod network of its own, and a
// registry holding the test images — no Feather agent.
type criNode struct {
	*cluster
	kubelet *harness.Kubelet
	network *harness.CNINetwork
	broken  string // a VM image whose disk does not boot
}

func newCRINode(t *testing.T) *criNode {
	t.Helper()
	osvPrerequisites(t)
	harness.RequiresBin(t, "kubelet")
	harness.RequiresBin(t, "crictl")
	env := harness.New(t)
	cp := env.StartControlPlane()
	reg := env.StartRegistry()
	network := env.CNINetwork()
	hosts, err := harness.PlainHTTPHosts(filepath.Join(env.Dir, "registries"), reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	pause := reg.Host + "/feather/pause:test"
	// The osv runtime's containers on Feather's snapshotter, as on a node
	// configured as snapshotter/README.md says.
	ctrd := env.StartContainerd(harness.ContainerdOptions{CRI: &harness.CRIOptions{
		Runtimes: map[string]string{"osv": osvRuntime}, Network: network, SandboxImage: pause, RegistryConfigDir: hosts},
		Snapshotter: env.StartSnapshotter()})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := &criNode{cluster: &cluster{env: env, ctrd: ctrd, kube: kubernetes.NewForConfigOrDie(cp.Admin),
		busybox: reg.Host + "/feather/busybox:test", unikernel: reg.Host + "/feather/testguest-direct:test"},
		network: network, broken: reg.Host + "/feather/broken:test"}
	dir := t.TempDir()
	images := []struct{ tarball, local, remote string }{
		{filepath.Join(dir, "pause.tar"), "docker.io/feather/pause:test", pause},
		{filepath.Join(dir, "busybox.tar"), "docker.io/feather/busybox:test", n.busybox},
		{guestImage(t, "testguest-direct"), directRef, n.unikernel},
		{filepath.Join(dir, "broken.tar"), "docker.io/feather/broken:test", n.broken},
	}
	if err := harness.WritePauseImage(images[0].tarball, images[0].local); err != nil {
		t.Fatal(err)
	}
	if err := harness.WriteBusyboxImage(images[1].tarball, images[1].local); err != nil {
		t.Fatal(err)
	}
	// A raw disk of garbage: SeaBIOS finds nothing to boot.
	if err := writeVMImage(images[3].tarball, images[3].local, vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels(),
		[]byte(strings.Repeat("\xab", 1<<20))); err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		if err := ctrd.Push(ctx, img.tarball, img.local, img.remote); err != nil {
			t.Fatal(err)
		}
	}
	n.kubelet = env.StartKubelet(cp, ctrd, network, "")
	for name, handler := range map[string]string{"osv": "osv", "nope": "nope"} {
		n.create(ctx, t, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet log:\n%s", n.kubelet.Log(40))
			t.Logf("containerd log:\n%s", tail(filepath.Join(ctrd.Dir, "containerd.log"), 60))
		}
	})
	return n
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// criPod is a pod with RuntimeClass runtimeClass (none if "").
func criPod(name, runtimeClass string, policy corev1.RestartPolicy, c corev1.Container) *corev1.Pod {
	p := newPod(name, policy, c)
	if runtimeClass != "" {
		p.Spec.RuntimeClassName = &runtimeClass
	}
	return p
}

// crictl runs crictl against the node's containerd and decodes its JSON
// output into v.
func (n *criNode) crictl(ctx context.Context, t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := n.ctrd.Crictl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("crictl %s: %v:\n%s", strings.Join(args, " "), err, out)
	}
}

// TestCRI runs pods on a stock kubelet through containerd's CRI plugin with
// RuntimeClass osv, as on a node that never saw the Feather agent: a
// unikernel on Feather's snapshotter (logs, pod IP, crictl, clean teardown), a plain container
// delegated to runc, an unknown handler and a VM that cannot boot.
func TestCRI(t *testing.T) {
	n := newCRINode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	t.Run("runc", func(t *testing.T) {
		// The node itself: a pod of the default handler.
		n.create(ctx, t, criPod("runc", "", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: n.busybox,
			Command: sh("echo hello; exec sleep 3600")}))
		n.waitPod(t, "runc", 2*time.Minute, phase(corev1.PodRunning))
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "runc", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unikernel", func(t *testing.T) {
		netnsBefore, _ := filepath.Glob("/var/run/netns/cni-*")
		linksBefore, err := leak.Links()
		if err != nil {
			t.Fatal(err)
		}
		n.create(ctx, t, criPod("uk", "osv", corev1.RestartPolicyAlways,
			corev1.Container{Name: "uk", Image: n.unikernel, Args: []string{"/httpd", "8080"}}))
		p := n.waitPod(t, "uk", 3*time.Minute, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
		})
		var last string
		waitFor(t, "kubectl logs uk", time.Minute, func(ctx context.Context) (bool, error) {
			out, err := n.logs(ctx, "uk", &corev1.PodLogOptions{})
			last = fmt.Sprintf("%q, %v", out, err)
			return err == nil && strings.Contains(out, "listening on :8080\n"), nil
		}, &last)
		if !n.network.Subnet.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("pod IP %s is not in the pod network %s", p.Status.PodIP, n.network.Subnet)
		}
		waitFor(t, "HTTP on the pod IP", time.Minute, func(ctx context.Context) (bool, error) {
			body, err := criGet(ctx, "http://"+p.Status.PodIP+":8080/")
			last = fmt.Sprintf("%q, %v", body, err)
			return err == nil && body == "hello from feather guest\n", nil
		}, &last)
		// What the pod's shim daemon costs under a stock kubelet (it runs
		// the pod's one VM and hands its sandbox to a runc shim).
		for _, m := range memOfAll(t, "containerd-shim-osv-v1", n.ctrd.Dir) {
			t.Logf("shim-osv of the pod: RSS %.1f MiB, PSS %.1f MiB, anon %.1f MiB (binary %.1f MiB)",
				float64(m.RSS)/1024, float64(m.PSS)/1024, float64(m.Anon)/1024, float64(m.Exe)/1024)
		}

		// crictl sees the VM as the pod's container, with its cgroup's stats.
		var ps struct {
			Containers []struct {
				ID       string `json:"id"`
				State    string `json:"state"`
				Metadata struct{ Name string }
			} `json:"containers"`
		}
		n.crictl(ctx, t, &ps, "ps", "--name", "^uk$", "-o", "json")
		if len(ps.Containers) != 1 || ps.Containers[0].State != "CONTAINER_RUNNING" {
			t.Fatalf("crictl ps: %+v", ps)
		}
		id := ps.Containers[0].ID
		var inspect struct {
			Status struct {
				State string `json:"state"`
				Image struct{ Image string }
			} `json:"status"`
			Info struct {
				RuntimeType string `json:"runtimeType"`
				Pid         int    `json:"pid"`
				Snapshotter string `json:"snapshotter"`
			} `json:"info"`
		}
		n.crictl(ctx, t, &inspect, "inspect", id)
		if inspect.Status.State != "CONTAINER_RUNNING" || inspect.Info.RuntimeType != osvRuntime || inspect.Info.Pid == 0 || inspect.Info.Snapshotter != harness.SnapshotterName {
			t.Errorf("crictl inspect: %+v", inspect)
		} else if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", inspect.Info.Pid)); filepath.Base(exe) != "qemu-system-x86_64" {
			t.Errorf("the container's pid %d is %s, not QEMU", inspect.Info.Pid, exe)
		}
		var stats struct {
			Stats []struct {
				Memory struct {
					WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
				} `json:"memory"`
				CPU struct {
					UsageCoreNanoSeconds struct{ Value string } `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
			} `json:"stats"`
		}
		n.crictl(ctx, t, &stats, "stats", "-o", "json", "--id", id)
		if len(stats.Stats) != 1 || stats.Stats[0].Memory.WorkingSetBytes.Value == "" || stats.Stats[0].Memory.WorkingSetBytes.Value == "0" ||
			stats.Stats[0].CPU.UsageCoreNanoSeconds.Value == "" {
			t.Errorf("crictl stats: %+v", stats)
		}

		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "uk", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod uk gone, its VM with it", 2*time.Minute, func(ctx context.Context) (bool, error) {
			_, err := n.kube.CoreV1().Pods("default").Get(ctx, "uk", metav1.GetOptions{})
			procs, _ := leak.Processes(n.env.Dir)
			var vms []string
			for _, p := range procs {
				if strings.Contains(p.Cmdline, "qemu-system") || strings.Contains(p.Cmdline, "virtiofsd") {
					vms = append(vms, p.Cmdline)
				}
			}
			last = fmt.Sprintf("get: %v; VM processes %v", err, vms)
			return err != nil && len(vms) == 0, nil
		}, &last)
		waitFor(t, "no mount, tap or network namespace of the pod", time.Minute, func(ctx context.Context) (bool, error) {
			mounts, _ := leak.Mounts(filepath.Join(n.ctrd.Dir))
			podMounts, _ := leak.Mounts(filepath.Join(n.kubelet.RootDir, "pods"))
			var netns []string // the pod's, made after netnsBefore
			all, _ := filepath.Glob("/var/run/netns/cni-*")
			for _, ns := range all {
				if !slices.Contains(netnsBefore, ns) {
					netns = append(netns, ns)
				}
			}
			links, _ := leak.NewLinks(linksBefore)
			var taps []string
			for _, l := range links {
				if strings.HasPrefix(l, "tap") {
					taps = append(taps, l)
				}
			}
			last = fmt.Sprintf("mounts %v %v, network namespaces %v, taps %v", mounts, podMounts, netns, taps)
			return len(mounts) == 0 && len(podMounts) == 0 && len(netns) == 0 && len(taps) == 0, nil
		}, &last)
	})

	t.Run("container", func(t *testing.T) {
		n.create(ctx, t, criPod("plain", "osv", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: n.busybox,
			Command: sh("echo hello from runc; exec sleep 3600")}))
		n.waitPod(t, "plain", 2*time.Minute, phase(corev1.PodRunning))
		var last string
		waitFor(t, "kubectl logs plain", time.Minute, func(ctx context.Context) (bool, error) {
			out, err := n.logs(ctx, "plain", &corev1.PodLogOptions{})
			last = fmt.Sprintf("%q, %v", out, err)
			return err == nil && out == "hello from runc\n", nil
		}, &last)
		var ps struct {
			Containers []struct{ ID string } `json:"containers"`
		}
		n.crictl(ctx, t, &ps, "ps", "--name", "^c$", "-o", "json")
		if len(ps.Containers) != 1 {
			t.Fatalf("crictl ps: %+v", ps)
		}
		// Exec reaches the runc shim through this shim.
		if out, err := n.ctrd.Crictl(ctx, "exec", ps.Containers[0].ID, "echo", "exec works"); err != nil || out != "exec works\n" {
			t.Errorf("crictl exec: %q, %v", out, err)
		}
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "plain", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("shim killed", func(t *testing.T) {
		// The pod's shim dies: containerd runs `containerd-shim-osv-v1
		// delete` for its containers, which removes them through the runc
		// shim, which then exits; the kubelet starts the pod anew.
		n.create(ctx, t, criPod("crash", "osv", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: n.busybox,
			Command: sh("exec sleep 3600")}))
		n.waitPod(t, "crash", 2*time.Minute, phase(corev1.PodRunning))
		var pods struct {
			Items []struct{ ID string } `json:"items"`
		}
		n.crictl(ctx, t, &pods, "pods", "--name", "^crash$", "--state", "ready", "-o", "json")
		if len(pods.Items) != 1 {
			t.Fatalf("crictl pods: %+v", pods)
		}
		sandbox := pods.Items[0].ID
		shims := func(name string) []leak.Proc {
			ps, _ := leak.Named(name)
			var out []leak.Proc
			for _, p := range ps {
				if strings.Contains(p.Cmdline, sandbox) {
					out = append(out, p)
				}
			}
			return out
		}
		osvShim, runcShim := shims("containerd-shim-osv-v1"), shims("containerd-shim-runc-v2")
		if len(osvShim) != 1 || len(runcShim) != 1 {
			t.Fatalf("shims of sandbox %s: %v, %v; want one of each", sandbox, osvShim, runcShim)
		}
		if err := syscall.Kill(osvShim[0].Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var last string
		waitFor(t, "the runc shim gone with its containers", time.Minute, func(ctx context.Context) (bool, error) {
			left := shims("containerd-shim-runc-v2")
			last = fmt.Sprint(left)
			return len(left) == 0, nil
		}, &last)
		waitFor(t, "pod crash running again in a new sandbox", 2*time.Minute, func(ctx context.Context) (bool, error) {
			var now struct {
				Items []struct{ ID string } `json:"items"`
			}
			n.crictl(ctx, t, &now, "pods", "--name", "^crash$", "--state", "ready", "-o", "json")
			p := n.pod(ctx, t, "crash")
			last = fmt.Sprintf("sandboxes %+v, phase %s", now.Items, p.Status.Phase)
			return len(now.Items) == 1 && now.Items[0].ID != sandbox && p.Status.Phase == corev1.PodRunning, nil
		}, &last)
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "crash", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("mixed", func(t *testing.T) {
		// A VM and a container in one pod: one shim for the pod, the
		// sidecar (and the sandbox) through runc.
		p := criPod("mixed", "osv", corev1.RestartPolicyAlways, corev1.Container{Name: "vm", Image: n.unikernel, Args: []string{"/hello"}})
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: n.busybox, Command: sh("echo hello from the sidecar")})
		n.create(ctx, t, p)
		got := n.waitPod(t, "mixed", 2*time.Minute, phase(corev1.PodSucceeded))
		for _, st := range got.Status.ContainerStatuses {
			if st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
				t.Errorf("%s: %+v", st.Name, st.State)
			}
		}
		for c, want := range map[string]string{"vm": "hello from feather guest\n", "sidecar": "hello from the sidecar\n"} {
			out, err := n.logs(ctx, "mixed", &corev1.PodLogOptions{Container: c})
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("kubectl logs mixed -c %s: %q, %v; want %q in it", c, out, err, want)
			}
		}
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "mixed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unknown handler", func(t *testing.T) {
		n.create(ctx, t, criPod("nope", "nope", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: n.busybox}))
		var last string
		waitFor(t, "FailedCreatePodSandBox", 2*time.Minute, func(ctx context.Context) (bool, error) {
			ev, err := n.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=nope,reason=FailedCreatePodSandBox"})
			if err != nil || len(ev.Items) == 0 {
				last = fmt.Sprint(err)
				return false, nil
			}
			last = ev.Items[0].Message
			return strings.Contains(last, `no runtime for "nope" is configured`), nil
		}, &last)
		if p := n.pod(ctx, t, "nope"); p.Status.Phase != corev1.PodPending {
			t.Errorf("pod with an unknown handler: phase %s", p.Status.Phase)
		}
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "nope", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("broken disk", func(t *testing.T) {
		n.create(ctx, t, criPod("broken", "osv", corev1.RestartPolicyNever, corev1.Container{Name: "vm", Image: n.broken}))
		p := n.waitPod(t, "broken", 3*time.Minute, phase(corev1.PodFailed))
		st := p.Status.ContainerStatuses[0].State.Terminated
		// The test guest prints nothing before its init runs (the disk does
		// not boot), so the message ends in the firmware's last lines.
		if st == nil || st.ExitCode == 0 || !strings.Contains(st.Message, "did not power off cleanly") || !strings.Contains(st.Message, "No bootable device") {
			t.Errorf("terminated state: %+v", st)
		} else {
			t.Logf("termination message: %s", st.Message)
		}
		if err := n.kube.CoreV1().Pods("default").Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("real osv", func(t *testing.T) {
		// The real OSv v0.57.0, both boot modes, under a stock kubelet.
		dir := harness.RealOSv(t)
		disk, direct, err := harness.WriteRealOSvImages(ctx, dir, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		host := strings.SplitN(n.busybox, "/", 2)[0]
		refs := map[string]string{"disk": host + "/feather/osv-disk:" + harness.RealOSvVersion, "direct": host + "/feather/osv-direct:" + harness.RealOSvVersion}
		for _, img := range []struct{ tarball, local, remote string }{
			{disk, harness.RealOSvDiskRef, refs["disk"]}, {direct, harness.RealOSvDirectRef, refs["direct"]}} {
			if err := n.ctrd.Push(ctx, img.tarball, img.local, img.remote); err != nil {
				t.Fatal(err)
			}
		}
		n.create(ctx, t,
			criPod("osv-httpd", "osv", corev1.RestartPolicyAlways, corev1.Container{Name: "httpd", Image: refs["disk"], Args: []string{"/httpd", "8080"}}),
			criPod("osv-exit", "osv", corev1.RestartPolicyNever, corev1.Container{Name: "exit", Image: refs["direct"], Args: []string{"/exitcall", "5"}}))
		p := n.waitPod(t, "osv-httpd", 3*time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" })
		var last string
		waitFor(t, "HTTP from the real OSv on the pod IP", 2*time.Minute, func(ctx context.Context) (bool, error) {
			body, err := criGet(ctx, "http://"+p.Status.PodIP+":8080/")
			last = fmt.Sprintf("%q, %v", body, err)
			return err == nil && strings.Contains(body, "hello from osv"), nil
		}, &last)
		out, err := n.logs(ctx, "osv-httpd", &corev1.PodLogOptions{})
		if err != nil || !strings.Contains(out, "httpd: listening on :8080") || strings.Contains(out, "Cmdline") || strings.Contains(out, "OSv v0.57.0") {
			t.Errorf("kubectl logs osv-httpd (the program's lines only): %q, %v", out, err)
		}
		ex := n.waitPod(t, "osv-exit", 3*time.Minute, phase(corev1.PodFailed))
		if st := ex.Status.ContainerStatuses[0].State.Terminated; st == nil || st.ExitCode != 5 {
			t.Errorf("exit(5) under CRI: %+v", ex.Status.ContainerStatuses[0].State)
		}
		for _, name := range []string{"osv-httpd", "osv-exit"} {
			if err := n.kube.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the real OSv pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
			l, err := n.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			return err == nil && !slices.ContainsFunc(l.Items, func(p corev1.Pod) bool { return strings.HasPrefix(p.Name, "osv-") }), nil
		})
	})
}

// criGet returns the body of a GET of url, never through a proxy.
func criGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
