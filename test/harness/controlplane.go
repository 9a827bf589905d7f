package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlane is a real Kubernetes control plane: etcd, kube-apiserver,
// kube-scheduler and kube-controller-manager, as `make deps` builds them.
// The API server authorizes with Node,RBAC and admits with NodeRestriction,
// as in a production cluster, so node identities are held to their limits.
type ControlPlane struct {
	// Dir holds its certificates, kubeconfigs, etcd data and logs.
	Dir string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// Admin is a client configuration with cluster-admin rights
	// (system:masters).
	Admin *rest.Config
	// AdminKubeconfig is the path of a kubeconfig file for Admin, for kubectl.
	AdminKubeconfig string

	ca    *authority
	procs []*Process
}

// readyTimeout bounds how long any component may take to become ready.
const readyTimeout = 90 * time.Second

// StartControlPlane starts a control plane and returns once the API server's
// /readyz says ok and ServiceAccount default/default exists (pods can be
// created from then on). It fails t if that does not happen.
func (e *Env) StartControlPlane() *ControlPlane {
	e.t.Helper()
	bins := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"} {
		bins[name] = RequiresBin(e.t, name)
	}
	cp := &ControlPlane{Dir: filepath.Join(e.Dir, "kube")}
	e.onClose(cp.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := cp.start(ctx, bins); err != nil {
		e.t.Fatalf("harness: control plane: %v", err)
	}
	return cp
}

func (cp *ControlPlane) start(ctx context.Context, bins map[string]string) error {
	pki := filepath.Join(cp.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	files, err := cp.makePKI(pki)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, schedPort, cmPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	cp.URL = "https://" + hostPort(apiPort)

	etcdURL := "http://" + hostPort(etcdClient)
	peerURL := "http://" + hostPort(etcdPeer)
	etcd, err := cp.run("etcd", bins["etcd"], map[string]string{
		"name":                        "default",
		"data-dir":                    filepath.Join(cp.Dir, "etcd"),
		"listen-client-urls":          etcdURL,
		"advertise-client-urls":       etcdURL,
		"listen-peer-urls":            peerURL,
		"initial-advertise-peer-urls": peerURL,
		"initial-cluster":             "default=" + peerURL,
		"unsafe-no-fsync":             "true", // test data: durability buys nothing
		"log-level":                   "warn",
	})
	if err != nil {
		return err
	}
	if err := etcd.waitReady(ctx, httpOK(http.DefaultClient, etcdURL+"/health")); err != nil {
		return err
	}

	api, err := cp.run("kube-apiserver", bins["kube-apiserver"], map[string]string{
		"etcd-servers":                       etcdURL,
		"bind-address":                       "127.0.0.1",
		"advertise-address":                  "127.0.0.1",
		"secure-port":                        strconv.Itoa(apiPort),
		"endpoint-reconciler-type":           "none", // a 127.0.0.1 advertise address is refused otherwise
		"cert-dir":                           pki,
		"tls-cert-file":                      files["apiserver.crt"],
		"tls-private-key-file":               files["apiserver.key"],
		"client-ca-file":                     files["ca.crt"],
		"kubelet-client-certificate":         files["apiserver-kubelet-client.crt"],
		"kubelet-client-key":                 files["apiserver-kubelet-client.key"],
		"kubelet-certificate-authority":      files["ca.crt"],
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname", // as kubeadm sets it
		"service-account-key-file":           files["sa.key"],
		"service-account-signing-key-file":   files["sa.key"],
		"service-account-issuer":             "https://kubernetes.default.svc",
		"service-cluster-ip-range":           "10.96.0.0/16",
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction",
		"allow-privileged":                   "true",
		"requestheader-client-ca-file":       files["front-proxy-ca.crt"],
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"proxy-client-cert-file":             files["front-proxy-client.crt"],
		"proxy-client-key-file":              files["front-proxy-client.key"],
		// Aggregated APIs (metrics-server) run on the host behind Services
		// without kube-proxy: reach their endpoints directly.
		"enable-aggregator-routing": "true",
		"profiling":                 "false",
	})
	if err != nil {
		return err
	}
	cp.Admin, err = cp.clientConfig("admin", []string{"system:masters"})
	if err != nil {
		return err
	}
	if cp.AdminKubeconfig, err = cp.writeKubeconfig("admin", cp.Admin); err != nil {
		return err
	}
	admin, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		return err
	}
	readyz := func(ctx context.Context) error {
		b, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, b)
		}
		return nil
	}
	if err := api.waitReady(ctx, readyz); err != nil {
		return err
	}

	for _, c := range []struct {
		name, user string
		port       int
		extra      map[string]string
	}{
		{"kube-scheduler", "system:kube-scheduler", schedPort, nil},
		{"kube-controller-manager", "system:kube-controller-manager", cmPort, map[string]string{
			"service-account-private-key-file": files["sa.key"],
			"root-ca-file":                     files["ca.crt"],
			"cluster-signing-cert-file":        files["ca.crt"],
			"cluster-signing-key-file":         files["ca.key"],
			"use-service-account-credentials":  "true",
		}},
	} {
		cfg, err := cp.clientConfig(c.user, nil)
		if err != nil {
			return err
		}
		kubeconfig, err := cp.writeKubeconfig(c.name, cfg)
		if err != nil {
			return err
		}
		args := map[string]string{
			"kubeconfig":                kubeconfig,
			"authentication-kubeconfig": kubeconfig,
			"authorization-kubeconfig":  kubeconfig,
			"bind-address":              "127.0.0.1",
			"secure-port":               strconv.Itoa(c.port),
			"cert-dir":                  filepath.Join(cp.Dir, c.name),
			"leader-elect":              "false",
		}
		for k, v := range c.extra {
			args[k] = v
		}
		if _, err := cp.run(c.name, bins[c.name], args); err != nil {
			return err
		}
	}
	// The service-account controller of kube-controller-manager makes
	// default/default; until then no pod can be created in "default".
	return api.waitReady(ctx, func(ctx context.Context) error {
		_, err := admin.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// run starts one component with its flags and logs in Dir.
func (cp *ControlPlane) run(name, bin string, args map[string]string) (*Process, error) {
	p, err := startProcess(name, filepath.Join(cp.Dir, name+".log"), nil, append([]string{bin}, flags(args)...)...)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

// stop ends the components in reverse order, etcd last.
func (cp *ControlPlane) stop() error {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		cp.procs[i].Stop(10 * time.Second)
	}
	return nil
}

// makePKI writes the cluster CA, the front-proxy CA, the API server's serving
// and client certificates and the service-account key into dir, and returns
// their paths by file name.
func (cp *ControlPlane) makePKI(dir string) (map[string]string, error) {
	var err error
	if cp.ca, err = newAuthority("feather-test-ca"); err != nil {
		return nil, err
	}
	frontProxy, err := newAuthority("feather-test-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	path := func(name string) string {
		files[name] = filepath.Join(dir, name)
		return files[name]
	}
	if err := cp.ca.write(path("ca.crt"), path("ca.key")); err != nil {
		return nil, err
	}
	if err := frontProxy.write(path("front-proxy-ca.crt"), path("front-proxy-ca.key")); err != nil {
		return nil, err
	}
	for _, leaf := range []struct {
		name string
		ca   *authority
		req  certRequest
	}{
		{"apiserver", cp.ca, certRequest{cn: "kube-apiserver", hosts: []string{
			"127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "10.96.0.1"}}},
		{"apiserver-kubelet-client", cp.ca, certRequest{cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}}},
		{"front-proxy-client", frontProxy, certRequest{cn: "front-proxy-client"}},
	} {
		crt, key, err := leaf.ca.issue(leaf.req)
		if err != nil {
			return nil, err
		}
		if err := writeFiles(map[string][]byte{path(leaf.name + ".crt"): crt, path(leaf.name + ".key"): key}); err != nil {
			return nil, err
		}
	}
	sa, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	return files, writeFiles(map[string][]byte{path("sa.key"): sa})
}

// clientConfig returns a client configuration authenticating as user (the
// certificate's CN) in groups (its O).
func (cp *ControlPlane) clientConfig(user string, groups []string) (*rest.Config, error) {
	crt, key, err := cp.ca.issue(certRequest{cn: user, orgs: groups})
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host: cp.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   cp.ca.certPEM,
			CertData: crt,
			KeyData:  key,
		},
		QPS:   50,
		Burst: 100,
	}, nil
}

// NodeConfig returns a client configuration with the identity a kubelet of
// node name has: user system:node:<name> in group system:nodes. The Node
// authorizer and NodeRestriction hold it to that node's objects.
func (cp *ControlPlane) NodeConfig(name string) (*rest.Config, error) {
	return cp.clientConfig("system:node:"+name, []string{"system:nodes"})
}

// NodeKubeconfig writes a kubeconfig file with NodeConfig(name) for programs
// such as the Feather agent, and returns its path.
func (cp *ControlPlane) NodeKubeconfig(name string) (string, error) {
	cfg, err := cp.NodeConfig(name)
	if err != nil {
		return "", err
	}
	return cp.writeKubeconfig("node-"+name, cfg)
}

// writeKubeconfig stores cfg as Dir/<name>.kubeconfig, credentials inline.
func (cp *ControlPlane) writeKubeconfig(name string, cfg *rest.Config) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["feather-test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "feather-test", AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(cp.Dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", fmt.Errorf("write kubeconfig %s: %w", name, err)
	}
	return path, nil
}

// httpOK is a readiness probe that wants 200 from url.
func httpOK(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
