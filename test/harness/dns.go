package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// ClusterDNSIP is the ClusterIP of Service kube-system/kube-dns, the
// address pods resolve through (the agent's --cluster-dns), as kubeadm
// picks it: the tenth address of the service range.
const ClusterDNSIP = "10.96.0.10"

// ClusterDomain is the cluster's DNS domain.
const ClusterDomain = "cluster.local"

// DNS is a real cluster DNS: CoreDNS (built by `make deps`) with its
// kubernetes plugin, serving the cluster domain from the API, behind the
// usual Service kube-system/kube-dns. CoreDNS runs on the host, as the rest of
// the control plane does, listening on a node's address; the Service has no
// selector and an EndpointSlice of its own that points at it, so kube-proxy
// routes ClusterDNSIP:53 to CoreDNS from pods and from the node.
type DNS struct {
	// Dir holds its Corefile and log.
	Dir string
	// Addr is where CoreDNS listens (UDP and TCP).
	Addr string

	proc *Process
}

// StartDNS starts CoreDNS on ip (a free port) with the cluster admin's
// kubeconfig, creates Service kube-system/kube-dns and its EndpointSlice, and
// returns once CoreDNS has synced with the API (its /ready answers). It fails
// t if not.
func (e *Env) StartDNS(cp *ControlPlane, ip net.IP) *DNS {
	e.t.Helper()
	bin := RequiresBin(e.t, "coredns")
	d := &DNS{Dir: filepath.Join(e.Dir, "coredns")}
	e.onClose(d.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := d.start(ctx, cp, bin, ip); err != nil {
		e.t.Fatalf("harness: coredns: %v", err)
	}
	return d
}

func (d *DNS) start(ctx context.Context, cp *ControlPlane, bin string, ip net.IP) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	// The DNS port is one free for TCP on 127.0.0.1 now; CoreDNS binds it on
	// ip, where no other program of this host listens.
	port := ports[0]
	d.Addr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	corefile := fmt.Sprintf(`.:%d {
    bind %s
    errors
    health %s
    ready %s
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loadbalance
}
`, port, ip, hostPort(ports[1]), hostPort(ports[2]), ClusterDomain, cp.AdminKubeconfig)
	path := filepath.Join(d.Dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o600); err != nil {
		return err
	}
	d.proc, err = startProcess("coredns", filepath.Join(d.Dir, "coredns.log"), nil, bin, "-conf", path)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Second}
	if err := d.proc.waitReady(ctx, httpOK(c, "http://"+hostPort(ports[2])+"/ready")); err != nil {
		return err
	}
	return createDNSService(ctx, kubernetes.NewForConfigOrDie(cp.Admin), ip, int32(port))
}

// createDNSService creates Service kube-system/kube-dns (ClusterDNSIP, port 53
// over UDP and TCP, as kubeadm's) and the EndpointSlice that sends it to
// CoreDNS at ip:port.
func createDNSService(ctx context.Context, kube kubernetes.Interface, ip net.IP, port int32) error {
	const name, ns = "kube-dns", metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
	svcPorts := []corev1.ServicePort{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(port)},
		{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port)},
	}
	_, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.ServiceSpec{ClusterIP: ClusterDNSIP, Ports: svcPorts},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Service %s/%s: %w", ns, name, err)
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	ready := true
	_, err = kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-coredns", Labels: map[string]string{
			discoveryv1.LabelServiceName: name,
			discoveryv1.LabelManagedBy:   "feather-test-harness",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("dns"), Port: &port, Protocol: &udp},
			{Name: ptr("dns-tcp"), Port: &port, Protocol: &tcp},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create EndpointSlice for %s/%s: %w", ns, name, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func (d *DNS) stop() error {
	if d.proc != nil {
		d.proc.Stop(5 * time.Second)
	}
	return nil
}
