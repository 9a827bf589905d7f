package agent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1informers "k8s.io/client-go/informers/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// getterInformers stand in for configMap and secret informers where
// virtual-kubelet wants them (to resolve env valueFrom): their listers get
// each object from the API when asked, as kubelet does. A node may get the
// configMaps and secrets of its pods but not list or watch them all, so
// real informers would only collect Forbidden errors.
type getterInformers struct {
	secrets    secretInformer
	configMaps configMapInformer
}

func newGetterInformers(kube *kubeClient) getterInformers {
	return getterInformers{secretInformer{kube}, configMapInformer{kube}}
}

type secretInformer struct{ kube *kubeClient }

var _ corev1informers.SecretInformer = secretInformer{}

// Informer is never used by the pod controller; there is none.
func (secretInformer) Informer() cache.SharedIndexInformer { return nil }

// Lister gets secrets from the API.
func (s secretInformer) Lister() corev1listers.SecretLister { return secretLister(s) }

type secretLister struct{ kube *kubeClient }

func (secretLister) List(labels.Selector) ([]*corev1.Secret, error) {
	return nil, fmt.Errorf("listing secrets is not allowed to a node")
}

func (s secretLister) Secrets(ns string) corev1listers.SecretNamespaceLister {
	return secretNSLister{s.kube, ns}
}

type secretNSLister struct {
	kube *kubeClient
	ns   string
}

func (secretNSLister) List(labels.Selector) ([]*corev1.Secret, error) {
	return nil, fmt.Errorf("listing secrets is not allowed to a node")
}

func (s secretNSLister) Get(name string) (*corev1.Secret, error) {
	return s.kube.CoreV1().Secrets(s.ns).Get(context.TODO(), name, metav1.GetOptions{})
}

type configMapInformer struct{ kube *kubeClient }

var _ corev1informers.ConfigMapInformer = configMapInformer{}

// Informer is never used by the pod controller; there is none.
func (configMapInformer) Informer() cache.SharedIndexInformer { return nil }

// Lister gets configMaps from the API.
func (c configMapInformer) Lister() corev1listers.ConfigMapLister { return configMapLister(c) }

type configMapLister struct{ kube *kubeClient }

func (configMapLister) List(labels.Selector) ([]*corev1.ConfigMap, error) {
	return nil, fmt.Errorf("listing configMaps is not allowed to a node")
}

func (c configMapLister) ConfigMaps(ns string) corev1listers.ConfigMapNamespaceLister {
	return configMapNSLister{c.kube, ns}
}

type configMapNSLister struct {
	kube *kubeClient
	ns   string
}

func (configMapNSLister) List(labels.Selector) ([]*corev1.ConfigMap, error) {
	return nil, fmt.Errorf("listing configMaps is not allowed to a node")
}

func (c configMapNSLister) Get(name string) (*corev1.ConfigMap, error) {
	return c.kube.CoreV1().ConfigMaps(c.ns).Get(context.TODO(), name, metav1.GetOptions{})
}
