package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1informers "k8s.io/client-go/informers/core/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	certificatesv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	nodev1client "k8s.io/client-go/kubernetes/typed/node/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// kubeClient is the agent's client of the Kubernetes API: the typed clients
// of the API groups it uses, over one HTTP client. It is deliberately not
// client-go's Clientset: once a Clientset is converted to
// kubernetes.Interface, the linker keeps the clients, apply configurations
// and discovery of every API group, some 9 MB of the agent's binary. For the
// same reason the agent builds its informers without client-go's informer
// factory (newInformer) and requests its serving certificate without
// client-go's csr package (servingCert.request).
type kubeClient struct {
	core *corev1client.CoreV1Client
	// events is a core client of its own, with a rate limiter of its own
	// (client-go gives each REST client one), as kubelet's event client:
	// the events of many pods starting and stopping at once do not hold
	// up their other requests.
	events         *corev1client.CoreV1Client
	coordination   *coordinationv1client.CoordinationV1Client
	node           *nodev1client.NodeV1Client
	certificates   *certificatesv1client.CertificatesV1Client
	authentication *authenticationv1client.AuthenticationV1Client
	authorization  *authorizationv1client.AuthorizationV1Client
}

func newKubeClient(cfg *rest.Config) (*kubeClient, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	var k kubeClient
	for _, set := range []func() error{
		func() (err error) { k.core, err = corev1client.NewForConfigAndClient(cfg, hc); return err },
		func() (err error) { k.events, err = corev1client.NewForConfigAndClient(cfg, hc); return err },
		func() (err error) {
			k.coordination, err = coordinationv1client.NewForConfigAndClient(cfg, hc)
			return err
		},
		func() (err error) { k.node, err = nodev1client.NewForConfigAndClient(cfg, hc); return err },
		func() (err error) {
			k.certificates, err = certificatesv1client.NewForConfigAndClient(cfg, hc)
			return err
		},
		func() (err error) {
			k.authentication, err = authenticationv1client.NewForConfigAndClient(cfg, hc)
			return err
		},
		func() (err error) {
			k.authorization, err = authorizationv1client.NewForConfigAndClient(cfg, hc)
			return err
		},
	} {
		if err := set(); err != nil {
			return nil, err
		}
	}
	return &k, nil
}

func (k *kubeClient) CoreV1() corev1client.CoreV1Interface { return k.core }
func (k *kubeClient) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	return k.coordination
}
func (k *kubeClient) NodeV1() nodev1client.NodeV1Interface { return k.node }
func (k *kubeClient) CertificatesV1() certificatesv1client.CertificatesV1Interface {
	return k.certificates
}
func (k *kubeClient) AuthenticationV1() authenticationv1client.AuthenticationV1Interface {
	return k.authentication
}
func (k *kubeClient) AuthorizationV1() authorizationv1client.AuthorizationV1Interface {
	return k.authorization
}

// newInformer returns an informer of the objects of type obj that list and
// watch return, indexed by namespace, as client-go's informer factory makes.
func newInformer[L runtime.Object](obj runtime.Object, resync time.Duration,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return list(ctx, o)
		},
		WatchFuncWithContext: watchFn,
	}, obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// nodePodInformer informs of the pods bound to node, across namespaces.
func nodePodInformer(kube *kubeClient, node string, resync time.Duration) podInformer {
	sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
	pods := kube.CoreV1().Pods(metav1.NamespaceAll)
	return podInformer{newInformer(&corev1.Pod{}, resync,
		func(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
			o.FieldSelector = sel
			return pods.List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return pods.Watch(ctx, o)
		})}
}

// serviceInformer informs of all services.
func newServiceInformer(kube *kubeClient, resync time.Duration) serviceInformer {
	svcs := kube.CoreV1().Services(metav1.NamespaceAll)
	return serviceInformer{newInformer(&corev1.Service{}, resync, svcs.List, svcs.Watch)}
}

type podInformer struct{ cache.SharedIndexInformer }

var _ corev1informers.PodInformer = podInformer{}

func (i podInformer) Informer() cache.SharedIndexInformer { return i.SharedIndexInformer }
func (i podInformer) Lister() corev1listers.PodLister {
	return corev1listers.NewPodLister(i.GetIndexer())
}

type serviceInformer struct{ cache.SharedIndexInformer }

var _ corev1informers.ServiceInformer = serviceInformer{}

func (i serviceInformer) Informer() cache.SharedIndexInformer { return i.SharedIndexInformer }
func (i serviceInformer) Lister() corev1listers.ServiceLister {
	return corev1listers.NewServiceLister(i.GetIndexer())
}

// podClient is virtual-kubelet's pods client. Virtual-kubelet deletes a
// deleted pod from the API (grace 0, its UID as precondition) once its grace
// period has passed, whatever the provider is doing: the containers killed
// at that moment are not gone yet, and the pod would go with its last status,
// phase Running. A Delete of a pod the provider is still tearing down
// (stopping) does nothing: the provider writes the pod's last status and
// deletes it itself once its containers are gone (pods.Config.Finalize), as
// kubelet's status manager does.
type podClient struct {
	corev1client.PodsGetter
	stopping func(types.UID) bool
}

func (c podClient) Pods(namespace string) corev1client.PodInterface {
	return podsClient{c.PodsGetter.Pods(namespace), c.stopping}
}

type podsClient struct {
	corev1client.PodInterface
	stopping func(types.UID) bool
}

func (c podsClient) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	if p := opts.Preconditions; p != nil && p.UID != nil && c.stopping(*p.UID) {
		return nil
	}
	return c.PodInterface.Delete(ctx, name, opts)
}

func ptrTo[T any](v T) *T { return &v }
