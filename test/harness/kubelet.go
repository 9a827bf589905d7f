package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/feather-edge/feather/test/leak"
)

// Kubelet is an upstream kubelet (built by `make deps` with the control
// plane) registered as node Name of a harness control plane, running pods
// through a harness containerd's CRI plugin with the cgroupfs driver. It
// keeps to its own: its root, pod log and certificate directories are under
// Dir, its pods' cgroups under the cgroup root CgroupRoot, and Env.Close
// deletes its pods first, so that it tears them down, before it stops it and
// removes what a kubelet leaves behind.
type Kubelet struct {
	// Name is its node's name; Dir holds its config, state and log;
	// RootDir is its --root-dir, LogDir its pod log directory.
	Name, Dir, RootDir, LogDir string
	// CgroupRoot is the cgroup its pods' cgroups go under.
	CgroupRoot string
	// Port is its API port on the node IP.
	Port int

	proc          *Process
	kube          kubernetes.Interface
	ctrd          *Containerd
	sysctls       map[string]string
	devicePlugins *dirGuard
}

// The kernel parameters a kubelet sets (protectKernelDefaults: false), put
// back as they were when it stops.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// containerLogLinks is where a kubelet links each container's log.
const containerLogLinks = "/var/log/containers"

// StartKubelet starts a kubelet for node name ("" for a unique one) with
// the node identity system:node:NAME, node IP network's gateway, a serving
// certificate from the cluster CA, and ctrd (started with CRI and network)
// as its runtime, and returns once its Node is Ready. It fails t if not.
func (e *Env) StartKubelet(cp *ControlPlane, ctrd *Containerd, network *CNINetwork, name string) *Kubelet {
	e.t.Helper()
	bin := RequiresBin(e.t, "kubelet")
	if name == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		name = "cri-" + hex.EncodeToString(b)
	}
	k := &Kubelet{Name: name, Dir: filepath.Join(e.Dir, "kubelet-"+name), CgroupRoot: "/feather-" + name,
		ctrd: ctrd, kube: kubernetes.NewForConfigOrDie(cp.Admin)}
	k.RootDir, k.LogDir = filepath.Join(k.Dir, "root"), filepath.Join(k.Dir, "pod-logs")
	e.onClose(k.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := k.start(ctx, cp, network, bin); err != nil {
		e.t.Fatalf("harness: kubelet: %v", err)
	}
	return k
}

func (k *Kubelet) start(ctx context.Context, cp *ControlPlane, network *CNINetwork, bin string) error {
	k.devicePlugins = guardDir(devicePluginDir)
	for _, d := range []string{k.RootDir, k.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	nodeIP := network.Gateway.String()
	crt, key, err := cp.ca.issue(certRequest{cn: "system:node:" + k.Name, orgs: []string{"system:nodes"},
		hosts: []string{nodeIP, "127.0.0.1", "localhost", k.Name}})
	if err != nil {
		return err
	}
	crtPath, keyPath, caPath := filepath.Join(k.Dir, "kubelet.crt"), filepath.Join(k.Dir, "kubelet.key"), filepath.Join(k.Dir, "ca.crt")
	if err := writeFiles(map[string][]byte{crtPath: crt, keyPath: key, caPath: cp.ca.certPEM}); err != nil {
		return err
	}
	kubeconfig, err := cp.NodeKubeconfig(k.Name)
	if err != nil {
		return err
	}
	// The cgroup root must exist in every hierarchy before the kubelet
	// starts; it makes kubepods/… below it.
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupRoot, "*"))
	for _, h := range hierarchies {
		if err := os.Mkdir(filepath.Join(h, k.CgroupRoot), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup root: %w", err)
		}
	}
	k.sysctls = map[string]string{}
	for _, s := range kubeletSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", s)); err == nil {
			k.sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	k.Port = ports[0]
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: %[7]s
cgroupDriver: cgroupfs
cgroupRoot: %[8]s
failCgroupV1: false
failSwapOn: false
podLogsDir: %[9]s
# A busy shared test machine: never evict, never collect images.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
serializeImagePulls: false
`, nodeIP, k.Port, ports[1], crtPath, keyPath, caPath, k.ctrd.Socket(), k.CgroupRoot, k.LogDir)
	cfgPath := filepath.Join(k.Dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return err
	}
	k.proc, err = startProcess("kubelet", filepath.Join(k.Dir, "kubelet.log"), nil, bin,
		"--config="+cfgPath, "--kubeconfig="+kubeconfig, "--root-dir="+k.RootDir, "--cert-dir="+filepath.Join(k.Dir, "pki"),
		"--hostname-override="+k.Name, "--node-ip="+nodeIP, "--v=2")
	if err != nil {
		return err
	}
	health := httpOK(&http.Client{Timeout: time.Second}, "http://"+hostPort(ports[1])+"/healthz")
	return k.proc.waitReady(ctx, func(ctx context.Context) error {
		if err := health(ctx); err != nil {
			return err
		}
		n, err := k.kube.CoreV1().Nodes().Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready", k.Name)
	})
}

// Log returns the last n lines of the kubelet's log.
func (k *Kubelet) Log(n int) string { return k.proc.Tail(n) }

// Pid is the kubelet's process ID.
func (k *Kubelet) Pid() int { return k.proc.Pid() }

// drainTimeout bounds how long stop waits for the kubelet to tear its pods
// down.
const drainTimeout = 2 * time.Minute

// stop drains the node — deletes its pods and waits until the kubelet has
// torn them down and unmounted their volumes; sandboxes left then are
// removed through CRI — then stops the kubelet and removes what it leaves:
// the bind mount it makes of its root directory, its cgroup root, its log
// links, and its changes to kernel parameters.
func (k *Kubelet) stop() error {
	if k.proc == nil {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := k.drain(ctx); err != nil {
		errs = append(errs, fmt.Errorf("kubelet %s: drain: %w", k.Name, err))
	}
	// The kubelet stops a deleted pod's sandbox at once but removes it only
	// in its next garbage collection (a minute later): remove those here.
	// One still ready is a leak.
	if out, err := k.ctrd.Crictl(ctx, "pods", "--state", "ready", "-q"); err == nil && strings.TrimSpace(out) != "" {
		errs = append(errs, fmt.Errorf("kubelet %s: pod sandboxes still ready after the drain, removed: %s", k.Name, strings.Fields(out)))
	}
	if _, err := k.ctrd.Crictl(ctx, "rmp", "--all", "--force"); err != nil {
		errs = append(errs, fmt.Errorf("kubelet %s: remove pod sandboxes: %w", k.Name, err))
	}
	k.proc.Stop(10 * time.Second)

	mounts, _ := leak.Mounts(k.RootDir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if leak.Under(mounts[i], filepath.Join(k.RootDir, "pods")) {
			errs = append(errs, fmt.Errorf("kubelet %s: volume mount %s left, unmounted", k.Name, mounts[i]))
		}
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	// Its pods' cgroups are empty by now, or soon (a killed process
	// leaves its cgroup asynchronously).
	cgroups, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", k.CgroupRoot))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, cg := range cgroups {
			removeCgroup(cg)
		}
		left, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", k.CgroupRoot))
		if len(left) == 0 || time.Now().After(deadline) {
			if len(left) > 0 {
				errs = append(errs, fmt.Errorf("kubelet %s: cgroups left: %v", k.Name, left))
			}
			break
		}
	}
	for s, v := range k.sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", s), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("kubelet %s: restore %s: %w", k.Name, s, err))
		}
	}
	links, _ := filepath.Glob(filepath.Join(containerLogLinks, "*"))
	for _, l := range links {
		if dst, err := os.Readlink(l); err == nil && leak.Under(dst, k.Dir) {
			_ = os.Remove(l)
		}
	}
	_ = syscall.Rmdir(containerLogLinks) // only if empty: others' links stay
	if err := k.devicePlugins.restore(); err != nil {
		errs = append(errs, fmt.Errorf("kubelet %s: %w", k.Name, err))
	}
	return errors.Join(errs...)
}

// devicePluginDir is where the kubelet's device manager puts its socket and
// checkpoint whatever its --root-dir (pluginapi.DevicePluginPath, a constant
// of the kubelet).
const devicePluginDir = "/var/lib/kubelet/device-plugins"

// dirGuard remembers what a directory outside the harness's tree held, so
// that what a component adds to it can be removed again.
type dirGuard struct {
	dir     string
	had     map[string]bool // entries that were there
	created []string        // dir and the ancestors that did not exist, innermost first
}

// guardDir records dir's entries, and which of dir and its parents are
// missing now.
func guardDir(dir string) *dirGuard {
	g := &dirGuard{dir: dir, had: map[string]bool{}}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		g.created = append(g.created, d)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		g.had[e.Name()] = true
	}
	return g
}

// restore removes the entries dir did not hold before, then the directories
// that did not exist (if nothing else is in them by now).
func (g *dirGuard) restore() error {
	if g == nil {
		return nil
	}
	var errs []error
	entries, _ := os.ReadDir(g.dir)
	for _, e := range entries {
		if !g.had[e.Name()] {
			if err := os.RemoveAll(filepath.Join(g.dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, d := range g.created {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// drain deletes the pods bound to the node and waits until the API has
// none left and the kubelet has removed their directories (which it does
// once their volumes are unmounted).
func (k *Kubelet) drain(ctx context.Context) error {
	sel := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", k.Name).String()}
	list, err := k.kube.CoreV1().Pods("").List(ctx, sel)
	if err != nil {
		return err
	}
	for _, p := range list.Items {
		_ = k.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	for {
		list, err := k.kube.CoreV1().Pods("").List(ctx, sel)
		dirs, _ := os.ReadDir(filepath.Join(k.RootDir, "pods"))
		if err == nil && len(list.Items) == 0 && len(dirs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var left []string
			if err == nil {
				for _, p := range list.Items {
					left = append(left, p.Namespace+"/"+p.Name)
				}
			}
			return fmt.Errorf("%w: pods %v, pod directories %d left; kubelet log:\n%s", ctx.Err(), left, len(dirs), k.proc.Tail(20))
		case <-time.After(500 * time.Millisecond):
		}
	}
}
