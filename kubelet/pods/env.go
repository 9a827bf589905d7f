package pods

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/feather-edge/feather/kubelet/downward"
)

// envSources is where a container's environment comes from: the API's
// configMaps, secrets and services. A nil lister means none of its kind.
type envSources struct {
	configMaps corev1listers.ConfigMapLister
	secrets    corev1listers.SecretLister
	services   corev1listers.ServiceLister
	nodeName   string
	hostIPs    []string
	// allocatable is the node's: the value of an unset limit.
	allocatable corev1.ResourceList
}

// envVar is one variable of a container's environment.
type envVar struct{ Name, Value string }

// environment returns container c's environment as kubelet makes it
// (makeEnvironmentVariables): envFrom first, then env in order — values
// with $(VAR) expanded from what came before and the services' variables,
// valueFrom resolved (fieldRef with the pod's IPs, resourceFieldRef with the
// node's allocatable as the default limit, configMap and secret keys,
// optional ones skipped when missing) — then the services' variables not
// already set. The error says what is wrong, as kubelet's does.
func (s *envSources) environment(pod *corev1.Pod, c *corev1.Container, podIPs []string) ([]envVar, error) {
	serviceEnv, err := s.serviceEnv(pod)
	if err != nil {
		return nil, err
	}
	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	getConfigMap := func(name string) (*corev1.ConfigMap, error) {
		if cm, ok := configMaps[name]; ok {
			return cm, nil
		}
		if s.configMaps == nil {
			return nil, fmt.Errorf("couldn't get configMap %s/%s: the agent reads no configMaps", pod.Namespace, name)
		}
		cm, err := s.configMaps.ConfigMaps(pod.Namespace).Get(name)
		if err != nil {
			return nil, err
		}
		configMaps[name] = cm
		return cm, nil
	}
	getSecret := func(name string) (*corev1.Secret, error) {
		if sec, ok := secrets[name]; ok {
			return sec, nil
		}
		if s.secrets == nil {
			return nil, fmt.Errorf("couldn't get secret %s/%s: the agent reads no secrets", pod.Namespace, name)
		}
		sec, err := s.secrets.Secrets(pod.Namespace).Get(name)
		if err != nil {
			return nil, err
		}
		secrets[name] = sec
		return sec, nil
	}

	tmp := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := tmp[k]; !ok {
			order = append(order, k)
		}
		tmp[k] = v
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := getConfigMap(from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, err
			}
			data = cm.Data
		case from.SecretRef != nil:
			sec, err := getSecret(from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, err
			}
			data = map[string]string{}
			for k, v := range sec.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}

	mapping := func(name string) (string, bool) {
		if v, ok := tmp[name]; ok {
			return v, true
		}
		v, ok := serviceEnv[name]
		return v, ok
	}
	for _, e := range c.Env {
		val := e.Value
		switch {
		case val != "":
			val = downward.Expand(val, mapping)
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil:
			val, err = s.fieldValue(pod, e.ValueFrom.FieldRef, podIPs)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			ref := *e.ValueFrom.ResourceFieldRef
			if ref.ContainerName == "" {
				ref.ContainerName = c.Name
			}
			val, err = downward.ResourceValue(withContainer(pod, c), s.allocatable, &ref)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			optional := isTrue(ref.Optional)
			cm, err := getConfigMap(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, err
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			val = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			optional := isTrue(ref.Optional)
			sec, err := getSecret(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, err
			}
			v, ok := sec.Data[ref.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			val = string(v)
		default:
			return nil, fmt.Errorf("env %s: this valueFrom source is not supported by the Feather agent", e.Name)
		}
		set(e.Name, val)
	}

	out := make([]envVar, 0, len(order)+len(serviceEnv))
	for _, k := range order {
		out = append(out, envVar{k, tmp[k]})
	}
	var rest []string
	for k := range serviceEnv {
		if _, ok := tmp[k]; !ok {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		out = append(out, envVar{k, serviceEnv[k]})
	}
	return out, nil
}

// withContainer returns pod, with c among its containers if it is not (an
// ephemeral container).
func withContainer(pod *corev1.Pod, c *corev1.Container) *corev1.Pod {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == c.Name {
				return pod
			}
		}
	}
	cp := *pod
	cp.Spec.Containers = append(slices.Clone(pod.Spec.Containers), *c)
	return &cp
}

// fieldValue is a fieldRef's value, with the pod's IPs and the node's as
// they are now (the pod's status may not have them yet).
func (s *envSources) fieldValue(pod *corev1.Pod, ref *corev1.ObjectFieldSelector, podIPs []string) (string, error) {
	cp := *pod
	cp.Status.PodIP, cp.Status.PodIPs = "", nil
	for _, ip := range podIPs {
		cp.Status.PodIPs = append(cp.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(podIPs) > 0 {
		cp.Status.PodIP = podIPs[0]
	}
	cp.Status.HostIP, cp.Status.HostIPs = "", nil
	for _, ip := range s.hostIPs {
		cp.Status.HostIPs = append(cp.Status.HostIPs, corev1.HostIP{IP: ip})
	}
	if len(s.hostIPs) > 0 {
		cp.Status.HostIP = s.hostIPs[0]
	}
	return downward.FieldValue(&cp, s.nodeName, ref)
}

// serviceEnv is kubelet's getServiceEnvVarMap: the variables of the
// services of the pod's namespace (with enableServiceLinks, the default)
// and of the API server's service, "kubernetes" in namespace default,
// always.
func (s *envSources) serviceEnv(pod *corev1.Pod) (map[string]string, error) {
	m := map[string]string{}
	if s.services == nil {
		return m, nil
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	svcs, err := s.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("failed to list services when setting up env vars: %w", err)
	}
	byName := map[string]*corev1.Service{}
	for _, svc := range svcs {
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			continue
		}
		switch {
		case svc.Namespace == "default" && svc.Name == "kubernetes":
			if _, ok := byName[svc.Name]; !ok {
				byName[svc.Name] = svc
			}
		case svc.Namespace == pod.Namespace && links:
			byName[svc.Name] = svc
		}
	}
	for _, svc := range byName {
		for _, e := range serviceVars(svc) {
			m[e.Name] = e.Value
		}
	}
	return m, nil
}

// serviceVars are a service's variables, as kubelet's envvars.FromServices
// (and Docker links) name them.
func serviceVars(svc *corev1.Service) []envVar {
	prefix := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
	ip := svc.Spec.ClusterIP
	out := []envVar{
		{prefix + "_SERVICE_HOST", ip},
		{prefix + "_SERVICE_PORT", strconv.Itoa(int(svc.Spec.Ports[0].Port))},
	}
	for _, sp := range svc.Spec.Ports {
		if sp.Name != "" {
			out = append(out, envVar{prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), strconv.Itoa(int(sp.Port))})
		}
	}
	for i, sp := range svc.Spec.Ports {
		proto := strings.ToLower(string(corev1.ProtocolTCP))
		if sp.Protocol != "" {
			proto = strings.ToLower(string(sp.Protocol))
		}
		url := proto + "://" + net.JoinHostPort(ip, strconv.Itoa(int(sp.Port)))
		if i == 0 {
			out = append(out, envVar{prefix + "_PORT", url})
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, sp.Port, strings.ToUpper(proto))
		out = append(out, envVar{pp, url}, envVar{pp + "_PROTO", proto},
			envVar{pp + "_PORT", strconv.Itoa(int(sp.Port))}, envVar{pp + "_ADDR", ip})
	}
	return out
}

// expandArgs expands $(VAR) in command and args from env, as kubelet's
// ExpandContainerCommandAndArgs does.
func expandArgs(list []string, env []envVar) []string {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]string, len(env))
	for _, e := range env {
		m[e.Name] = e.Value
	}
	mapping := func(name string) (string, bool) { v, ok := m[name]; return v, ok }
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = downward.Expand(s, mapping)
	}
	return out
}

// hostname is the pod's hostname as kubelet makes it: spec.hostname, else
// the pod's name cut to 63 characters without a trailing '-' or '.'; with
// setHostnameAsFQDN and a subdomain, its fully qualified name.
func hostname(pod *corev1.Pod, clusterDomain string) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	if pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN && pod.Spec.Subdomain != "" && clusterDomain != "" {
		fqdn := h + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + clusterDomain
		if len(fqdn) <= 64 {
			return fqdn
		}
	}
	return h
}

func isTrue(b *bool) bool { return b != nil && *b }
