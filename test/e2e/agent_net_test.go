package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/feather-edge/feather/shim-osv/netns"
)

// TestAgentNetwork puts two container pods and a unikernel pod on the pod
// network: each has its own IP in the pod CIDR, each reaches the others over
// TCP on their IPs (the unikernel through the test guest's /get), the node
// reaches all three, and a ClusterIP Service (programmed by kube-proxy)
// routes to the unikernel. Deleting them releases everything: no address,
// network namespace, veth (the VM's tap goes with its namespace) or
// iptables rule is left; the suite-level check in main_test.go catches any
// other link.
func TestAgentNetwork(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	nw := c.agent.Network
	c.env.StartKubeProxy(c.cp, c.agent.Name, nw.Subnet.String())

	web := func(name string) *corev1.Pod {
		return newPod(name, corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
			Command: sh("mkdir -p /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 8080 -h /www")})
	}
	vm := newPod("vm", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	c.create(ctx, t, web("a"), web("b"), vm)
	pods := map[string]*corev1.Pod{}
	seen := map[string]string{}
	for _, name := range []string{"a", "b", "vm"} {
		p := c.waitPod(t, name, 2*time.Minute, ready)
		ip := net.ParseIP(p.Status.PodIP)
		if ip == nil || !nw.Subnet.Contains(ip) {
			t.Fatalf("%s: pod IP %q, want one in %s", name, p.Status.PodIP, nw.Subnet)
		}
		if other, dup := seen[p.Status.PodIP]; dup {
			t.Fatalf("%s and %s share IP %s", name, other, p.Status.PodIP)
		}
		seen[p.Status.PodIP], pods[name] = name, p
	}
	url := func(name string) string { return "http://" + net.JoinHostPort(pods[name].Status.PodIP, "8080") + "/" }
	want := map[string]string{"a": "hello from a\n", "b": "hello from b\n", "vm": "hello from feather guest\n"}

	// The node reaches every pod. A pod is Ready once its processes run
	// (no readiness probes yet): its server, and a VM's whole guest, may
	// still be starting, so each check retries for a while.
	answers := func(what string, get func(context.Context) (string, error), want string) {
		t.Helper()
		var last string
		waitFor(t, what, time.Minute, func(ctx context.Context) (bool, error) {
			got, err := get(ctx)
			last = fmt.Sprintf("%q, %v", got, err)
			return err == nil && got == want, nil
		}, &last)
	}
	for name := range pods {
		answers("node → "+name, func(ctx context.Context) (string, error) { return httpGet(ctx, url(name)) }, want[name])
	}
	// Each container pod reaches the others, from inside its own network
	// namespace (as `kubectl exec … wget` would).
	for _, from := range []string{"a", "b"} {
		ns := filepath.Join(c.agent.Dir, "run", "netns", string(pods[from].UID))
		for _, to := range []string{"a", "b", "vm"} {
			if to == from {
				continue
			}
			answers(from+" → "+to, func(ctx context.Context) (string, error) { return getIn(ctx, ns, url(to)) }, want[to])
		}
	}
	// The unikernel reaches the others: a second unikernel pod (one VM per
	// pod) fetches from both containers and from the first VM.
	client := newPod("vmclient", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.unikernel,
		Args: []string{"/get", url("a") + "index.html", url("b") + "index.html", url("vm")}})
	c.create(ctx, t, client)
	c.waitPod(t, "vmclient", 2*time.Minute, phase(corev1.PodSucceeded))
	out, err := c.logs(ctx, "vmclient", &corev1.PodLogOptions{})
	for _, line := range []string{
		"GET " + url("a") + "index.html: 200 hello from a\n",
		"GET " + url("b") + "index.html: 200 hello from b\n",
		"GET " + url("vm") + ": 200 hello from feather guest\n",
	} {
		if err != nil || !strings.Contains(out, line) {
			t.Errorf("vmclient's log lacks %q:\n%s (%v)", line, out, err)
		}
	}

	// A ClusterIP Service selecting the unikernel pod.
	svc, err := c.kube.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "vm"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "vm"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcURL := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	answers("node → Service vm", func(ctx context.Context) (string, error) { return httpGet(ctx, svcURL) }, want["vm"])
	answers("a → Service vm", func(ctx context.Context) (string, error) {
		return getIn(ctx, filepath.Join(c.agent.Dir, "run", "netns", string(pods["a"].UID)), svcURL)
	}, want["vm"])
	if err := c.kube.CoreV1().Services("default").Delete(ctx, "vm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	deleteAll(ctx, t, c)
	checkNetworkClean(t, c)
}

// TestAgentNetworkCycles creates and deletes fifty pods, ten at a time, and
// checks that the pod network holds nothing afterwards: no address, network
// namespace, veth or iptables rule.
func TestAgentNetworkCycles(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for round := range 5 {
		var names []string
		for i := range 10 {
			name := fmt.Sprintf("cycle-%d-%d", round, i)
			names = append(names, name)
			c.create(ctx, t, newPod(name, corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("exec sleep 3600")}))
		}
		for _, name := range names {
			if p := c.waitPod(t, name, 2*time.Minute, ready); p.Status.PodIP == "" {
				t.Fatalf("%s has no IP", name)
			}
		}
		deleteAll(ctx, t, c)
		checkNetworkClean(t, c)
	}
}

// getIn fetches url from inside the network namespace at nsPath.
func getIn(ctx context.Context, nsPath, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		// A socket belongs to the namespace it is made in.
		err := netns.Do(nsPath, func() (err error) {
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
