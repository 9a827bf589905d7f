package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/test/harness"
)

// The real OSv v0.57.0 of ../shared/osv: its programs (see its README) are
// the judges here, not the OSv-protocol test guest.

// hardValues are bytes OSv's command line treats specially — its loader's
// delimiters and escape, its command grammar's quotes, escapes and
// separators, its '$' expansion — and bytes it cannot parse at all.
var hardValues = []string{
	"two words", `"quoted"`, "it's", `back\slash`, `\\`, `\"`, `trail\`, `\n`, "a;b", "&", "&!", "!bang", "|pipe",
	"$HOME", "${X}", "a$b", "grüß 日本", "\ttab", "--env=X=1", "", "*?[]", "#hash", "%s", "\x01ctl", "=",
}

// realOSvEnv starts containerd with the shim and imports the real OSv
// images.
func realOSvEnv(t *testing.T) (*harness.Env, *harness.Containerd, map[string]string) {
	t.Helper()
	osvPrerequisites(t)
	dir := harness.RealOSv(t)
	env := harness.New(t)
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	disk, direct, err := harness.WriteRealOSvImages(ctx, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tarball := range []string{disk, direct} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", tarball); err != nil {
			t.Fatal(err)
		}
	}
	return env, ctrd, map[string]string{"disk": harness.RealOSvDiskRef, "direct": harness.RealOSvDirectRef}
}

// TestRealOSvCtr boots the real OSv under `ctr run`, in both boot modes:
// every byte of arguments and environment arrives, exit statuses are OSv's
// program's, the console shows the program's lines only, and atomic-writer
// volumes open by name.
func TestRealOSvCtr(t *testing.T) {
	env, ctrd, refs := realOSvEnv(t)
	vol := t.TempDir()
	atomicVolume(t, vol, map[string]string{"app.conf": "answer=42\n", "token": "t0k3n\n"})
	const secret = "s3cr3t-value-1b9f"
	for _, mode := range []string{"direct", "disk"} {
		ref := refs[mode]
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			id := func(s string) string { return "real-" + mode + "-" + s }

			// Every hard value, as an argument and as an environment value.
			args := []string{"--env", "SECRET=" + secret}
			for i, v := range hardValues {
				args = append(args, "--env", fmt.Sprintf("V%d=%s", i, v))
			}
			args = append(append(args, ref, id("args"), "/args"), hardValues...)
			out, code := ctrRun(ctx, t, ctrd, args...)
			if code != 3 {
				t.Errorf("/args returns 3 from main: exit code %d\n%s", code, out)
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				lines[l] = true
			}
			for i, v := range hardValues {
				if want := fmt.Sprintf("argv[%d]=%s", i+1, v); !lines[want] {
					t.Errorf("argument %d %q did not arrive: no line %q in\n%s", i+1, v, want, out)
				}
				if want := fmt.Sprintf("env V%d=%s", i, v); !lines[want] {
					t.Errorf("environment value %q did not arrive: no line %q", v, want)
				}
			}
			stdout, _, _ := strings.Cut(out, "ctr -n ")
			for _, osvLine := range []string{"Setting in environment", "Cmdline:", "OSv v0.57.0", "program /args returned", "Powering off"} {
				if strings.Contains(stdout, osvLine) {
					t.Errorf("OSv's own line %q reached the container's output:\n%s", osvLine, out)
				}
			}

			out, code = ctrRun(ctx, t, ctrd, "--env", "SECRET="+secret, ref, id("exit"), "/exitcall", "5")
			if stdout, _, _ := strings.Cut(out, "ctr -n "); code != 5 || strings.Contains(stdout, secret) {
				t.Errorf("/exitcall 5: exit code %d (want 5), secret in the output %v:\n%s", code, strings.Contains(stdout, secret), out)
			}
			out, code = ctrRun(ctx, t, ctrd, ref, id("missing"), "/nonexist")
			if code != 127 || !strings.Contains(out, "Failed to load object: /nonexist") {
				t.Errorf("a missing program: exit code %d (want 127) and the reason:\n%s", code, out)
			}
			out, code = ctrRun(ctx, t, ctrd, ref, id("crash"), "/crash")
			if code != 134 || !strings.Contains(out, "the program crashed") {
				t.Errorf("/crash: exit code %d (want 134) and the reason:\n%s", code, out)
			}

			// Atomic-writer volumes at directories the image lacks, one of
			// them where a pod's service-account token goes.
			const sa = "/var/run/secrets/kubernetes.io/serviceaccount"
			out, code = ctrRun(ctx, t, ctrd, "--mount", "type=bind,src="+vol+",dst=/config,options=rbind:ro",
				"--mount", "type=bind,src="+vol+",dst="+sa+",options=rbind:ro", ref, id("ls"), "/ls", "/config", sa)
			if code != 0 || strings.Count(out, "answer=42") != 2 || strings.Count(out, "t0k3n") != 2 || strings.Contains(out, "..data") {
				t.Errorf("/ls of atomic-writer volumes at /config and %s: exit %d:\n%s", sa, code, out)
			}
			// A mount point under a file of the image.
			out, code = ctrRun(ctx, t, ctrd, "--mount", "type=bind,src="+vol+",dst=/etc/feather-test.txt/x,options=rbind:ro", ref, id("under-file"), "/ls", "/")
			if code == 0 || !strings.Contains(out, "/etc/feather-test.txt is a file in the image") {
				t.Errorf("a mountPath under a file of the image: exit %d:\n%s", code, out)
			}
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log (the shim's lines):\n%s", tail(filepath.Join(ctrd.Dir, "containerd.log"), 80))
			for _, l := range strings.Split(readString(t, filepath.Join(ctrd.Dir, "containerd.log")), "\n") {
				if strings.Contains(l, "args") && (strings.Contains(l, "Cmdline") || strings.Contains(l, "vm created")) {
					t.Log(l)
				}
			}
		}
		if b, err := os.ReadFile(filepath.Join(ctrd.Dir, "containerd.log")); err == nil && strings.Contains(string(b), secret) {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, secret) {
					t.Logf("the line: %.400s", l)
					break
				}
			}
			t.Errorf("an environment value reached containerd's log (the shim's)")
		}
		assertNoLeaks(t, env)
	})
}

// TestRealOSvLimits finds each boot mode's command-line limit from the
// shim's error, then checks one byte over it fails and the limit itself
// boots.
func TestRealOSvLimits(t *testing.T) {
	env, ctrd, refs := realOSvEnv(t)
	over := regexp.MustCompile(`is (\d+) bytes, (\d+) over the limit of (\d+)`)
	for _, tc := range []struct {
		mode  string
		limit int
	}{{"direct", 3647}, {"disk", 32255}} {
		t.Run(tc.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ref := refs[tc.mode]
			out, code := ctrRun(ctx, t, ctrd, ref, "limit-probe-"+tc.mode, "/exitcall", strings.Repeat("7", tc.limit))
			m := over.FindStringSubmatch(out)
			if code == 0 || m == nil || m[3] != strconv.Itoa(tc.limit) {
				t.Fatalf("a command line over %d bytes: exit %d, output:\n%s", tc.limit, code, out)
			}
			excess, _ := strconv.Atoi(m[2])
			n := tc.limit - excess + 1 // one byte over
			out, code = ctrRun(ctx, t, ctrd, ref, "limit-over-"+tc.mode, "/exitcall", strings.Repeat("7", n))
			if code == 0 || !strings.Contains(out, "1 over the limit") {
				t.Errorf("one byte over the limit: exit %d:\n%s", code, out)
			}
			// At the limit: OSv gets it whole (exit(7…7) is 7…7 mod 256).
			arg := strings.Repeat("7", n-1)
			out, code = ctrRun(ctx, t, ctrd, ref, "limit-at-"+tc.mode, "/exitcall", arg)
			if code == 0 || strings.Contains(out, "over the limit") {
				t.Errorf("at the limit: exit %d:\n%s", code, out)
			}
		})
	}
	t.Run("bad arguments", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, code := ctrRun(ctx, t, ctrd, refs["direct"], "bad-newline", "/args", "a\nb")
		if code == 0 || !strings.Contains(out, "cannot carry a NUL or a line break") {
			t.Errorf("an argument with a newline: exit %d:\n%s", code, out)
		}
		// A NUL cannot be passed on ctr's command line; through the API it can.
		cctx := namespaces.WithNamespace(ctx, ns)
		cl := ctrd.Client()
		image, err := cl.GetImage(cctx, refs["direct"])
		if err != nil {
			t.Fatal(err)
		}
		c, err := cl.NewContainer(cctx, "bad-nul", client.WithImage(image), client.WithImageConfigLabels(image),
			client.WithNewSnapshot("bad-nul", image), client.WithRuntime(osvRuntime, nil),
			client.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("/args", "a\x00b")))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Delete(cctx, client.WithSnapshotCleanup)
		task, err := c.NewTask(cctx, cio.NullIO)
		if err == nil {
			task.Delete(cctx, client.WithProcessKill)
			t.Errorf("a task with a NUL in an argument was created")
		} else if !strings.Contains(err.Error(), "cannot carry a NUL or a line break") {
			t.Errorf("an argument with a NUL: %v", err)
		}
	})
	t.Run("a disk OSv cannot mount", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir := t.TempDir()
		blank := filepath.Join(dir, "blank.raw")
		if err := os.WriteFile(blank, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		const ref = "docker.io/feather/osv-noroot:test"
		p, err := pack.Pack(ctx, pack.Options{Disk: blank, Kernel: filepath.Join(harness.RealOSv(t), "loader-stripped.elf"), Cmd: "/args", TempDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		p.Name = ref
		tarball := filepath.Join(dir, "noroot.tar")
		err = image.WriteTarFile(ctx, tarball, p.Image)
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", tarball); err != nil {
			t.Fatal(err)
		}
		out, code := ctrRun(ctx, t, ctrd, ref, "noroot", "/args")
		if code != 127 || !strings.Contains(out, "OSv mounted no root file system") {
			t.Errorf("the OSv kernel with a disk it cannot mount: exit %d (want 127) and the reason:\n%s", code, out)
		}
	})
	t.Cleanup(func() { assertNoLeaks(t, env) })
}

// atomicVolume lays files out in dir as Kubernetes' atomic writer does for
// configMap, secret and projected volumes: "key -> ..data/key" and
// "..data -> ..TIMESTAMP".
func atomicVolume(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	ts := "..2026_12_02_00_00_00.000000001"
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestRealOSvPods runs the real OSv as pods on the agent, by RuntimeClass
// and by image label, in both boot modes: exit statuses and phases, the
// reason of a failure in its termination message, a Secret's value kept out
// of the logs, configMap and service-account volumes by name.
func TestRealOSvPods(t *testing.T) {
	dir := harness.RealOSv(t)
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	disk, direct, err := harness.WriteRealOSvImages(ctx, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := strings.SplitN(c.busybox, "/", 2)[0]
	diskRef, directRef := host+"/feather/osv-disk:"+harness.RealOSvVersion, host+"/feather/osv-direct:"+harness.RealOSvVersion
	for _, img := range []struct{ tarball, local, remote string }{{disk, harness.RealOSvDiskRef, diskRef}, {direct, harness.RealOSvDirectRef, directRef}} {
		if err := c.ctrd.Push(ctx, img.tarball, img.local, img.remote); err != nil {
			t.Fatal(err)
		}
	}
	const secret = "pod-s3cr3t-77aa"
	c.create(ctx, t,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: map[string]string{"password": secret}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"}, Data: map[string]string{"app.conf": "answer=42\n"}})
	osvPod := func(name, image string, byClass bool, args []string, mod ...func(*corev1.Pod)) *corev1.Pod {
		p := newPod(name, corev1.RestartPolicyNever, corev1.Container{Name: "main", Image: image, Args: args})
		if byClass {
			p.Spec.RuntimeClassName = ptrTo("osv")
		}
		for _, m := range mod {
			m(p)
		}
		return p
	}
	withSecret := func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}}}
	}
	withConfig := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "conf", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}})
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "conf", MountPath: "/config"}}
	}
	c.create(ctx, t,
		osvPod("exit5", diskRef, true, []string{"/exitcall", "5"}, withSecret),
		osvPod("args", directRef, false, append([]string{"/args"}, hardValues...)),
		osvPod("missing", directRef, true, []string{"/nonexist"}),
		osvPod("crash", diskRef, false, []string{"/crash"}),
		osvPod("config", directRef, true, []string{"/ls", "/config", "/var/run/secrets/kubernetes.io/serviceaccount"}, withConfig),
	)
	terminated := func(p *corev1.Pod) *corev1.ContainerStateTerminated {
		if len(p.Status.ContainerStatuses) == 0 {
			return nil
		}
		return p.Status.ContainerStatuses[0].State.Terminated
	}
	for _, tc := range []struct {
		pod     string
		phase   corev1.PodPhase
		code    int32
		message string
	}{
		{"exit5", corev1.PodFailed, 5, ""},
		{"args", corev1.PodFailed, 3, ""},
		{"missing", corev1.PodFailed, 127, "Failed to load object: /nonexist"},
		{"crash", corev1.PodFailed, 134, "the program crashed"},
		{"config", corev1.PodSucceeded, 0, ""},
	} {
		p := c.waitPod(t, tc.pod, 4*time.Minute, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		})
		term := terminated(p)
		if p.Status.Phase != tc.phase || term == nil || term.ExitCode != tc.code || !strings.Contains(term.Message, tc.message) {
			t.Errorf("pod %s: phase %s, terminated %+v; want %s, exit %d, message with %q", tc.pod, p.Status.Phase, term, tc.phase, tc.code, tc.message)
		}
	}
	logs := func(pod string) string {
		out, err := c.logs(ctx, pod, &corev1.PodLogOptions{})
		if err != nil {
			t.Errorf("kubectl logs %s: %v", pod, err)
		}
		return out
	}
	if out := logs("args"); !strings.Contains(out, "argv[1]=two words\n") || !strings.Contains(out, "argv[17]=grüß 日本\n") || strings.Contains(out, "Cmdline") {
		t.Errorf("kubectl logs args:\n%s", out)
	}
	if out := logs("config"); !strings.Contains(out, "answer=42") || !strings.Contains(out, "ca.crt") || !strings.Contains(out, "namespace") ||
		!strings.Contains(out, "token") || strings.Contains(out, "..data") {
		t.Errorf("kubectl logs config (a configMap at /config and the service-account token, by name):\n%s", out)
	}
	// Each ran on the feather snapshotter, from the instance disk it made.
	c.onSnapshotter(ctx, t, 5)
	for name, text := range map[string]string{"the agent's log": readString(t, c.agent.LogFile()),
		"containerd's log": readString(t, filepath.Join(c.ctrd.Dir, "containerd.log")), "kubectl logs": logs("exit5")} {
		if strings.Contains(text, secret) {
			t.Errorf("a Secret's value reached %s", name)
		}
	}
	deleteAll(ctx, t, c)
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
