package volumes

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// Source gives the API objects volumes are made from. The agent implements it with virtual-kubelet's listers
// (ConfigMapLister, SecretLister) and a clientset for tokens; NewClientSource implements it with a clientset
// alone. Implementations must be safe for concurrent use.
type Source interface {
	// ConfigMap returns the configMap namespace/name. A missing one is an error for which
	// k8s.io/apimachinery/pkg/api/errors.IsNotFound is true.
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	// Secret returns the secret namespace/name. A missing one is an error for which
	// k8s.io/apimachinery/pkg/api/errors.IsNotFound is true.
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	// Token requests a token for the service account namespace/serviceAccount through the TokenRequest API.
	// req carries the audiences, the expiration and the pod the token is bound to; the answer carries the
	// token, its expiration time and the expiration the API server granted.
	Token(ctx context.Context, namespace, serviceAccount string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error)
}

// NewClientSource returns a Source that asks the API server through cs for every object (no cache).
// Tests use it with k8s.io/client-go/kubernetes/fake.
func NewClientSource(cs Client) Source {
	return clientSource{cs: cs}
}

// Client is the part of client-go's kubernetes.Interface that NewClientSource
// uses.
type Client interface {
	CoreV1() corev1client.CoreV1Interface
}

type clientSource struct {
	cs Client
}

func (s clientSource) ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return s.cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (s clientSource) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return s.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (s clientSource) Token(ctx context.Context, namespace, serviceAccount string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return s.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}
