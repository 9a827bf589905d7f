package agent

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/cni"
)

func TestPortMappings(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 1, HostPort: 1}}}},
		Containers: []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{
				{ContainerPort: 80, HostPort: 8080},
				{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP, HostIP: "127.0.0.1"},
				{ContainerPort: 9090}, // no hostPort
			}},
			{Name: "b", Ports: []corev1.ContainerPort{{ContainerPort: 443, HostPort: 8443, Protocol: corev1.ProtocolTCP}}},
		}}}
	want := []cni.PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
		{HostPort: 8443, ContainerPort: 443, Protocol: "tcp"},
	}
	if got := portMappings(pod); !reflect.DeepEqual(got, want) {
		t.Errorf("portMappings = %+v, want %+v", got, want)
	}
}

func TestDNSConfig(t *testing.T) {
	for _, tc := range []struct{ flag, want string }{{"", "-"}, {"/etc/resolv.conf", "/etc/resolv.conf"}} {
		if got := dnsConfig(Config{ResolvConf: tc.flag}).HostResolvConf; got != tc.want {
			t.Errorf("--resolv-conf %q → %q, want %q", tc.flag, got, tc.want)
		}
	}
}
