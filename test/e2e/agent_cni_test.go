package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentCNI gives pods their IPs from the agent's default CNI network:
// two pods get distinct IPs in the pod CIDR, one reaches the other's IP, a
// hostPort answers on the host through portmap, containers get the cluster
// DNS in resolv.conf, a killed and restarted agent keeps the pods' IPs
// without a second ADD, and deleting the pods releases every address and
// leaves no netns, veth or iptables rule.
func TestAgentCNI(t *testing.T) {
	c := newCluster(t, "--cluster-dns", "10.96.0.10")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	nw := c.agent.Network
	hostPort := int32(30000 + time.Now().UnixNano()%2000)

	srv := newPod("srv", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("mkdir -p /www && echo hello from srv > /www/index.html && exec httpd -f -p 8080 -h /www"),
		Ports:   []corev1.ContainerPort{{ContainerPort: 8080, HostPort: hostPort}}})
	c.create(ctx, t, srv)
	srv = c.waitPod(t, "srv", 2*time.Minute, ready)
	cli := newPod("cli", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("cat /etc/resolv.conf; until wget -q -O - http://$SRV:8080/index.html; do sleep 1; done; exec sleep 3600"),
		Env:     []corev1.EnvVar{{Name: "SRV", Value: srv.Status.PodIP}}})
	c.create(ctx, t, cli)
	cli = c.waitPod(t, "cli", 2*time.Minute, ready)

	ips := map[string]string{}
	for _, p := range []*corev1.Pod{srv, cli} {
		ip := net.ParseIP(p.Status.PodIP)
		if ip == nil || !nw.Subnet.Contains(ip) || len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
			t.Errorf("%s: podIP %q podIPs %v, want one IP in %s", p.Name, p.Status.PodIP, p.Status.PodIPs, nw.Subnet)
		}
		ips[p.Name] = p.Status.PodIP
	}
	if ips["srv"] == ips["cli"] {
		t.Errorf("both pods have IP %s", ips["srv"])
	}

	var last string
	waitFor(t, "cli reaches srv's IP", time.Minute, func(ctx context.Context) (bool, error) {
		out, err := c.logs(ctx, "cli", &corev1.PodLogOptions{})
		last = fmt.Sprintf("%q, %v", out, err)
		return strings.Contains(out, "hello from srv\n"), nil
	}, &last)
	out, _ := c.logs(ctx, "cli", &corev1.PodLogOptions{})
	for _, want := range []string{"search default.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.96.0.10\n", "options ndots:5\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("cli's /etc/resolv.conf lacks %q:\n%s", want, out)
		}
	}
	for _, host := range []string{"127.0.0.1", hostIP()} {
		url := fmt.Sprintf("http://%s/index.html", net.JoinHostPort(host, fmt.Sprint(hostPort)))
		if got, err := httpGet(ctx, url); err != nil || got != "hello from srv\n" {
			t.Errorf("hostPort: GET %s = %q, %v", url, got, err)
		}
	}

	// A crash of the agent: the pods keep their IPs, and no second ADD
	// reserves another address.
	c.agent.Kill()
	restarted := time.Now()
	if err := c.agent.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitAgentBack(t, restarted)
	for _, name := range []string{"srv", "cli"} {
		p := c.waitPod(t, name, time.Minute, ready)
		if p.Status.PodIP != ips[name] {
			t.Errorf("%s: IP %s after the agent restart, %s before", name, p.Status.PodIP, ips[name])
		}
	}
	if got := reservedIPs(t, c); len(got) != 2 {
		t.Errorf("host-local reservations after the restart = %v, want 2", got)
	}
	if got, err := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort)); err != nil || got != "hello from srv\n" {
		t.Errorf("hostPort after the agent restart = %q, %v", got, err)
	}

	deleteAll(ctx, t, c)
	checkNetworkClean(t, c)
}

// TestAgentCNIBadConfig breaks the agent's CNI configuration while it runs:
// the node turns NetworkUnavailable (and NotReady) with the reason, a new pod
// waits with NetworkNotReady naming it, a missing plugin binary is named,
// and once the configuration is fixed the node recovers and the pod runs.
func TestAgentCNIBadConfig(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nw := c.agent.Network
	broken := filepath.Join(nw.ConfDir, "00-broken.conflist")
	t.Cleanup(func() { os.Remove(broken) })

	for _, tc := range []struct {
		name, conf, want string
	}{
		{"invalid JSON", `{"cniVersion": "1.0.0", "name": `, "00-broken.conflist: invalid JSON"},
		{"missing plugin", `{"cniVersion": "1.0.0", "name": "nope", "plugins": [{"type": "feather-no-such-plugin"}]}`,
			`plugin "feather-no-such-plugin" not found in /usr/lib/cni`},
	} {
		if err := os.WriteFile(broken, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.waitNetworkCondition(t, tc.name, corev1.ConditionTrue, tc.want)
		if tc.name == "invalid JSON" {
			pod := newPod("waits", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("exec sleep 3600")})
			pod.Spec.NodeName = c.agent.Name // the scheduler keeps off a NotReady node
			c.create(ctx, t, pod)
		}
		p := c.waitPod(t, "waits", time.Minute, func(p *corev1.Pod) bool {
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return false
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			return w.Reason == "NetworkNotReady" && strings.Contains(w.Message, "network is not ready: ") && strings.Contains(w.Message, tc.want)
		})
		if p.Status.Phase != corev1.PodPending || p.Status.PodIP != "" {
			t.Errorf("%s: pod %s with IP %q", tc.name, p.Status.Phase, p.Status.PodIP)
		}
	}
	evs, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=waits,reason=NetworkNotReady"})
	if err != nil || len(evs.Items) == 0 {
		t.Errorf("NetworkNotReady events: %v, %v", evs, err)
	}

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	c.waitNetworkCondition(t, "fixed", corev1.ConditionFalse, "pod network is ready")
	p := c.waitPod(t, "waits", time.Minute, ready)
	if ip := net.ParseIP(p.Status.PodIP); ip == nil || !nw.Subnet.Contains(ip) {
		t.Errorf("pod IP %q once the network is fixed, want one in %s", p.Status.PodIP, nw.Subnet)
	}
	deleteAll(ctx, t, c)
	checkNetworkClean(t, c)
}

// waitNetworkCondition waits until the node's NetworkUnavailable condition
// has status and a message containing msg.
func (c *cluster) waitNetworkCondition(t *testing.T, what string, status corev1.ConditionStatus, msg string) {
	t.Helper()
	var last string
	waitFor(t, "node NetworkUnavailable="+string(status)+" ("+what+")", time.Minute, func(ctx context.Context) (bool, error) {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, c.agent.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		var ready corev1.ConditionStatus
		ok := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeNetworkUnavailable {
				last = fmt.Sprintf("%s %s: %s", cond.Status, cond.Reason, cond.Message)
				ok = cond.Status == status && strings.Contains(cond.Message, msg)
			}
			if cond.Type == corev1.NodeReady {
				ready = cond.Status
			}
		}
		// A node whose network is unavailable is not Ready, as kubelet's.
		return ok && (ready == corev1.ConditionTrue) == (status == corev1.ConditionFalse), nil
	}, &last)
}

// checkNetworkClean fails t if the agent's network still holds anything for
// a pod: an address, a network namespace, a veth or an iptables rule.
func checkNetworkClean(t *testing.T, c *cluster) {
	t.Helper()
	waitFor(t, "pod network clean", 30*time.Second, func(context.Context) (bool, error) {
		left, err := c.agent.Network.Leftovers()
		if err != nil {
			return false, err
		}
		netns, _ := os.ReadDir(filepath.Join(c.agent.Dir, "run", "netns"))
		return len(left) == 0 && len(reservedIPs(t, c)) == 0 && len(netns) == 0, nil
	})
}

// reservedIPs lists the addresses host-local holds in the agent's network.
func reservedIPs(t *testing.T, c *cluster) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(c.agent.Dir, "state", "cni", "networks", c.agent.Network.Name))
	var out []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req) // no proxy from the environment
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// hostIP is the address of the host's default route.
func hostIP() string {
	conn, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}
