package nodeinfo

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditions(t *testing.T) {
	healthy := signals{memAvailable: gi, storageAvailable: 40 * gi, storageTotal: 100 * gi, pidLimit: 32768, pidUsed: 105}
	type want struct {
		status  corev1.ConditionStatus
		reason  string
		message string
	}
	for _, tc := range []struct {
		name   string
		s      func(s *signals)
		t      func(t *Thresholds)
		h      Health
		checks map[corev1.NodeConditionType]want
	}{
		{name: "healthy", checks: map[corev1.NodeConditionType]want{
			corev1.NodeNetworkUnavailable: {corev1.ConditionFalse, "NetworkReady", "pod network is ready"},
			corev1.NodeMemoryPressure:     {corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
			corev1.NodeDiskPressure:       {corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
			corev1.NodePIDPressure:        {corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
			corev1.NodeReady:              {corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
		}},
		{name: "memory pressure", s: func(s *signals) { s.memAvailable = 100*mi - 1 }, checks: map[corev1.NodeConditionType]want{
			corev1.NodeMemoryPressure: {corev1.ConditionTrue, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"},
			corev1.NodeReady:          {corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
		}},
		{name: "memory at the threshold", s: func(s *signals) { s.memAvailable = 100 * mi }, checks: map[corev1.NodeConditionType]want{
			corev1.NodeMemoryPressure: {corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
		}},
		{name: "disk pressure", s: func(s *signals) { s.storageAvailable = 10*gi - 1 }, checks: map[corev1.NodeConditionType]want{
			corev1.NodeDiskPressure: {corev1.ConditionTrue, "KubeletHasDiskPressure", "kubelet has disk pressure"},
		}},
		{name: "PID pressure", s: func(s *signals) { s.pidUsed = 32768 - 3000 }, checks: map[corev1.NodeConditionType]want{
			corev1.NodePIDPressure: {corev1.ConditionTrue, "KubeletHasInsufficientPID", "kubelet has insufficient PID available"},
		}},
		{name: "thresholds off", s: func(s *signals) { s.memAvailable, s.storageAvailable, s.pidUsed = 0, 0, 32768 },
			t: func(t *Thresholds) { *t = Thresholds{} }, checks: map[corev1.NodeConditionType]want{
				corev1.NodeMemoryPressure: {corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
				corev1.NodeDiskPressure:   {corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
				corev1.NodePIDPressure:    {corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
			}},
		{name: "unmeasurable", s: func(s *signals) { s.memErr = errors.New("read memory: gone") }, checks: map[corev1.NodeConditionType]want{
			corev1.NodeMemoryPressure: {corev1.ConditionUnknown, "MeasurementFailed", "cannot measure: read memory: gone"},
			corev1.NodeDiskPressure:   {corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
		}},
		{name: "runtime down", h: Health{Runtime: errors.New("connection refused")}, checks: map[corev1.NodeConditionType]want{
			corev1.NodeReady:              {corev1.ConditionFalse, "KubeletNotReady", "container runtime is down: connection refused"},
			corev1.NodeNetworkUnavailable: {corev1.ConditionFalse, "NetworkReady", "pod network is ready"},
		}},
		{name: "network down", h: Health{Network: errors.New("no CNI config")}, checks: map[corev1.NodeConditionType]want{
			corev1.NodeReady:              {corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: no CNI config"},
			corev1.NodeNetworkUnavailable: {corev1.ConditionTrue, "NetworkPluginNotReady", "pod network is not ready: no CNI config"},
		}},
		{name: "both down", h: Health{Runtime: errors.New("a"), Network: errors.New("b")}, checks: map[corev1.NodeConditionType]want{
			corev1.NodeReady: {corev1.ConditionFalse, "KubeletNotReady", "[container runtime is down: a, container runtime network not ready: b]"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, th := healthy, DefaultThresholds()
			if tc.s != nil {
				tc.s(&s)
			}
			if tc.t != nil {
				tc.t(&th)
			}
			got := conditions(nil, s, th, tc.h, time.Unix(1000, 0))
			order := []corev1.NodeConditionType{corev1.NodeNetworkUnavailable, corev1.NodeMemoryPressure,
				corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeReady}
			if len(got) != len(order) {
				t.Fatalf("got %d conditions, want %d", len(got), len(order))
			}
			for i, c := range got {
				if c.Type != order[i] {
					t.Errorf("condition %d is %s, want %s", i, c.Type, order[i])
				}
				w, ok := tc.checks[c.Type]
				if !ok {
					continue
				}
				if c.Status != w.status || c.Reason != w.reason || c.Message != w.message {
					t.Errorf("%s = %s %q %q, want %s %q %q", c.Type, c.Status, c.Reason, c.Message, w.status, w.reason, w.message)
				}
			}
		})
	}
}

func TestConditionsTransitionTime(t *testing.T) {
	s := signals{memAvailable: gi, storageAvailable: 40 * gi, storageTotal: 100 * gi, pidLimit: 32768, pidUsed: 105}
	t0, t1 := time.Unix(1000, 0), time.Unix(2000, 0)
	first := conditions(nil, s, DefaultThresholds(), Health{}, t0)

	s.memAvailable = mi
	second := conditions(first, s, DefaultThresholds(), Health{}, t1)
	for _, c := range second {
		if !c.LastHeartbeatTime.Equal(&metav1.Time{Time: t1}) {
			t.Errorf("%s heartbeat %v, want %v", c.Type, c.LastHeartbeatTime, t1)
		}
		wantTransition := t0
		if c.Type == corev1.NodeMemoryPressure {
			wantTransition = t1 // changed from False to True
		}
		if !c.LastTransitionTime.Time.Equal(wantTransition) {
			t.Errorf("%s transition %v, want %v", c.Type, c.LastTransitionTime, wantTransition)
		}
	}
}
