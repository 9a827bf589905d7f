package pods

import (
	"strconv"
	"time"
)

// Labels on every containerd container the agent creates.
const (
	LabelPodUID       = "feather.dev/pod-uid"
	LabelPodNamespace = "feather.dev/pod-namespace"
	LabelPodName      = "feather.dev/pod-name"
	LabelContainer    = "feather.dev/container"
	LabelAttempt      = "feather.dev/attempt"
	LabelInit         = "feather.dev/init"
	// Written as the container's task starts and ends.
	LabelStartedAt  = "feather.dev/started-at"
	LabelFinishedAt = "feather.dev/finished-at"
	LabelExitCode   = "feather.dev/exit-code"
	LabelReason     = "feather.dev/reason"
	LabelImageID    = "feather.dev/image-id"
	// LabelFallbackToLogs marks a run whose terminationMessagePolicy is
	// FallbackToLogsOnError (kubelet keeps the policy in the container's
	// annotations for the same reason: the status is made from the
	// runtime's containers, not from the spec).
	LabelFallbackToLogs = "feather.dev/termination-fallback-to-logs"
)

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
