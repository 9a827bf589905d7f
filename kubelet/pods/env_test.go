package pods

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func indexer(objs ...any) cache.Indexer {
	ix := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		_ = ix.Add(o)
	}
	return ix
}

func testSources() *envSources {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}, Data: map[string]string{"a": "1", "b": "2"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sec"}, Data: map[string][]byte{"pw": []byte("s3cret")}}
	api := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "my-web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.7", Ports: []corev1.ServicePort{{Port: 80}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "headless"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}}}
	return &envSources{
		configMaps: corev1listers.NewConfigMapLister(indexer(cm)),
		secrets:    corev1listers.NewSecretLister(indexer(sec)),
		services:   corev1listers.NewServiceLister(indexer(api, web, headless)),
		nodeName:   "node-1", hostIPs: []string{"192.0.2.1"},
		allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
	}
}

func fromCM(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
}

func TestEnvironment(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name    string
		links   *bool
		c       corev1.Container
		want    map[string]string // must be there
		absent  []string
		wantErr string
	}{
		{name: "values and expansion", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "A", Value: "x"}, {Name: "B", Value: "$(A)-$(UNSET)-$$(A)"}, {Name: "C", Value: "$(MY_WEB_SERVICE_HOST)"},
			{Name: "EMPTY"},
		}}, want: map[string]string{"A": "x", "B": "x-$(UNSET)-$(A)", "C": "10.96.0.7", "EMPTY": ""}},
		{name: "envFrom with prefix, env wins", c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{
				{Prefix: "P_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: ptr(true)}},
			},
			Env: []corev1.EnvVar{{Name: "P_b", Value: "mine"}, {Name: "D", Value: "$(P_a)"}},
		}, want: map[string]string{"P_a": "1", "P_b": "mine", "pw": "s3cret", "D": "1"}},
		{name: "envFrom missing", c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}}},
			wantErr: `configmap "gone" not found`},
		{name: "keys", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "K", ValueFrom: fromCM("cm", "a", false)},
			{Name: "OPT", ValueFrom: fromCM("cm", "nope", true)},
			{Name: "OPTCM", ValueFrom: fromCM("gone", "a", true)},
			{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "pw"}}},
		}}, want: map[string]string{"K": "1", "S": "s3cret"}, absent: []string{"OPT", "OPTCM"}},
		{name: "missing key", c: corev1.Container{Env: []corev1.EnvVar{{Name: "K", ValueFrom: fromCM("cm", "nope", false)}}},
			wantErr: "couldn't find key nope in ConfigMap ns/cm"},
		{name: "missing secret", c: corev1.Container{Env: []corev1.EnvVar{{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Key: "pw"}}}}},
			wantErr: `secret "gone" not found`},
		{name: "fieldRef", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "IPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIPs"}}},
			{Name: "HOST", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "HOSTS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIPs"}}},
			{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "LBL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		}}, want: map[string]string{"IP": "10.244.0.5", "IPS": "10.244.0.5,fd00::5", "HOST": "192.0.2.1", "HOSTS": "192.0.2.1",
			"NAME": "p", "NODE": "node-1", "LBL": "web"}},
		{name: "resourceFieldRef", c: corev1.Container{
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}},
			Env: []corev1.EnvVar{
				{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "CPUREQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
				{Name: "CPUREQ1", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu"}}},
			}}, want: map[string]string{"MEM": "64", "CPU": "2", "CPUREQ": "250", "CPUREQ1": "1"}},
		{name: "services", c: corev1.Container{}, want: map[string]string{
			"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
			"KUBERNETES_PORT": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
			"MY_WEB_SERVICE_HOST": "10.96.0.7", "MY_WEB_SERVICE_PORT": "80", "MY_WEB_SERVICE_PORT_DNS": "53",
			"MY_WEB_PORT": "tcp://10.96.0.7:80", "MY_WEB_PORT_53_UDP": "udp://10.96.0.7:53", "MY_WEB_PORT_53_UDP_PROTO": "udp",
		}, absent: []string{"HEADLESS_SERVICE_HOST"}},
		{name: "no service links", links: &no, c: corev1.Container{},
			want: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, absent: []string{"MY_WEB_SERVICE_HOST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name = "c"
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{tc.c}, EnableServiceLinks: tc.links}}
			got, err := testSources().environment(pod, &pod.Spec.Containers[0], []string{"10.244.0.5", "fd00::5"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]string{}
			for _, e := range got {
				if _, dup := m[e.Name]; dup {
					t.Errorf("%s twice", e.Name)
				}
				m[e.Name] = e.Value
			}
			for k, v := range tc.want {
				if g, ok := m[k]; !ok || g != v {
					t.Errorf("%s = %q (set: %v), want %q", k, g, ok, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := m[k]; ok {
					t.Errorf("%s set", k)
				}
			}
		})
	}
}

func TestExpandArgs(t *testing.T) {
	env := []envVar{{"A", "x"}, {"B", "y z"}}
	got := expandArgs([]string{"echo", "$(A)", "$(B)", "$(C)", "$$(A)"}, env)
	want := []string{"echo", "x", "y z", "$(C)", "$(A)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if expandArgs(nil, env) != nil {
		t.Fatal("nil args expanded to non-nil")
	}
}

func TestHostname(t *testing.T) {
	long := strings.Repeat("a", 62) + "-bcd"
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want string
	}{
		{"pod", corev1.PodSpec{}, "pod"},
		{long, corev1.PodSpec{}, strings.Repeat("a", 62)},
		{"pod", corev1.PodSpec{Hostname: "h"}, "h"},
		{"pod", corev1.PodSpec{Hostname: "h", Subdomain: "s", SetHostnameAsFQDN: ptr(true)}, "h.s.ns.svc.cluster.local"},
		{"pod", corev1.PodSpec{Hostname: "h", Subdomain: "s"}, "h"},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: tc.name}, Spec: tc.spec}
		if got := hostname(pod, "cluster.local"); got != tc.want {
			t.Errorf("hostname(%s, %+v) = %q, want %q", tc.name, tc.spec, got, tc.want)
		}
	}
}
