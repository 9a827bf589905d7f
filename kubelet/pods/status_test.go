package pods

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(policy corev1.RestartPolicy, init []string, app ...string) *corev1.Pod {
		p := &corev1.Pod{}
		p.Name, p.Namespace, p.UID = "p", "default", "0123456789"
		p.Spec.RestartPolicy = policy
		for _, n := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
		}
		for _, n := range app {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
		}
		return p
	}
	// sc makes the named init containers of p sidecars.
	sc := func(p *corev1.Pod, names ...string) *corev1.Pod {
		for i := range p.Spec.InitContainers {
			if slices.Contains(names, p.Spec.InitContainers[i].Name) {
				p.Spec.InitContainers[i].RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
			}
		}
		return p
	}
	running := func(name string, attempt int) instance {
		return instance{ID: name, Name: name, Attempt: attempt, Running: true, StartedAt: t0}
	}
	booting := func(name string) instance {
		in := running(name, 0)
		in.Booting = true
		return in
	}
	readinessProbed := func(p *corev1.Pod) *corev1.Pod {
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].ReadinessProbe = &corev1.Probe{}
		}
		return p
	}
	exited := func(name string, attempt int, code int32) instance {
		return instance{ID: name, Name: name, Attempt: attempt, Exited: true, ExitCode: code, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		insts     []instance
		waiting   map[string]waiting
		failed    *waiting
		phase     corev1.PodPhase
		ready     bool
		initDone  bool
		stateOf   map[string]string // container → Running|Terminated|Waiting:<reason>
		restarts  map[string]int32
		lastState map[string]int32 // container → last terminated exit code
		probes    map[string]probeState
		readyOf   map[string]bool // containers whose ready is true
		started   map[string]bool // containers whose started is true
		terminal  bool            // deleted, everything stopped
	}{
		{name: "nothing yet", pod: pod(corev1.RestartPolicyAlways, nil, "a"), phase: corev1.PodPending, initDone: true,
			stateOf: map[string]string{"a": "Waiting:ContainerCreating"}},
		{name: "running", pod: pod(corev1.RestartPolicyAlways, nil, "a", "b"),
			insts: []instance{running("a", 0), running("b", 0)}, phase: corev1.PodRunning, ready: true, initDone: true,
			stateOf: map[string]string{"a": "Running", "b": "Running"}},
		{name: "one of two running", pod: pod(corev1.RestartPolicyAlways, nil, "a", "b"),
			insts: []instance{running("a", 0)}, phase: corev1.PodRunning, initDone: true,
			stateOf: map[string]string{"a": "Running", "b": "Waiting:ContainerCreating"}},
		{name: "never: exit 0 succeeds", pod: pod(corev1.RestartPolicyNever, nil, "a"),
			insts: []instance{exited("a", 0, 0)}, phase: corev1.PodSucceeded, initDone: true,
			stateOf: map[string]string{"a": "Terminated"}},
		{name: "never: exit 3 fails", pod: pod(corev1.RestartPolicyNever, nil, "a"),
			insts: []instance{exited("a", 0, 3)}, phase: corev1.PodFailed, initDone: true,
			stateOf: map[string]string{"a": "Terminated"}},
		{name: "onfailure: exit 0 succeeds", pod: pod(corev1.RestartPolicyOnFailure, nil, "a"),
			insts: []instance{exited("a", 2, 0), exited("a", 1, 1)}, phase: corev1.PodSucceeded, initDone: true,
			stateOf: map[string]string{"a": "Terminated"}, restarts: map[string]int32{"a": 2}, lastState: map[string]int32{"a": 1}},
		{name: "onfailure: exit 1 backs off", pod: pod(corev1.RestartPolicyOnFailure, nil, "a"),
			insts:   []instance{exited("a", 1, 1), exited("a", 0, 1)},
			waiting: map[string]waiting{"a": {"CrashLoopBackOff", "back-off"}}, phase: corev1.PodRunning, initDone: true,
			stateOf: map[string]string{"a": "Waiting:CrashLoopBackOff"}, restarts: map[string]int32{"a": 1}, lastState: map[string]int32{"a": 1}},
		{name: "always: exit 0 restarts", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			insts: []instance{exited("a", 0, 0)}, phase: corev1.PodRunning, initDone: true,
			stateOf: map[string]string{"a": "Terminated"}},
		{name: "always: restarted and running", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			insts: []instance{running("a", 3), exited("a", 2, 137)}, phase: corev1.PodRunning, ready: true, initDone: true,
			stateOf: map[string]string{"a": "Running"}, restarts: map[string]int32{"a": 3}, lastState: map[string]int32{"a": 137}},
		{name: "init running", pod: pod(corev1.RestartPolicyAlways, []string{"i1", "i2"}, "a"),
			insts: []instance{exited("i1", 0, 0), running("i2", 0)}, phase: corev1.PodPending,
			stateOf: map[string]string{"i1": "Terminated", "i2": "Running", "a": "Waiting:PodInitializing"}},
		{name: "init done", pod: pod(corev1.RestartPolicyAlways, []string{"i1"}, "a"),
			insts: []instance{exited("i1", 0, 0), running("a", 0)}, phase: corev1.PodRunning, ready: true, initDone: true,
			stateOf: map[string]string{"i1": "Terminated", "a": "Running"}, readyOf: map[string]bool{"i1": true, "a": true},
			started: map[string]bool{"a": true}},
		{name: "readiness not passed", pod: pod(corev1.RestartPolicyAlways, nil, "a", "b"),
			insts: []instance{running("a", 0), running("b", 0)}, probes: map[string]probeState{"a": {started: true}},
			phase: corev1.PodRunning, initDone: true, stateOf: map[string]string{"a": "Running", "b": "Running"},
			readyOf: map[string]bool{"b": true}, started: map[string]bool{"a": true, "b": true}},
		{name: "startup not passed", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			insts: []instance{running("a", 0)}, probes: map[string]probeState{"a": {}},
			phase: corev1.PodRunning, initDone: true, stateOf: map[string]string{"a": "Running"}},
		{name: "probes passed", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			insts: []instance{running("a", 0)}, probes: map[string]probeState{"a": {started: true, ready: true}},
			phase: corev1.PodRunning, ready: true, initDone: true, stateOf: map[string]string{"a": "Running"},
			readyOf: map[string]bool{"a": true}, started: map[string]bool{"a": true}},
		{name: "unikernel booting", pod: pod(corev1.RestartPolicyAlways, nil, "a", "b"),
			insts: []instance{booting("a"), running("b", 0)},
			phase: corev1.PodRunning, initDone: true, stateOf: map[string]string{"a": "Running", "b": "Running"},
			readyOf: map[string]bool{"b": true}, started: map[string]bool{"b": true}},
		{name: "unikernel booting, readiness probe passed", pod: readinessProbed(pod(corev1.RestartPolicyAlways, nil, "a")),
			insts: []instance{booting("a")}, probes: map[string]probeState{"a": {started: true, ready: true}},
			phase: corev1.PodRunning, ready: true, initDone: true, stateOf: map[string]string{"a": "Running"},
			readyOf: map[string]bool{"a": true}, started: map[string]bool{"a": true}},
		{name: "unikernel program started", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			insts: []instance{running("a", 0)},
			phase: corev1.PodRunning, ready: true, initDone: true, stateOf: map[string]string{"a": "Running"},
			readyOf: map[string]bool{"a": true}, started: map[string]bool{"a": true}},
		{name: "init fails under Never", pod: pod(corev1.RestartPolicyNever, []string{"i1"}, "a"),
			insts: []instance{exited("i1", 0, 2)}, phase: corev1.PodFailed,
			stateOf: map[string]string{"i1": "Terminated", "a": "Waiting:PodInitializing"}},
		{name: "init fails under Always is retried", pod: pod(corev1.RestartPolicyAlways, []string{"i1"}, "a"),
			insts: []instance{exited("i1", 0, 2)}, phase: corev1.PodPending,
			stateOf: map[string]string{"i1": "Terminated", "a": "Waiting:PodInitializing"}},
		{name: "sidecar running: initialised", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s"}, "a"), "s"),
			insts: []instance{running("s", 0)}, phase: corev1.PodPending, initDone: true,
			stateOf: map[string]string{"s": "Running", "a": "Waiting:ContainerCreating"}},
		{name: "sidecar startup not passed: not initialised", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s", "i"}, "a"), "s"),
			insts: []instance{running("s", 0)}, probes: map[string]probeState{"s": {}}, phase: corev1.PodPending,
			stateOf: map[string]string{"s": "Running", "i": "Waiting:PodInitializing", "a": "Waiting:PodInitializing"}},
		{name: "sidecar and init done", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s", "i"}, "a"), "s"),
			insts: []instance{running("s", 0), exited("i", 0, 0)}, probes: map[string]probeState{"s": {started: true}},
			phase: corev1.PodPending, initDone: true,
			stateOf: map[string]string{"s": "Running", "i": "Terminated", "a": "Waiting:ContainerCreating"}},
		{name: "sidecar not ready: pod not ready", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s"}, "a"), "s"),
			insts: []instance{running("s", 0), running("a", 0)}, probes: map[string]probeState{"s": {started: true}},
			phase: corev1.PodRunning, initDone: true, stateOf: map[string]string{"s": "Running", "a": "Running"},
			readyOf: map[string]bool{"a": true}},
		{name: "sidecar ready: pod ready", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s"}, "a"), "s"),
			insts: []instance{running("s", 0), running("a", 0)}, probes: map[string]probeState{"s": {started: true, ready: true}},
			phase: corev1.PodRunning, ready: true, initDone: true, stateOf: map[string]string{"s": "Running", "a": "Running"},
			readyOf: map[string]bool{"s": true, "a": true}},
		{name: "sidecar crashed after main started: still initialised", pod: sc(pod(corev1.RestartPolicyAlways, []string{"s"}, "a"), "s"),
			insts:   []instance{exited("s", 1, 1), exited("s", 0, 1), running("a", 0)},
			waiting: map[string]waiting{"s": {"CrashLoopBackOff", "back-off"}}, phase: corev1.PodRunning, initDone: true,
			stateOf:  map[string]string{"s": "Waiting:CrashLoopBackOff", "a": "Running"},
			restarts: map[string]int32{"s": 1}, lastState: map[string]int32{"s": 1}, readyOf: map[string]bool{"a": true}},
		{name: "sidecar failed under Never: retried, pod pending", pod: sc(pod(corev1.RestartPolicyNever, []string{"s"}, "a"), "s"),
			insts: []instance{exited("s", 0, 1)}, phase: corev1.PodPending,
			stateOf: map[string]string{"s": "Terminated", "a": "Waiting:PodInitializing"}},
		{name: "main succeeded, sidecar killed: Succeeded", pod: sc(pod(corev1.RestartPolicyNever, []string{"s"}, "a"), "s"),
			insts: []instance{exited("s", 0, 137), exited("a", 0, 0)}, phase: corev1.PodSucceeded, initDone: true,
			stateOf: map[string]string{"s": "Terminated", "a": "Terminated"}},
		{name: "main succeeded, sidecar running: Succeeded", pod: sc(pod(corev1.RestartPolicyNever, []string{"s"}, "a"), "s"),
			insts: []instance{running("s", 0), exited("a", 0, 0)}, phase: corev1.PodSucceeded, initDone: true,
			stateOf: map[string]string{"s": "Running", "a": "Terminated"}},
		{name: "main failed, sidecar killed: Failed", pod: sc(pod(corev1.RestartPolicyNever, []string{"s"}, "a"), "s"),
			insts: []instance{exited("s", 0, 137), exited("a", 0, 2)}, phase: corev1.PodFailed, initDone: true,
			stateOf: map[string]string{"s": "Terminated", "a": "Terminated"}},
		{name: "image pull error", pod: pod(corev1.RestartPolicyAlways, nil, "a"),
			waiting: map[string]waiting{"a": {"ErrImagePull", "not found"}}, phase: corev1.PodPending, initDone: true,
			stateOf: map[string]string{"a": "Waiting:ErrImagePull"}},
		{name: "rejected", pod: pod(corev1.RestartPolicyAlways, nil, "a"), failed: &waiting{"OutOfmemory", "no"},
			phase: corev1.PodFailed, initDone: false, stateOf: map[string]string{}},
		// A deleted pod's last status is terminal, whatever its restart
		// policy: never Running for a pod about to be gone.
		{name: "deleted, killed: Failed", pod: pod(corev1.RestartPolicyAlways, nil, "a"), terminal: true,
			insts: []instance{exited("a", 0, 137)}, phase: corev1.PodFailed, initDone: true,
			stateOf: map[string]string{"a": "Terminated"}},
		{name: "deleted, exited 0: Succeeded", pod: pod(corev1.RestartPolicyAlways, nil, "a", "b"), terminal: true,
			insts: []instance{exited("a", 0, 0), exited("b", 0, 0)}, phase: corev1.PodSucceeded, initDone: true,
			stateOf: map[string]string{"a": "Terminated", "b": "Terminated"}},
		{name: "deleted, one of two killed: Failed", pod: pod(corev1.RestartPolicyOnFailure, nil, "a", "b"), terminal: true,
			insts: []instance{exited("a", 0, 0), exited("b", 0, 137)}, phase: corev1.PodFailed, initDone: true,
			stateOf: map[string]string{"a": "Terminated", "b": "Terminated"}},
		{name: "deleted before it started: Failed", pod: pod(corev1.RestartPolicyAlways, nil, "a"), terminal: true,
			phase: corev1.PodFailed, initDone: true, stateOf: map[string]string{"a": "Waiting:ContainerCreating"}},
		{name: "deleted in its init phase: Failed", pod: pod(corev1.RestartPolicyAlways, []string{"i"}, "a"), terminal: true,
			insts: []instance{exited("i", 0, 137)}, phase: corev1.PodFailed,
			stateOf: map[string]string{"i": "Terminated", "a": "Waiting:PodInitializing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &view{pod: tc.pod, instances: tc.insts, waiting: tc.waiting, failed: tc.failed, probes: tc.probes, terminal: tc.terminal}
			st := v.status()
			if tc.failed != nil && (st.Reason != tc.failed.Reason || st.Message != tc.failed.Message || len(st.ContainerStatuses) != 0) {
				t.Errorf("rejected: reason %q, message %q, %d container statuses", st.Reason, st.Message, len(st.ContainerStatuses))
			}
			if st.Phase != tc.phase {
				t.Errorf("phase = %s, want %s", st.Phase, tc.phase)
			}
			conds := map[corev1.PodConditionType]corev1.ConditionStatus{}
			for _, c := range st.Conditions {
				conds[c.Type] = c.Status
			}
			if (conds[corev1.PodReady] == corev1.ConditionTrue) != tc.ready || (conds[corev1.ContainersReady] == corev1.ConditionTrue) != tc.ready {
				t.Errorf("Ready = %s, ContainersReady = %s, want ready %v", conds[corev1.PodReady], conds[corev1.ContainersReady], tc.ready)
			}
			if (conds[corev1.PodInitialized] == corev1.ConditionTrue) != tc.initDone {
				t.Errorf("Initialized = %s, want %v", conds[corev1.PodInitialized], tc.initDone)
			}
			all := append(append([]corev1.ContainerStatus{}, st.InitContainerStatuses...), st.ContainerStatuses...)
			for _, cs := range all {
				got := "?"
				switch {
				case cs.State.Running != nil:
					got = "Running"
				case cs.State.Terminated != nil:
					got = "Terminated"
				case cs.State.Waiting != nil:
					got = "Waiting:" + cs.State.Waiting.Reason
				}
				if want := tc.stateOf[cs.Name]; got != want {
					t.Errorf("%s: state %s, want %s", cs.Name, got, want)
				}
				if tc.readyOf != nil && cs.Ready != tc.readyOf[cs.Name] {
					t.Errorf("%s: ready %v, want %v", cs.Name, cs.Ready, tc.readyOf[cs.Name])
				}
				if tc.started != nil && cs.State.Running != nil && (cs.Started == nil || *cs.Started != tc.started[cs.Name]) {
					t.Errorf("%s: started %v, want %v", cs.Name, cs.Started, tc.started[cs.Name])
				}
				if cs.RestartCount != tc.restarts[cs.Name] {
					t.Errorf("%s: restartCount %d, want %d", cs.Name, cs.RestartCount, tc.restarts[cs.Name])
				}
				code, ok := tc.lastState[cs.Name]
				if lt := cs.LastTerminationState.Terminated; (lt != nil) != ok || (ok && lt.ExitCode != code) {
					t.Errorf("%s: lastState %+v, want exit %d (%v)", cs.Name, lt, code, ok)
				}
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	long := "a123456789b123456789c123456789d123456789e123456789f123456789g12"
	for _, tc := range []struct {
		uid, name string
		attempt   int
		want      string
	}{
		{"6f1c2a7e-1111-2222-3333-444455556666", "web", 0, "6f1c2a7e-web-0"},
		{"6f1c2a7e-1111-2222-3333-444455556666", long, 12, "6f1c2a7e-" + long[:60] + "-12"},
	} {
		got := containerID(types.UID(tc.uid), tc.name, tc.attempt)
		if got != tc.want || len(got) > 76 {
			t.Errorf("containerID(%s, %s, %d) = %q (%d chars), want %q", tc.uid, tc.name, tc.attempt, got, len(got), tc.want)
		}
	}
}

func TestSidecarDecisions(t *testing.T) {
	always := ptr(corev1.ContainerRestartPolicyAlways)
	pod := &corev1.Pod{}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{{Name: "s1", RestartPolicy: always}, {Name: "i"}, {Name: "s2", RestartPolicy: always}}
	pod.Spec.Containers = []corev1.Container{{Name: "a"}, {Name: "b"}}
	for _, tc := range []struct {
		name string
		c    *corev1.Container
		init bool
		code int32
		want bool
	}{
		{"sidecar exit 0 restarts under Never", &pod.Spec.InitContainers[0], true, 0, true},
		{"sidecar exit 1 restarts under Never", &pod.Spec.InitContainers[0], true, 1, true},
		{"init exit 1 not restarted under Never", &pod.Spec.InitContainers[1], true, 1, false},
		{"main exit 0 not restarted under Never", &pod.Spec.Containers[0], false, 0, false},
	} {
		if got := restartsContainer(pod, tc.c, tc.init, tc.code); got != tc.want {
			t.Errorf("%s: restartsContainer = %v, want %v", tc.name, got, tc.want)
		}
	}
	var order []string
	for _, c := range sidecarsLastFirst(pod) {
		order = append(order, c.Name)
	}
	if !slices.Equal(order, []string{"s2", "s1"}) {
		t.Errorf("sidecars stopped in order %v, want [s2 s1]", order)
	}
	run := func(name string, running bool, code int32) instance {
		return instance{Name: name, Running: running, Exited: !running, ExitCode: code}
	}
	for _, tc := range []struct {
		name    string
		policy  corev1.RestartPolicy
		insts   []instance
		done    bool
		started bool // sidecarStarted of s1, without probes
	}{
		{"nothing ran", corev1.RestartPolicyNever, nil, false, false},
		{"one main running", corev1.RestartPolicyNever, []instance{run("s1", true, 0), run("a", false, 0), run("b", true, 0)}, false, true},
		{"all main ended under Never", corev1.RestartPolicyNever, []instance{run("s1", true, 0), run("a", false, 0), run("b", false, 3)}, true, true},
		{"failed main restarts under OnFailure", corev1.RestartPolicyOnFailure, []instance{run("a", false, 0), run("b", false, 3)}, false, false},
		{"all main ended under Always", corev1.RestartPolicyAlways, []instance{run("a", false, 0), run("b", false, 0)}, false, false},
	} {
		p := pod.DeepCopy()
		p.Spec.RestartPolicy = tc.policy
		v := &view{pod: p, instances: tc.insts}
		if got := v.mainDone(); got != tc.done {
			t.Errorf("%s: mainDone = %v, want %v", tc.name, got, tc.done)
		}
		if got := sidecarStarted(v.runs("s1"), probeState{}, false); got != tc.started {
			t.Errorf("%s: sidecarStarted = %v, want %v", tc.name, got, tc.started)
		}
	}
	if sidecarStarted([]instance{run("s1", true, 0)}, probeState{}, true) {
		t.Error("sidecar with a startup probe not passed counts as started")
	}
	if !sidecarStarted([]instance{run("s1", true, 0)}, probeState{started: true}, true) {
		t.Error("sidecar whose startup probe passed does not count as started")
	}
}
