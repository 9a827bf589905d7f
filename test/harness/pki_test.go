package harness

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
)

func TestIssue(t *testing.T) {
	ca, err := newAuthority("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newAuthority("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    certRequest
		usage  x509.ExtKeyUsage
		server bool
	}{
		{"node client", certRequest{cn: "system:node:n1", orgs: []string{"system:nodes"}}, x509.ExtKeyUsageClientAuth, false},
		{"serving", certRequest{cn: "kube-apiserver", hosts: []string{"127.0.0.1", "localhost"}}, x509.ExtKeyUsageServerAuth, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crtPEM, keyPEM, err := ca.issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
				t.Fatalf("key is not a PEM EC key: %q", keyPEM)
			}
			b, _ := pem.Decode(crtPEM)
			if b == nil {
				t.Fatal("certificate is not PEM")
			}
			crt, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if crt.Subject.CommonName != tc.req.cn || !slices.Equal(crt.Subject.Organization, tc.req.orgs) {
				t.Errorf("subject = %v, want CN=%s O=%v", crt.Subject, tc.req.cn, tc.req.orgs)
			}
			opts := x509.VerifyOptions{Roots: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{tc.usage}}
			opts.Roots.AddCert(ca.cert)
			if tc.server {
				opts.DNSName = "localhost"
				if !slices.ContainsFunc(crt.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
					t.Errorf("IP SANs = %v, want 127.0.0.1", crt.IPAddresses)
				}
			}
			if _, err := crt.Verify(opts); err != nil {
				t.Errorf("verify against its CA: %v", err)
			}
			opts.Roots = x509.NewCertPool()
			opts.Roots.AddCert(other.cert)
			if _, err := crt.Verify(opts); err == nil {
				t.Error("verified against another CA")
			}
		})
	}
}
