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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate/csr"
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
func (s *servingCert) request(ctx context.Context, kube kubernetes.Interface, dir, node string, ips []net.IP) error {
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
	name, uid, err := csr.RequestCertificate(kube, csrPEM, "", certificatesv1.KubeletServingSignerName, nil,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, key)
	if err != nil {
		return fmt.Errorf("request serving certificate: %w", err)
	}
	log.G(ctx).WithField("csr", name).Info("waiting for the kubelet-serving CSR to be approved")
	certPEM, err := csr.WaitForCertificate(ctx, kube, name, uid)
	if err != nil {
		return fmt.Errorf("wait for serving certificate %s: %w", name, err)
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
	log.G(ctx).WithField("csr", name).Info("serving certificate issued")
	return nil
}
