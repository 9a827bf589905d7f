package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// events returns the messages of pod's events of reason.
func (c *cluster) events(ctx context.Context, t *testing.T, pod, reason string) []string {
	t.Helper()
	l, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		out = append(out, e.Message)
	}
	return out
}

// waitEvent waits for an event of reason on pod whose message has substr.
func (c *cluster) waitEvent(t *testing.T, pod, reason, substr string, timeout time.Duration) string {
	t.Helper()
	var last, got string
	waitFor(t, reason+" event of "+pod, timeout, func(ctx context.Context) (bool, error) {
		msgs := c.events(ctx, t, pod, reason)
		last = strings.Join(msgs, " | ")
		for _, m := range msgs {
			if strings.Contains(m, substr) {
				got = m
				return true, nil
			}
		}
		return false, nil
	}, &last)
	return got
}

func envRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

// TestAgentEnv checks what a container's environment holds, as kubelet makes
// it, for a container and a unikernel; a missing configMap makes the pod
// wait with a reason and an event; a pod name over 63 characters is cut for
// the hostname.
func TestAgentEnv(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	c.create(ctx, t,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"color": "blue", "size": "L"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"token": []byte("t0ps3cret")}})
	env := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: envRef("status.podIP")},
		{Name: "POD_IPS", ValueFrom: envRef("status.podIPs")},
		{Name: "HOST_IP", ValueFrom: envRef("status.hostIP")},
		{Name: "HOST_IPS", ValueFrom: envRef("status.hostIPs")},
		{Name: "NODE", ValueFrom: envRef("spec.nodeName")},
		{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
		{Name: "MISSING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "x", Optional: ptrTo(true)}}},
		{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "token"}}},
		{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
		{Name: "GREETING", Value: "$(CFG_size)-$(COLOR)-$$(COLOR)-$(UNSET)"},
	}
	envFrom := []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	// A unikernel's VM gets its memory limit: enough for the test guest's kernel.
	res := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}
	c.create(ctx, t, newPod("env", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command: []string{"sh", "-c", "env | sort; echo args: $0 $1", "$(COLOR)", "$(NODE)"}, Env: env, EnvFrom: envFrom, Resources: res}))
	// The test guest boots its kernel directly: the kernel takes at most 32
	// words with '=' on its command line, each --env one; so fewer here.
	ukEnv := []corev1.EnvVar{env[0], env[2], env[5], env[8], env[10]}
	uk := newPod("env-uk", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.unikernel,
		Args: []string{"/args", "$(COLOR)"}, Env: ukEnv, EnvFrom: envFrom, Resources: res})
	uk.Spec.RuntimeClassName = ptrTo("osv")
	long := strings.Repeat("x", 60) + "-long-pod-name"
	longPod := newPod(long, corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh("hostname")})
	longPod.Labels = map[string]string{"app": "long"} // a label value has at most 63 characters
	// Keys that are not shell identifiers (upstream's ConfigMap and Secret
	// env specs use them): the container gets them as they are; busybox's
	// env applet prints them (its sh would drop them, so no sh here).
	c.create(ctx, t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "names"}, Data: map[string]string{"data-1": "value-1", "1-data-2": "value-2"}})
	names := newPod("env-names", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: []string{"env"},
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "names"}}},
			{Prefix: "p-", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "names"}}}}})
	c.create(ctx, t, uk, longPod, names)
	c.create(ctx, t, newPod("env-missing", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh("true"),
		Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "nokey"}}}}}))

	for _, name := range []string{"env", "env-uk"} {
		p := c.waitPod(t, name, 2*time.Minute, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		})
		out, err := c.logs(ctx, name, &corev1.PodLogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("%s: %s; logs:\n%s", name, p.Status.Phase, out)
		}
		prefix := ""
		if name == "env-uk" {
			prefix = "env "
		}
		wants := []string{"POD_IP=" + p.Status.PodIP, "HOST_IP=" + p.Status.HostIP, "COLOR=blue", "CFG_color=blue", "CFG_size=L",
			"MEM_MI=512", "GREETING=L-blue-$(COLOR)-$(UNSET)", "KUBERNETES_SERVICE_HOST=", "KUBERNETES_PORT_443_TCP_PROTO=tcp"}
		if name == "env" {
			wants = append(wants, "POD_IPS="+p.Status.PodIP, "HOST_IPS="+p.Status.HostIP, "NODE="+c.agent.Name, "TOKEN=t0ps3cret", "CPU_LIMIT=")
		}
		for _, want := range wants {
			if !strings.Contains(out, "\n"+prefix+want) && !strings.HasPrefix(out, prefix+want) {
				t.Errorf("%s: no %q in\n%s", name, want, out)
			}
		}
		if p.Status.PodIP == "" || strings.Contains(out, "MISSING=") {
			t.Errorf("%s: pod IP %q; output\n%s", name, p.Status.PodIP, out)
		}
		wantArgs := "args: blue " + c.agent.Name
		if name == "env-uk" {
			wantArgs = "arg[1]=blue"
		}
		if !strings.Contains(out, wantArgs) {
			t.Errorf("%s: no %q in\n%s", name, wantArgs, out)
		}
	}

	c.waitPod(t, "env-names", time.Minute, phase(corev1.PodSucceeded))
	out, _ := c.logs(ctx, "env-names", &corev1.PodLogOptions{})
	for _, want := range []string{"data-1=value-1", "1-data-2=value-2", "p-data-1=value-1", "p-1-data-2=value-2"} {
		if !strings.Contains("\n"+out, "\n"+want+"\n") {
			t.Errorf("env-names: no %q in\n%s", want, out)
		}
	}

	c.waitPod(t, long, time.Minute, phase(corev1.PodSucceeded))
	out, _ = c.logs(ctx, long, &corev1.PodLogOptions{})
	if want := long[:63]; !strings.HasPrefix(out, want+"\n") {
		t.Errorf("hostname of %s: %q, want %q", long, out, want)
	}

	p := c.waitPod(t, "env-missing", time.Minute, func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses
		return len(w) == 1 && w[0].State.Waiting != nil && w[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "couldn't find key nokey in ConfigMap default/cfg") {
		t.Errorf("waiting message %q", msg)
	}
	c.waitEvent(t, "env-missing", "Failed", "couldn't find key nokey", 30*time.Second)
	if strings.Contains(c.agent.Log(2000), "t0ps3cret") {
		t.Error("the secret's value is in the agent's log")
	}
	_ = fmt.Sprint
}
