// Package agent wires the Feather agent together: a Kubernetes client with
// the node's identity, a containerd client, the pod provider, the node's
// status, the kubelet API, and virtual-kubelet's controllers.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/feather-edge/feather/cni"
	"github.com/feather-edge/feather/kubelet/apiauth"
	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/nodeinfo"
	"github.com/feather-edge/feather/kubelet/pods"
	"github.com/feather-edge/feather/kubelet/volumes"
)

// Version is the agent's version, reported as the node's kubeletVersion.
var Version = "v1.37.2-feather"

// Config is the agent's configuration (its command-line flags).
type Config struct {
	Kubeconfig string
	NodeName   string
	// InternalIP is the node's address; empty picks the default route's.
	InternalIP string
	// Port is the kubelet API's port.
	Port int
	// Containerd is containerd's socket; Namespace its namespace for pods.
	Containerd, Namespace string
	// Runtimes maps RuntimeClass handlers and image backends to containerd
	// runtimes.
	Runtimes map[string]string
	// Snapshotter is the containerd snapshotter of unikernel containers:
	// a name, "" for containerd's default, or SnapshotterAuto.
	Snapshotter string
	// PlainHTTP registries besides localhost.
	PlainHTTP []string
	// RegistryConfigDir holds containerd-style hosts.toml files.
	RegistryConfigDir string
	// Taints put on the node (key=value:Effect).
	Taints []corev1.Taint
	// Labels added to the node's.
	Labels map[string]string
	// LogDir, StateDir, RunDir: see pods.Config.
	LogDir, StateDir, RunDir string
	// ContainerLog bounds each container's log: kubelet's
	// containerLogMaxSize and containerLogMaxFiles.
	ContainerLog logs.Rotation
	// AllowedUnsafeSysctls: see pods.Config (kubelet's
	// --allowed-unsafe-sysctls).
	AllowedUnsafeSysctls []string
	// Workers is the number of pods virtual-kubelet syncs at once.
	Workers int
	// KubeAPIQPS and KubeAPIBurst bound the agent's requests to the API
	// server (kubelet's kubeAPIQPS and kubeAPIBurst, 50 and 100); events
	// have a limiter of their own (kubelet's eventRecordQPS and
	// eventBurst, the same). client-go's default, 5 and 10, makes pods wait
	// for one another: each start and teardown takes half a dozen requests
	// (a token, a configMap, statuses, events, the final delete).
	KubeAPIQPS   float32
	KubeAPIBurst int
	// CNIConfDir holds the pod network's CNI configuration; the agent
	// writes its default network there when it holds none. CNIBinDirs are
	// searched for plugins.
	CNIConfDir string
	CNIBinDirs []string
	// PodCIDRs, CNIBridge and CNINetwork shape the default network: its
	// subnets (one IPv4, optionally one IPv6), its host bridge and its name.
	PodCIDRs              []string
	CNIBridge, CNINetwork string
	// ClusterDNS, ClusterDomain and ResolvConf: see dns.Config.
	ClusterDNS    []string
	ClusterDomain string
	ResolvConf    string
	// ImageFsDir is on the file system that holds images and containers'
	// writable layers (containerd's root), reported as the node's imageFs.
	ImageFsDir string
	// StatsMaxAge is how long a gathering of stats serves requests.
	StatsMaxAge time.Duration
	// EnableProfiling serves Go's profiles (net/http/pprof) at
	// /debug/pprof/ on the kubelet API, as kubelet's
	// enableProfilingHandler, behind the same authentication and
	// authorisation (nodes/proxy). Off by default.
	EnableProfiling bool
}

// DefaultConfig returns the defaults of every flag.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:          host,
		Port:              10250,
		Containerd:        "/run/containerd/containerd.sock",
		Namespace:         "feather",
		Runtimes:          map[string]string{"runc": "io.containerd.runc.v2", "osv": "io.containerd.osv.v1"},
		Snapshotter:       SnapshotterAuto,
		Taints:            []corev1.Taint{{Key: "virtual-kubelet.io/provider", Value: "feather", Effect: corev1.TaintEffectNoSchedule}},
		LogDir:            "/var/log/pods",
		StateDir:          "/var/lib/feather",
		RunDir:            "/run/feather",
		ContainerLog:      logs.DefaultRotation,
		RegistryConfigDir: "/etc/feather/certs.d",
		Workers:           10,
		KubeAPIQPS:        50,
		KubeAPIBurst:      100,
		CNIConfDir:        cni.DefaultConfDir,
		CNIBinDirs:        []string{cni.DefaultBinDir},
		PodCIDRs:          []string{"10.244.0.0/16"},
		CNIBridge:         "feather0",
		CNINetwork:        "feather",
		ClusterDomain:     "cluster.local",
		ResolvConf:        "/etc/resolv.conf",
		ImageFsDir:        "/var/lib/containerd",
		StatsMaxAge:       10 * time.Second,
	}
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	// virtual-kubelet logs through its own interface (a no-op by default):
	// onto the agent's logger, so nothing it says is lost.
	vkl := vklogrus.FromLogrus(log.G(ctx))
	vklog.L = vkl
	ctx = vklog.WithLogger(ctx, vkl)
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if err := rest.LoadTLSFiles(restCfg); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if len(restCfg.CAData) == 0 {
		return fmt.Errorf("kubeconfig %s: no cluster CA (certificate-authority-data): the kubelet API verifies client certificates with it", cfg.Kubeconfig)
	}
	restCfg.QPS, restCfg.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
	kube, err := newKubeClient(restCfg)
	if err != nil {
		return err
	}
	var provider *pods.Provider
	am := newAgentMetrics(func(ctx context.Context) ([]*corev1.Pod, error) {
		if provider == nil {
			return nil, nil
		}
		return provider.GetPods(ctx)
	})
	cd, err := client.New(cfg.Containerd, client.WithDefaultNamespace(cfg.Namespace), client.WithExtraDialOpts(am.interceptors()))
	if err != nil {
		return fmt.Errorf("containerd at %s: %w", cfg.Containerd, err)
	}
	defer cd.Close()
	ver, err := cd.Version(ctx)
	if err != nil {
		return fmt.Errorf("containerd at %s: %w", cfg.Containerd, err)
	}
	vmSnapshotter, err := vmSnapshotter(ctx, cd, cfg.Snapshotter)
	if err != nil {
		return err
	}
	ip := cfg.InternalIP
	if ip == "" {
		ip = defaultIP()
	}
	logger, err := criLogger(ctx)
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.events.Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "feather", Host: cfg.NodeName})

	for _, d := range []string{cfg.StateDir, cfg.LogDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	network, err := newNetwork(ctx, cfg, ip)
	if err != nil {
		return err
	}
	mon := nodeinfo.NewMonitor(cfg.StateDir)
	var backends []string
	for h := range cfg.Runtimes {
		if h == "runc" {
			h = "container"
		}
		backends = append(backends, h)
	}
	slices.Sort(backends)
	status, err := nodeinfo.NewProvider(ctx, nodeinfo.Config{
		Name: cfg.NodeName, Labels: cfg.Labels, Taints: cfg.Taints, Backends: backends, KubeletPort: int32(cfg.Port),
		ContainerdVersion: ver.Version, KubeletVersion: Version, InternalIP: ip,
	}, mon, nodeinfo.ProviderConfig{RuntimeCheck: func(ctx context.Context) error {
		_, err := cd.Version(ctx)
		return err
	}, NetworkCheck: network.m.Ready})
	if err != nil {
		return err
	}
	admit := func(pod *corev1.Pod, running []*corev1.Pod) *pods.Rejection {
		var ae *nodeinfo.AdmitError
		if err := nodeinfo.Admit(pod, running, status.Allocatable()); errors.As(err, &ae) {
			st := ae.PodStatus()
			return &pods.Rejection{Reason: st.Reason, Message: st.Message}
		}
		return nil
	}

	// Informers: this node's pods, and services (for their environment
	// variables). ConfigMaps and secrets are read one by one: the Node
	// authorizer lets a node get those its pods use, but not list them all.
	podInformer := nodePodInformer(kube, cfg.NodeName, time.Minute)
	svcInformer := newServiceInformer(kube, time.Minute)
	getters := newGetterInformers(kube)

	vols := &volumes.Manager{
		Root: filepath.Join(cfg.StateDir, "pods"), Source: volumes.NewClientSource(kube),
		NodeName: cfg.NodeName, NodeAllocatable: status.Node().Status.Allocatable,
	}
	provider, err = pods.New(ctx, pods.Config{
		NodeName: cfg.NodeName, HostIP: ip, Namespace: cfg.Namespace, Runtimes: cfg.Runtimes, VMSnapshotter: vmSnapshotter, PlainHTTP: cfg.PlainHTTP,
		RegistryConfigDir: cfg.RegistryConfigDir, LogDir: cfg.LogDir, StateDir: cfg.StateDir, RunDir: cfg.RunDir, Logger: logger, LogRotation: cfg.ContainerLog, Admit: admit,
		Network: network, DNS: dnsConfig(cfg), ObservePull: am.pullObserved,
		TaskStarted: func(id, runtime string, pid uint32) {
			if osv := cfg.Runtimes["osv"]; osv != "" && runtime == osv && pid != 0 {
				go am.watchBoot(ctx, pid)
			}
		},
		ConfigMaps: getters.configMaps.Lister(), Services: svcInformer.Lister(),
		NodeAllocatable: status.Node().Status.Allocatable, AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls,
		PodUID: func(ns, name string) (types.UID, bool) {
			pod, err := podInformer.Lister().Pods(ns).Get(name)
			if err != nil {
				return "", false
			}
			return pod.UID, true
		},
		Finalize: func(ctx context.Context, pod *corev1.Pod) error {
			pods := kube.CoreV1().Pods(pod.Namespace)
			last := pod.DeepCopy()
			last.ResourceVersion = "" // unconditional: the agent alone writes a pod's status
			_, err := pods.UpdateStatus(ctx, last, metav1.UpdateOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("last status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			zero := int64(0)
			err = pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
				Preconditions: &metav1.Preconditions{UID: &pod.UID}})
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return nil // gone, or a new pod of that name
			}
			return err
		},
	}, cd, kube, getters.secrets.Lister(), recorder, vols)
	if err != nil {
		return err
	}
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient: podClient{kube.CoreV1(), provider.Stopping}, EventRecorder: recorder, Provider: measured{provider, am}, PodInformer: podInformer,
		SecretInformer: getters.secrets, ConfigMapInformer: getters.configMaps, ServiceInformer: svcInformer,
		// The provider makes containers' environments itself, as kubelet,
		// when it starts them: virtual-kubelet's resolution runs before the
		// pod has an IP and refuses status.podIP.
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}
	nc, err := node.NewNodeController(status, status.Node(), kube.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(kube.CoordinationV1().Leases(corev1.NamespaceNodeLease), node.DefaultLeaseDuration))
	if err != nil {
		return err
	}

	// The kubelet API (logs, exec, attach, port-forward, stats, metrics), authenticated and authorised as kubelet's:
	// client certificates of the cluster CA, or tokens, checked by the API.
	cert := &servingCert{}
	certDir := filepath.Join(cfg.StateDir, "pki")
	auth := apiauth.New(apiauth.Config{NodeName: cfg.NodeName,
		Tokens: kube.AuthenticationV1().TokenReviews(), Access: kube.AuthorizationV1().SubjectAccessReviews()})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(restCfg.CAData)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.get, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	sc := newStats(cfg, cd, provider.GetPods)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics/cadvisor", cadvisorHandler(sc))
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /metrics", am.handler())
	if cfg.EnableProfiling {
		profilingHandlers(mux)
	}
	mux.Handle("/", streamCheck(provider.CheckStream, api.PodHandler(api.PodHandlerConfig{
		RunInContainer: provider.RunInContainer, AttachToContainer: provider.AttachToContainer,
		GetContainerLogs: provider.GetContainerLogs, GetPods: provider.GetPods,
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) { return podInformer.Lister().List(labels.Everything()) },
		GetStatsSummary:       sc.Summary, GetMetricsResource: resourceMetrics(sc),
		PortForward: provider.PortForward,
	}, true)))
	ln, err := tls.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)), tlsCfg)
	if err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	srv := &http.Server{Handler: auth.Wrap(mux), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close below
	defer srv.Close()
	go func() {
		if cert.load(certDir) {
			return
		}
		for ctx.Err() == nil {
			err := cert.request(ctx, kube, certDir, cfg.NodeName, []net.IP{net.ParseIP(ip)})
			if err == nil {
				return
			}
			log.G(ctx).WithError(err).Warn("serving certificate")
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go podInformer.Run(ctx.Done())
	go svcInformer.Run(ctx.Done())
	// Services' environment variables, KUBERNETES_SERVICE_HOST above all,
	// need the services read once before pods start, as kubelet waits.
	if !cache.WaitForCacheSync(ctx.Done(), svcInformer.HasSynced) {
		return ctx.Err()
	}
	go pc.Run(ctx, cfg.Workers) //nolint:errcheck // its error comes through Done/Err
	select {
	case <-pc.Ready():
	case <-pc.Done():
		return pc.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	go nc.Run(ctx) //nolint:errcheck // its error comes through Done/Err
	log.G(ctx).WithField("node", cfg.NodeName).WithField("containerd", ver.Version).Info("Feather agent running")
	select {
	case <-ctx.Done():
		<-pc.Done()
		return nil
	case <-pc.Done():
		return pc.Err()
	case <-nc.Done():
		return nc.Err()
	}
}

// criLogger returns the containerd logging binary of the pods' containers:
// feather-cri-log next to the agent's executable or, failing that, the agent
// itself (`feather cri-log`), whose every copy maps far more memory.
func criLogger(ctx context.Context) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "feather-cri-log")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	log.G(ctx).Warnf("%s not found: containers' loggers run the agent's own binary, which takes more memory each (install feather-cri-log next to feather)", p)
	return self, nil
}

// defaultIP returns the address of the interface holding the default route.
func defaultIP() string {
	c, err := net.Dial("udp", "192.0.2.1:9") // no packet is sent: this only picks a route
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}
