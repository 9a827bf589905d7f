// Package downward computes the values kubelet's downward API gives a pod
// (fieldRef, resourceFieldRef) and expands $(VAR) references as Kubernetes
// does; both the pods' environment and their downwardAPI volumes use it.
package downward

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FieldValue returns the value of a downward API fieldRef for pod. nodeName is used when the pod's spec.nodeName
// is empty. Status fields not known yet (podIP before the network is set up) are empty strings.
func FieldValue(pod *corev1.Pod, nodeName string, ref *corev1.ObjectFieldSelector) (string, error) {
	if v := ref.APIVersion; v != "" && v != "v1" {
		return "", fmt.Errorf("fieldRef apiVersion %q: only v1 is supported: %w", v, errdefs.ErrInvalidArgument)
	}
	fp := ref.FieldPath
	if m, key, ok := subscript(fp); ok {
		switch m {
		case "metadata.labels":
			return pod.Labels[key], nil
		case "metadata.annotations":
			return pod.Annotations[key], nil
		}
	}
	switch fp {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		if pod.Spec.NodeName != "" {
			return pod.Spec.NodeName, nil
		}
		return nodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		ips := make([]string, 0, len(pod.Status.PodIPs))
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		ips := make([]string, 0, len(pod.Status.HostIPs))
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported: %w", fp, errdefs.ErrInvalidArgument)
}

// subscript splits "metadata.labels['key']" into "metadata.labels" and "key".
func subscript(fp string) (field, key string, ok bool) {
	i := strings.Index(fp, "['")
	if i < 0 || !strings.HasSuffix(fp, "']") || i+2 > len(fp)-2 {
		return "", "", false
	}
	return fp[:i], fp[i+2 : len(fp)-2], true
}

// formatMap writes m as kubelet does: one key="value" line per key (value quoted as Go quotes it), sorted by
// key, without a final newline.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return strings.Join(lines, "\n")
}

// ResourceValue returns the value of a downward API resourceFieldRef, rounded up to whole divisors as kubelet
// does. An unset limit of cpu, memory or ephemeral-storage is the node's allocatable amount; an unset request
// is 0.
func ResourceValue(pod *corev1.Pod, allocatable corev1.ResourceList, ref *corev1.ResourceFieldSelector) (string, error) {
	c := findContainer(pod, ref.ContainerName)
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef %s: pod has no container %q: %w", ref.Resource, ref.ContainerName, errdefs.ErrInvalidArgument)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || name == "" {
		return "", fmt.Errorf("resourceFieldRef %q: want limits.<resource> or requests.<resource>: %w", ref.Resource, errdefs.ErrInvalidArgument)
	}
	rn := corev1.ResourceName(name)
	var q resource.Quantity
	switch kind {
	case "limits":
		var set bool
		q, set = c.Resources.Limits[rn]
		if !set && (rn == corev1.ResourceCPU || rn == corev1.ResourceMemory || rn == corev1.ResourceEphemeralStorage) {
			if q, set = allocatable[rn]; !set {
				return "", fmt.Errorf("resourceFieldRef %s of container %q: no limit and the node's allocatable %s is unknown: %w",
					ref.Resource, c.Name, rn, errdefs.ErrFailedPrecondition)
			}
		}
	case "requests":
		q = c.Resources.Requests[rn]
	default:
		return "", fmt.Errorf("resourceFieldRef %q: want limits.<resource> or requests.<resource>: %w", ref.Resource, errdefs.ErrInvalidArgument)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// findContainer returns the container or init container name of pod, or nil.
func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// Expand replaces $(NAME) in s by mapping's value, with Kubernetes' rules: $$ is a literal $, and a reference
// mapping does not know, or an unclosed $(, stays as written. Hand-written because Kubernetes keeps its version in
// k8s.io/kubernetes/third_party, which cannot be imported.
func Expand(s string, mapping func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := mapping(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
