package pods

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestPublish checks which statuses a worker publishes: virtual-kubelet keys
// pods by namespace/name and writes a status onto the API's pod of that name
// (the final one, Finalize writes). None but the final one once the pod is
// being deleted, none at all for a pod gone from the API or whose name a new
// pod has, and the final one with a terminal phase, never Running.
func TestPublish(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	running := []instance{{ID: "a", Name: "a", Running: true, StartedAt: t0}}
	killed := []instance{{ID: "a", Name: "a", Exited: true, ExitCode: 137, StartedAt: t0, FinishedAt: t0.Add(time.Second)}}
	const uid, other = types.UID("0123456789"), types.UID("9876543210")
	for _, tc := range []struct {
		name        string
		terminating bool
		final       bool
		apiUID      types.UID // "" the API has no pod of that name
		insts       []instance
		want        corev1.PodPhase // "" for nothing published
	}{
		{name: "running", apiUID: uid, insts: running, want: corev1.PodRunning},
		{name: "running, deletion begun during the sync", terminating: true, apiUID: uid, insts: running},
		{name: "running, pod gone from the API", apiUID: "", insts: running},
		{name: "running, name taken by a new pod", apiUID: other, insts: running},
		{name: "final, pod deleting", terminating: true, final: true, apiUID: uid, insts: killed, want: corev1.PodFailed},
		{name: "final, pod gone (deleted at once)", terminating: true, final: true, apiUID: "", insts: killed},
		{name: "final, name taken by a new pod", terminating: true, final: true, apiUID: other, insts: killed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{}
			pod.Name, pod.Namespace, pod.UID = "p", "default", uid
			pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
			pod.Spec.Containers = []corev1.Container{{Name: "a", Image: "busybox"}}
			var got []*corev1.Pod
			p := &Provider{cfg: Config{PodUID: func(ns, name string) (types.UID, bool) {
				if ns != pod.Namespace || name != pod.Name || tc.apiUID == "" {
					return "", false
				}
				return tc.apiUID, true
			}}, notify: func(p *corev1.Pod) { got = append(got, p) }}
			w := &worker{p: p, uid: uid, pod: pod, skel: pod, terminating: tc.terminating, started: t0,
				waiting: map[string]waiting{}, probes: map[string]*probeSet{}, log: log.L.WithField("pod", "default/p")}
			if out, changed := w.statusOf(pod, tc.insts, tc.final); changed {
				p.publish(out)
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("published %s, want nothing", got[0].Status.Phase)
			case tc.want != "" && len(got) != 1:
				t.Errorf("published %d statuses, want one %s", len(got), tc.want)
			case tc.want != "" && (got[0].Status.Phase != tc.want || got[0].UID != uid):
				t.Errorf("published %s of pod %s, want %s of %s", got[0].Status.Phase, got[0].UID, tc.want, uid)
			}
		})
	}
}

// TestFind checks that, while a deleted pod is torn down and a new pod of its
// name runs, the provider answers virtual-kubelet's GetPod with the new one.
func TestFind(t *testing.T) {
	mk := func(uid types.UID, terminating bool) *worker {
		pod := &corev1.Pod{}
		pod.Name, pod.Namespace, pod.UID = "p", "default", uid
		return &worker{uid: uid, pod: pod, skel: pod, terminating: terminating}
	}
	old, cur := mk("old", true), mk("new", false)
	for _, order := range [][]*worker{{old, cur}, {cur, old}} {
		p := &Provider{workers: map[types.UID]*worker{}}
		for _, w := range order {
			p.workers[w.uid] = w
		}
		if got := p.find("default", "p"); got != cur {
			t.Errorf("find = worker of %s, want the new pod's", got.uid)
		}
	}
	p := &Provider{workers: map[types.UID]*worker{"old": old}}
	if got := p.find("default", "p"); got != old {
		t.Errorf("find without a new pod = %v, want the terminating one", got)
	}
	if got := p.find("default", "q"); got != nil {
		t.Errorf("find of another name = %v, want nil", got)
	}
}

// TestStopping checks which pods the provider says it still tears down (and
// so deletes from the API itself): deleted ones with a spec, while Finalize
// is set.
func TestStopping(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID = "p", "default", "u1"
	fin := func(context.Context, *corev1.Pod) error { return nil }
	for _, tc := range []struct {
		name        string
		finalize    bool
		terminating bool
		spec        bool // not a recovered pod waiting for CreatePod
		want        bool
	}{
		{name: "being deleted", finalize: true, terminating: true, spec: true, want: true},
		{name: "running", finalize: true, spec: true},
		{name: "recovered, deleted", finalize: true, terminating: true},
		{name: "without Finalize", terminating: true, spec: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &worker{uid: pod.UID, skel: pod, terminating: tc.terminating}
			if tc.spec {
				w.pod = pod
			}
			p := &Provider{workers: map[types.UID]*worker{pod.UID: w}}
			if tc.finalize {
				p.cfg.Finalize = fin
			}
			if got := p.Stopping(pod.UID); got != tc.want {
				t.Errorf("Stopping = %v, want %v", got, tc.want)
			}
			if p.Stopping("other") {
				t.Error("Stopping of an unknown pod = true")
			}
		})
	}
}
