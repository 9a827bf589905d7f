package pods

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// Back-off of a pod whose attachment to the pod network failed; a network
// that is not ready is looked at again every netNotReadyRetry.
const (
	netBackoffBase   = 2 * time.Second
	netBackoffMax    = 2 * time.Minute
	netNotReadyRetry = 5 * time.Second
)

// The reasons a pod's containers wait with while it has no network.
const (
	reasonNetworkNotReady = "NetworkNotReady"
	reasonSandbox         = "CreatePodSandboxError"
)

// attach gives the pod its addresses on the pod network (once; hostNetwork
// pods and a provider without Network have nothing to do). It returns when
// to look again while the pod cannot be attached, else 0.
func (w *worker) attach(ctx context.Context, pod *corev1.Pod) time.Duration {
	if pod.Spec.HostNetwork || w.p.cfg.Network == nil {
		w.attached = true
		return 0
	}
	if ph := pod.Status.Phase; ph == corev1.PodSucceeded || ph == corev1.PodFailed {
		// Ended before an agent restart, and detached then: keep the IPs
		// its status shows, attach nothing.
		w.mu.Lock()
		w.attached, w.released = true, true
		for _, ip := range pod.Status.PodIPs {
			w.podIPs = append(w.podIPs, ip.IP)
		}
		w.mu.Unlock()
		return 0
	}
	if wait := time.Until(w.netRetry); wait > 0 {
		return wait
	}
	ips, err := w.p.cfg.Network.Setup(ctx, pod, w.netns)
	if err != nil {
		if errdefs.IsFailedPrecondition(err) {
			// kubelet's words: the pod waits, the node says why.
			msg := "network is not ready: " + err.Error()
			if w.setWaiting(pod, "", reasonNetworkNotReady, msg) {
				w.p.events.Event(pod, corev1.EventTypeWarning, reasonNetworkNotReady, msg)
			}
			w.netRetry = time.Now().Add(netNotReadyRetry)
			return netNotReadyRetry
		}
		w.netDelay = min(max(w.netDelay*2, netBackoffBase), netBackoffMax)
		w.netRetry = time.Now().Add(w.netDelay)
		msg := fmt.Sprintf("Failed to create pod sandbox: failed to set up network for pod %s: %v", w.key(), err)
		if w.setWaiting(pod, "", reasonSandbox, msg) {
			w.p.events.Event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", msg)
		}
		w.log.WithError(err).Warn("attach pod to the pod network")
		return w.netDelay
	}
	w.mu.Lock()
	w.attached, w.podIPs, w.netDelay, w.netRetry = true, ips, 0, time.Time{}
	for name, x := range w.waiting {
		if x.Reason == reasonNetworkNotReady || x.Reason == reasonSandbox {
			delete(w.waiting, name)
		}
	}
	w.mu.Unlock()
	w.log.WithField("ips", ips).Debug("attached to the pod network")
	return 0
}

// ips returns the pod's addresses on the pod network.
func (w *worker) ips() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.podIPs
}

// detach releases the pod's addresses before its network namespace goes.
// It reports whether the namespace may be removed: a pod that could not be
// detached keeps it, so that the next start of the agent detaches it fully
// (Provider.collect).
func (w *worker) detach(ctx context.Context) bool {
	if w.p.cfg.Network == nil {
		return true
	}
	netns := w.netns
	if netns == "" {
		netns = w.p.net.Path(string(w.uid))
	}
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(time.Duration(try) * time.Second)
		}
		if err = w.p.cfg.Network.Teardown(ctx, w.uid, netns); err == nil {
			return true
		}
	}
	w.log.WithError(err).Warn("detach pod from the pod network: keeping its network namespace until the agent restarts")
	return false
}

// releaseIfDone detaches a pod that has ended for good (Succeeded or
// Failed) from the pod network, as kubelet stops an ended pod's sandbox: its
// address goes back to the pool while the pod object stays. Its status keeps
// the IP.
func (w *worker) releaseIfDone(ctx context.Context) {
	w.mu.Lock()
	done := w.status != nil && (w.status.Phase == corev1.PodSucceeded || w.status.Phase == corev1.PodFailed)
	w.mu.Unlock()
	if !done || !w.attached || w.released || w.p.cfg.Network == nil || w.netns == "" {
		return
	}
	if w.detach(ctx) {
		w.released = true
		w.log.Debug("pod ended: detached from the pod network")
	}
}

// resolvPath is where the pod's resolv.conf is kept: beside its volumes, as
// kubelet keeps /var/lib/kubelet/pods/<uid>/etc-hosts.
func (w *worker) resolvPath() string {
	return filepath.Join(w.p.cfg.StateDir, "pods", string(w.uid), "resolv.conf")
}

// writeResolv writes the pod's resolv.conf from its dnsPolicy and dnsConfig.
func (w *worker) writeResolv(pod *corev1.Pod) error {
	r, warning, err := w.p.cfg.DNS.ForPod(pod)
	if err != nil {
		return err
	}
	if warning != "" {
		w.p.events.Event(pod, corev1.EventTypeWarning, "DNSConfigForming", warning)
	}
	path := w.resolvPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pod resolv.conf: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, r.Bytes(), 0o644); err != nil {
		return fmt.Errorf("pod resolv.conf: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pod resolv.conf: %w", err)
	}
	w.resolv = path
	return nil
}

// resolvMount bind-mounts the pod's resolv.conf at /etc/resolv.conf,
// read-only; the OSv shim turns it into the VM's --nameserver.
func (w *worker) resolvMount() []specs.Mount {
	if w.resolv == "" {
		return nil
	}
	return []specs.Mount{{Destination: "/etc/resolv.conf", Type: "bind", Source: w.resolv, Options: []string{"rbind", "ro"}}}
}
