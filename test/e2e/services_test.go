package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/feather-edge/feather/test/harness"
)

// TestClusterServices checks what a user's first steps on a cluster take
// for granted, on a harness cluster with Services (kube-proxy and CoreDNS
// behind kube-system/kube-dns, as `make up` runs it): a ClusterIP Service in
// front of a container and one in front of a unikernel each answer by
// ClusterIP and by DNS name, from a pod and from the node; pods get the
// cluster DNS in their resolv.conf (no DNSConfigForming warning); and the
// API server's node proxy reaches the agent's kubelet API on the node's
// non-loopback InternalIP (`kubectl get --raw /api/v1/nodes/NODE/proxy/pods`).
func TestClusterServices(t *testing.T) {
	env := harness.New(t)
	hc := env.StartCluster(harness.ClusterOptions{Services: true})
	c := &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	web := newPod("web-container", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("mkdir -p /www && echo hello from a container > /www/index.html && exec httpd -f -p 8080 -h /www")})
	vm := newPod("web-unikernel", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	c.create(ctx, t, web, vm)
	want := map[string]string{"web-container": "hello from a container\n", "web-unikernel": "hello from feather guest\n"}
	clusterIPs := map[string]string{}
	for name := range want {
		svc, err := c.kube.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		clusterIPs[name] = svc.Spec.ClusterIP
		c.waitPod(t, name, 2*time.Minute, ready)
	}
	fqdn := func(name string) string { return name + ".default.svc." + harness.ClusterDomain }

	// From the node: by ClusterIP, and by name through the cluster DNS at
	// kube-dns's ClusterIP (kube-proxy routes it to CoreDNS). A fresh
	// Service takes a moment to reach kube-proxy, and a server a moment to
	// start: each check retries for a while.
	answers := func(what string, get func(context.Context) (string, error), want string) {
		t.Helper()
		var last string
		waitFor(t, what, time.Minute, func(ctx context.Context) (bool, error) {
			got, err := get(ctx)
			last = fmt.Sprintf("%q, %v", got, err)
			return err == nil && got == want, nil
		}, &last)
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(harness.ClusterDNSIP, "53"))
	}}
	byName := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Resolver: resolver}).DialContext}}
	for name, body := range want {
		answers("node → "+name+" by ClusterIP", func(ctx context.Context) (string, error) {
			return httpGet(ctx, "http://"+clusterIPs[name]+"/")
		}, body)
		answers("node → "+name+" by name", func(ctx context.Context) (string, error) {
			return getWith(ctx, byName, "http://"+fqdn(name)+"/")
		}, body)
		addrs, err := resolver.LookupHost(ctx, fqdn(name))
		if err != nil || len(addrs) != 1 || addrs[0] != clusterIPs[name] {
			t.Errorf("cluster DNS: %s = %v, %v; want [%s]", fqdn(name), addrs, err, clusterIPs[name])
		}
	}

	// From a pod: by the short name (the search path of the pod's
	// resolv.conf), the full name and the ClusterIP, as a user's client
	// would. The script retries each for up to a minute (kube-proxy), and
	// prints one line per answer.
	var script strings.Builder
	script.WriteString("cat /etc/resolv.conf\n")
	for name := range want {
		for _, host := range []string{name, fqdn(name), clusterIPs[name]} {
			fmt.Fprintf(&script, `i=0; until out=$(timeout 5 wget -q -O - http://%[1]s/); do i=$((i+1)); [ $i -lt 60 ] || { echo "%[1]s: no answer"; exit 1; }; sleep 1; done; echo "%[1]s -> $out"
`, host)
		}
	}
	client := newPod("client", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh(script.String())})
	c.create(ctx, t, client)
	p := c.waitPod(t, "client", 3*time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	out, err := c.logs(ctx, "client", &corev1.PodLogOptions{})
	if err != nil || p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("client pod %s (logs: %v):\n%s", p.Status.Phase, err, out)
	}
	if !strings.Contains(out, "nameserver "+harness.ClusterDNSIP) || !strings.Contains(out, "search default.svc."+harness.ClusterDomain) {
		t.Errorf("pod resolv.conf lacks the cluster DNS:\n%s", out)
	}
	for name, body := range want {
		for _, host := range []string{name, fqdn(name), clusterIPs[name]} {
			if line := host + " -> " + strings.TrimSuffix(body, "\n"); !strings.Contains(out, line+"\n") {
				t.Errorf("pod → %s: want %q in the client's log:\n%s", host, line, out)
			}
		}
	}

	// No pod was warned that its DNS could not be formed.
	events, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reason=DNSConfigForming"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		t.Errorf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
	}

	// The node proxy, with a real kubectl as a user types it.
	kubectl := harness.RequiresBin(t, "kubectl")
	cmd := exec.CommandContext(ctx, kubectl, "get", "--raw", "/api/v1/nodes/"+c.agent.Name+"/proxy/pods")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.cp.AdminKubeconfig)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get --raw …/proxy/pods: %v: %s", err, raw)
	}
	var list corev1.PodList
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("node proxy /pods: %v: %.300s", err, raw)
	}
	names := map[string]bool{}
	for _, p := range list.Items {
		names[p.Name] = true
	}
	for _, n := range []string{"web-container", "web-unikernel", "client"} {
		if !names[n] {
			t.Errorf("node proxy /pods lacks pod %s (has %v)", n, names)
		}
	}
	n, err := c.kube.CoreV1().Nodes().Get(ctx, c.agent.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address != c.agent.Address.IP.String() {
			t.Errorf("node InternalIP %s, want %s", a.Address, c.agent.Address.IP)
		}
	}
	deleteAll(ctx, t, c)
}

// getWith is httpGet through client.
func getWith(ctx context.Context, client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
