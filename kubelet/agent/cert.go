package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	certificatesv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
)

// servingCert obtains the kubelet API's serving certificate the way kubelet
// does: a CSR for signer kubernetes.io/kubelet-serving (CN
// system:node:NAME, O system:nodes), which a cluster admin (or an approver
// controller) approves. Until it is issued the API refuses TLS handshakes.
// The certificate is kept in dir and reused while valid.
type servingCert struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		return nil, fmt.Errorf("serving certificate not yet issued (approve the node's kubelet-serving CSR)")
	}
	return s.cert, nil
}

func (s *servingCert) set(c *tls.Certificate) {
	s.mu.Lock()
	s.cert = c
	s.mu.Unlock()
}

// load reads a still-valid certificate from dir.
func (s *servingCert) load(dir string) bool {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "kubelet.crt"), filepath.Join(dir, "kubelet.key"))
	if err != nil || c.Leaf == nil || time.Now().Add(time.Hour).After(c.Leaf.NotAfter) {
		return false
	}
	s.set(&c)
	return true
}

// request asks the cluster for a certificate and waits until it is issued.
func (s *servingCert) request(ctx context.Context, kube *kubeClient, dir, node string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames:    []string{node},
		IPAddresses: ips,
	}, key)
	if err != nil {
		return err
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	csrs := kube.CertificatesV1().CertificateSigningRequests()
	created, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: csrPEM, SignerName: certificatesv1.KubeletServingSignerName,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("request serving certificate: %w", err)
	}
	log.G(ctx).WithField("csr", created.Name).Info("waiting for the kubelet-serving CSR to be approved")
	certPEM, err := waitForCertificate(ctx, csrs, created.Name, created.UID)
	if err != nil {
		return fmt.Errorf("wait for serving certificate %s: %w", created.Name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubelet.key"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubelet.crt"), certPEM, 0o644); err != nil {
		return err
	}
	s.set(&c)
	log.G(ctx).WithField("csr", created.Name).Info("serving certificate issued")
	return nil
}

// waitForCertificate waits until CSR name (of uid) is approved and holds a
// certificate, watching it between looks.
func waitForCertificate(ctx context.Context, csrs certificatesv1client.CertificateSigningRequestInterface, name string, uid types.UID) ([]byte, error) {
	for {
		c, err := csrs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if c.UID != uid {
			return nil, fmt.Errorf("csr %s was deleted and created again", name)
		}
		approved := false
		for _, cond := range c.Status.Conditions {
			switch cond.Type {
			case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
				return nil, fmt.Errorf("csr %s: %s: %s %s", name, cond.Type, cond.Reason, cond.Message)
			case certificatesv1.CertificateApproved:
				approved = true
			}
		}
		if approved && len(c.Status.Certificate) > 0 {
			return c.Status.Certificate, nil
		}
		w, err := csrs.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: c.ResourceVersion, TimeoutSeconds: ptrTo(int64(300)),
		})
		if err != nil {
			return nil, err
		}
		select { // any change, or the watch's end: look again
		case <-w.ResultChan():
		case <-ctx.Done():
		}
		w.Stop()
		select { // at most a look a second, however the watch behaves
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
