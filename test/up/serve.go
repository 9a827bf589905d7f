package up

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/feather-edge/feather/test/harness"
)

// NodeName is the name of the demo cluster's Feather node.
const NodeName = "feather-up"

// agentNamespace is the containerd namespace the agent runs pods in.
const agentNamespace = "feather"

// serve owns the cluster: it starts it with the harness, runs the demo
// Deployments, writes the ready file, and on SIGTERM or SIGINT deletes the
// pods (so that the agent tears down their containers, network namespaces
// and volumes) and closes the harness Env, which stops every component and
// sweeps whatever is left. It returns the exit code: 1 if stopping found a
// leak. A failure on the way up exits 1 through harness.Program.Fatalf.
func serve(st State) int {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	signal.Ignore(syscall.SIGHUP)
	r := &harness.Program{Logf: logf, Exit: os.Exit, Fail: func(msg string) { _ = st.write(errorFile, msg+"\n") }}

	// The harness's steps cannot be interrupted: a signal that comes while
	// one runs is acted on when it returns.
	env := harness.New(r)
	if err := st.write(envFile, env.Dir); err != nil {
		r.Fatalf("state: %v", err)
	}
	logf("starting the control plane, Feather's snapshotter, containerd, a registry and the agent in %s", env.Dir)
	c := env.StartCluster(harness.ClusterOptions{Services: true, Metrics: true, Agent: harness.AgentOptions{Name: NodeName,
		// A long-lived cluster: the harness's debug level logs every sync.
		Args: []string{"--log-level", "info"}}})
	logf("node %s is Ready at %s (unikernels on the feather snapshotter); kube-proxy, CoreDNS (Service kube-system/kube-dns, %s) and metrics-server (kubectl top) run; RuntimeClass osv created; images pushed to the registry at %s",
		NodeName, c.Agent.Address.IP, harness.ClusterDNSIP, c.Registry.Host)
	kubeconfig, err := os.ReadFile(c.ControlPlane.AdminKubeconfig)
	if err == nil {
		err = st.write(kubeconfigFile, string(kubeconfig))
	}
	if err != nil {
		r.Fatalf("kubeconfig: %v", err)
	}
	if ctx.Err() == nil {
		if err := deploy(ctx, c, logf); err != nil && ctx.Err() == nil {
			// The pods go first, so that the agent tears them down in
			// order before the harness stops it.
			if derr := drain(c, logf); derr != nil {
				logf("%v", derr)
			}
			r.Fatalf("%v", err)
		}
	}
	if ctx.Err() == nil {
		if err := st.write(readyFile, "ready\n"); err != nil {
			r.Fatalf("state: %v", err)
		}
		logf("ready: the cluster runs until `make down`")
		<-ctx.Done()
	}
	logf("stopping: deleting the pods on %s", NodeName)
	if err := drain(c, logf); err != nil {
		r.Errorf("%v", err)
	}
	logf("stopping the agent, the registry, containerd, the snapshotter and the control plane")
	errs := r.Finish()
	result := "ok"
	if errs != "" {
		result = errs
	}
	if err := st.write(resultFile, result+"\n"); err != nil {
		logf("state: %v", err)
	}
	if errs != "" {
		logf("stopped, with errors")
		return 1
	}
	logf("stopped; nothing left behind")
	return 0
}

// demoPort is the port the demo pods and their Services serve HTTP on.
const demoPort = 8080

// The demo Deployments: containers (busybox under runc) and a unikernel
// (the test guest under the OSv runtime, through RuntimeClass osv), each
// serving HTTP on demoPort.
func demoDeployments(c *harness.Cluster) []*appsv1.Deployment {
	hello := harness.PodSpec(corev1.Container{Name: "hello", Image: c.Busybox,
		Command: []string{"sh", "-c", `echo "hello from $POD_NAME, a container run by runc"
mkdir -p /www && echo "hello from $POD_NAME" >/www/index.html && exec httpd -f -p 8080 -h /www`},
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}})
	uk := harness.PodSpec(corev1.Container{Name: "httpd", Image: c.Unikernel, Args: []string{"/httpd", "8080"}})
	osv := "osv"
	uk.RuntimeClassName = &osv
	return []*appsv1.Deployment{
		harness.Deployment("hello-container", 2, hello),
		harness.Deployment("hello-unikernel", 1, uk),
	}
}

// demoService is a ClusterIP Service in front of Deployment d's pods, on
// demoPort.
func demoService(d *appsv1.Deployment) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name},
		Spec: corev1.ServiceSpec{Selector: d.Spec.Selector.MatchLabels,
			Ports: []corev1.ServicePort{{Name: "http", Port: demoPort, TargetPort: intstr.FromInt32(demoPort)}}},
	}
}

// deploy creates the demo Deployments and their Services and waits until
// they are Available and every pod of theirs has logged something.
func deploy(ctx context.Context, c *harness.Cluster, logf func(string, ...any)) error {
	deps := demoDeployments(c)
	var names []string
	for _, d := range deps {
		if _, err := c.Kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Deployment %s: %w", d.Name, err)
		}
		if _, err := c.Kube.CoreV1().Services("default").Create(ctx, demoService(d), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Service %s: %w", d.Name, err)
		}
		names = append(names, d.Name)
	}
	logf("created Deployments %s; waiting until they are Available", strings.Join(names, ", "))
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var waiting []string
		for _, d := range deps {
			got, err := c.Kube.AppsV1().Deployments("default").Get(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if got.Status.AvailableReplicas != *d.Spec.Replicas {
				waiting = append(waiting, fmt.Sprintf("%s %d/%d", d.Name, got.Status.AvailableReplicas, *d.Spec.Replicas))
			}
		}
		last = strings.Join(waiting, ", ")
		return len(waiting) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("Deployments not Available: %w (%s)", err, last)
	}
	logf("Deployments Available; waiting for their pods' first log lines")
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var quiet []string
		for _, p := range pods.Items {
			b, err := c.Kube.CoreV1().Pods("default").GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil || len(b) == 0 {
				quiet = append(quiet, p.Name)
			}
		}
		last = strings.Join(quiet, ", ")
		return len(quiet) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("pods logged nothing: %w (%s)", err, last)
	}
	return checkServices(ctx, c, deps, logf)
}

// clientPod is a pod that fetches each demo Service by its DNS name, as a
// user's client would, and prints what answered.
func clientPod(c *harness.Cluster, deps []*appsv1.Deployment) *corev1.Pod {
	var urls []string
	for _, d := range deps {
		urls = append(urls, fmt.Sprintf("http://%s.default.svc.%s:%d/", d.Name, harness.ClusterDomain, demoPort))
	}
	// A fresh Service's rules and endpoints take a moment to reach
	// kube-proxy: each URL is tried for up to a minute. (Not wget -T: the
	// wget of Debian 12's busybox-static crashes with it.)
	script := `for url in ` + strings.Join(urls, " ") + `; do
  i=0
  until out=$(timeout 5 wget -q -O - "$url"); do
    i=$((i+1)); [ $i -lt 60 ] || { echo "$url: no answer"; exit 1; }; sleep 1
  done
  echo "$url -> $out"
done`
	spec := harness.PodSpec(corev1.Container{Name: "wget", Image: c.Busybox, Command: []string{"sh", "-c", script}})
	spec.RestartPolicy = corev1.RestartPolicyNever
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: clientPodName}, Spec: spec}
}

// clientPodName is the pod that checks the Services.
const clientPodName = "hello-client"

// checkServices runs clientPod and waits until it has succeeded: the
// Services answer by name through the cluster DNS and kube-proxy.
func checkServices(ctx context.Context, c *harness.Cluster, deps []*appsv1.Deployment, logf func(string, ...any)) error {
	pods := c.Kube.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, clientPod(c, deps), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s: %w", clientPodName, err)
	}
	logf("pod %s fetches the Services by their DNS names", clientPodName)
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, clientPodName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err == nil && phase == corev1.PodSucceeded {
		return nil
	}
	b, _ := pods.GetLogs(clientPodName, &corev1.PodLogOptions{}).DoRaw(ctx)
	return fmt.Errorf("the Services did not answer pod %s by DNS name (phase %s, %v): %s", clientPodName, phase, err, strings.TrimSpace(string(b)))
}

// drain cordons the node — pods that a controller recreates stay Pending
// instead of starting again — deletes the Deployments and Services in
// namespace default and every pod on the node, and waits until the agent has removed them and
// their containerd containers.
func drain(c *harness.Cluster, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Kube.CoreV1().Nodes().Patch(ctx, NodeName, types.StrategicMergePatchType,
		[]byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cordon %s: %w", NodeName, err)
	}
	bg := metav1.DeletePropagationBackground
	if err := c.Kube.AppsV1().Deployments("default").DeleteCollection(ctx,
		metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete Deployments: %w", err)
	}
	for _, d := range demoDeployments(c) {
		_ = c.Kube.CoreV1().Services("default").Delete(ctx, d.Name, metav1.DeleteOptions{})
	}
	onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=" + NodeName}
	var last string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, onNode)
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = c.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		}
		ctrs, err := c.Containerd.Client().Containers(namespaces.WithNamespace(ctx, agentNamespace))
		if err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%d pods, %d containerd containers", len(pods.Items), len(ctrs))
		return len(pods.Items) == 0 && len(ctrs) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the agent did not remove the pods on %s within 2 minutes (left: %s); stopping anyway", NodeName, last)
	}
	logf("pods and their containers removed")
	return nil
}
