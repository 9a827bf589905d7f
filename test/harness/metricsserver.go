package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// MetricsServer is a real metrics-server (sigs.k8s.io/metrics-server, built
// by `make deps`), serving the resource metrics API (metrics.k8s.io, which
// `kubectl top` and the HorizontalPodAutoscaler read) from the nodes' kubelet
// API (/metrics/resource). It runs on the host, on a node address of its own,
// as user system:metrics-server with the RBAC and APIService of
// metrics-server's own manifest; Service kube-system/metrics-server has no
// selector and an EndpointSlice that points at it.
type MetricsServer struct {
	// Dir holds its kubeconfig, certificates and log.
	Dir string
	// Addr is where it serves (HTTPS).
	Addr string

	proc *Process
}

// MetricsResolution is how often the harness's metrics-server scrapes the
// nodes (its --metric-resolution; metrics-server's default is 15 s too).
const MetricsResolution = 15 * time.Second

// StartMetricsServer starts metrics-server for cp and registers it as
// APIService v1beta1.metrics.k8s.io, and returns once the API server
// reports it Available. It fails t if not.
func (e *Env) StartMetricsServer(cp *ControlPlane) *MetricsServer {
	e.t.Helper()
	bin := RequiresBin(e.t, "metrics-server")
	m := &MetricsServer{Dir: filepath.Join(e.Dir, "metrics-server")}
	e.onClose(m.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := m.start(ctx, cp, bin, e.NodeAddress().IP); err != nil {
		e.t.Fatalf("harness: metrics-server: %v", err)
	}
	return m
}

const metricsServerUser = "system:metrics-server"

func (m *MetricsServer) start(ctx context.Context, cp *ControlPlane, bin string, ip net.IP) error {
	if err := os.MkdirAll(filepath.Join(m.Dir, "certs"), 0o700); err != nil {
		return err
	}
	cfg, err := cp.clientConfig(metricsServerUser, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := cp.writeKubeconfig("metrics-server", cfg)
	if err != nil {
		return err
	}
	kube := kubernetes.NewForConfigOrDie(cp.Admin)
	if err := metricsServerRBAC(ctx, kube); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	m.Addr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	m.proc, err = startProcess("metrics-server", filepath.Join(m.Dir, "metrics-server.log"), nil, bin,
		"--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", ip.String(), "--secure-port", strconv.Itoa(port), "--cert-dir", filepath.Join(m.Dir, "certs"),
		"--kubelet-preferred-address-types", "InternalIP", "--kubelet-use-node-status-port",
		"--kubelet-certificate-authority", filepath.Join(cp.Dir, "pki", "ca.crt"),
		"--metric-resolution", MetricsResolution.String(), "--v", "2")
	if err != nil {
		return err
	}
	if err := metricsServerService(ctx, kube, ip, int32(port)); err != nil {
		return err
	}
	return m.proc.waitReady(ctx, func(ctx context.Context) error {
		var svc struct {
			Status struct {
				Conditions []struct{ Type, Status, Message string }
			}
		}
		b, err := kube.CoreV1().RESTClient().Get().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").DoRaw(ctx)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &svc); err != nil {
			return err
		}
		for _, c := range svc.Status.Conditions {
			if c.Type == "Available" && c.Status == "True" {
				return nil
			}
			if c.Type == "Available" {
				return fmt.Errorf("APIService v1beta1.metrics.k8s.io not available: %s", c.Message)
			}
		}
		return fmt.Errorf("APIService v1beta1.metrics.k8s.io has no status yet")
	})
}

// metricsServerRBAC grants what metrics-server's manifest grants its service
// account: reading pods and nodes and the kubelets' metrics (nodes/metrics),
// delegating authentication and authorization, and reading the API server's
// authentication configuration; and lets view/edit/admin read the metrics.
func metricsServerRBAC(ctx context.Context, kube kubernetes.Interface) error {
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: metricsServerUser}}
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-server"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:aggregated-metrics-reader", Labels: map[string]string{
			"rbac.authorization.k8s.io/aggregate-to-admin": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true",
			"rbac.authorization.k8s.io/aggregate-to-view": "true"}}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		}},
	}
	for _, r := range roles {
		if _, err := kube.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create ClusterRole %s: %w", r.Name, err)
		}
	}
	for name, role := range map[string]string{"system:metrics-server": "system:metrics-server",
		"metrics-server:system:auth-delegator": "system:auth-delegator"} {
		_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create ClusterRoleBinding %s: %w", name, err)
		}
	}
	_, err := kube.RbacV1().RoleBindings(metav1.NamespaceSystem).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server-auth-reader"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create RoleBinding metrics-server-auth-reader: %w", err)
	}
	return nil
}

// metricsServerService creates Service kube-system/metrics-server, its
// EndpointSlice (ip:port) and APIService v1beta1.metrics.k8s.io in front of
// it. The API server reaches the endpoint directly (aggregator routing), and
// skips verifying metrics-server's self-signed certificate, as
// metrics-server's manifest has it.
func metricsServerService(ctx context.Context, kube kubernetes.Interface, ip net.IP, port int32) error {
	const name, ns = "metrics-server", metav1.NamespaceSystem
	_, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"k8s-app": name}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Service %s/%s: %w", ns, name, err)
	}
	tcp, ready := corev1.ProtocolTCP, true
	_, err = kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-host", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "feather-test-harness"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: &port, Protocol: &tcp}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create EndpointSlice for %s/%s: %w", ns, name, err)
	}
	apiService := map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io", "labels": map[string]string{"k8s-app": name}},
		"spec": map[string]any{"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
			"versionPriority": 100, "insecureSkipTLSVerify": true,
			"service": map[string]any{"namespace": ns, "name": name, "port": 443}},
	}
	b, err := json.Marshal(apiService)
	if err != nil {
		return err
	}
	if err := kube.CoreV1().RESTClient().Post().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices").
		SetHeader("Content-Type", "application/json").Body(b).Do(ctx).Error(); err != nil {
		return fmt.Errorf("create APIService v1beta1.metrics.k8s.io: %w", err)
	}
	return nil
}

// Log returns the last n lines of metrics-server's log.
func (m *MetricsServer) Log(n int) string { return m.proc.Tail(n) }

// Stop stops metrics-server (its APIService stays, unavailable). It is
// idempotent; the harness stops it at the end of the test anyway.
func (m *MetricsServer) Stop() {
	if m.proc != nil {
		m.proc.Stop(5 * time.Second)
	}
}

func (m *MetricsServer) stop() error {
	m.Stop()
	return nil
}
