package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// AgentOptions configures StartAgent.
type AgentOptions struct {
	// Name is the node's name (default "feather-e2e").
	Name string
	// Args are extra command-line flags for the agent.
	Args []string
	// Address is the node's InternalIP (--node-ip); nil makes a NodeAddress
	// of its own for the agent.
	Address *NodeAddress
}

// Agent is a running Feather agent (bin/feather) registered as a node of a
// harness control plane and driving a harness containerd.
type Agent struct {
	// Name is its node's name; Dir holds its logs, state and run dirs.
	Name, Dir string
	// Port is its kubelet API port on 127.0.0.1.
	Port int
	// Network is its pod network, which no other agent shares.
	Network *AgentNetwork
	// Address is its node's InternalIP, on a link of its own.
	Address *NodeAddress

	env  *Env
	argv []string
	proc *Process
}

// StartAgent starts the agent with the node identity system:node:NAME and
// InternalIP opts.Address (a NodeAddress of its own by default), approves its kubelet-serving CSRs as a cluster admin would, and
// returns once its Node is Ready. It fails the test if that does not happen.
func (e *Env) StartAgent(cp *ControlPlane, ctrd *Containerd, opts AgentOptions) *Agent {
	e.t.Helper()
	bin := RequiresBin(e.t, "feather")
	if opts.Name == "" {
		opts.Name = "feather-e2e"
	}
	kubeconfig, err := cp.NodeKubeconfig(opts.Name)
	if err != nil {
		e.t.Fatalf("harness: agent: %v", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		e.t.Fatalf("harness: agent: %v", err)
	}
	if opts.Address == nil {
		opts.Address = e.NodeAddress()
	}
	a := &Agent{Name: opts.Name, Dir: filepath.Join(e.Dir, "agent-"+opts.Name), Port: ports[0], Address: opts.Address, env: e}
	if a.Network, err = newAgentNetwork(filepath.Join(a.Dir, "cni", "net.d")); err != nil {
		e.t.Fatalf("harness: agent: %v", err)
	}
	a.argv = append([]string{bin,
		"--kubeconfig", kubeconfig, "--node-name", opts.Name, "--node-ip", opts.Address.IP.String(),
		"--port", strconv.Itoa(a.Port), "--containerd", ctrd.Address,
		"--log-dir", filepath.Join(a.Dir, "logs"), "--state-dir", filepath.Join(a.Dir, "state"),
		"--run-dir", filepath.Join(a.Dir, "run"), "--image-fs-dir", filepath.Join(ctrd.Dir, "root"),
		"--log-level", "debug"}, a.Network.args()...)
	a.argv = append(a.argv, opts.Args...)
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		e.t.Fatalf("harness: agent: %v", err)
	}
	// After the agent has stopped (onClose runs in reverse): its bridge and
	// whatever pods it did not delete left in iptables.
	e.onClose(a.Network.remove)
	e.onClose(func() error {
		if a.proc != nil {
			a.proc.Stop(10 * time.Second)
		}
		return nil
	})
	admin := kubernetes.NewForConfigOrDie(cp.Admin)
	ctx, cancel := context.WithCancel(context.Background())
	e.onClose(func() error { cancel(); return nil })
	go approveServingCSRs(ctx, admin, opts.Name)

	if err := a.Start(); err != nil {
		e.t.Fatalf("harness: %v", err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), readyTimeout)
	defer rcancel()
	err = a.proc.waitReady(rctx, func(ctx context.Context) error {
		n, err := admin.CoreV1().Nodes().Get(ctx, opts.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready", opts.Name)
	})
	if err == nil {
		// The Node is Ready before its kubelet-serving CSR is approved, as
		// kubelet's is; until the agent has the certificate, the API
		// server's calls to the kubelet API (logs, exec) fail their TLS
		// handshake. Tests begin once it serves.
		err = a.proc.waitReady(rctx, func(ctx context.Context) error {
			d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // only whether a certificate is served
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.Address.IP.String(), strconv.Itoa(a.Port)))
			if err != nil {
				return fmt.Errorf("kubelet API not serving yet: %w", err)
			}
			return conn.Close()
		})
	}
	if err != nil {
		e.t.Fatalf("harness: agent: %v", err)
	}
	return a
}

// Start starts the agent process (again, after Kill).
func (a *Agent) Start() error {
	p, err := startProcess("feather", filepath.Join(a.Dir, "feather.log"), nil, a.argv...)
	if err != nil {
		return err
	}
	a.proc = p
	return nil
}

// Kill kills the agent with SIGKILL, as a crash would, and waits for it to
// be gone; its pods' containers keep running.
func (a *Agent) Kill() {
	_ = a.proc.cmd.Process.Kill()
	<-a.proc.Exited()
}

// LogFile is the path of the agent's log.
func (a *Agent) LogFile() string { return a.proc.Log }

// Log returns the last n lines of the agent's log.
func (a *Agent) Log(n int) string { return a.proc.Tail(n) }

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.proc.Pid() }

// approveServingCSRs approves node's kubelet-serving CSRs until ctx ends:
// they are not auto-approved, and the kubelet API needs the certificate.
func approveServingCSRs(ctx context.Context, admin kubernetes.Interface, node string) {
	for ctx.Err() == nil {
		list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, csr := range list.Items {
				if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || csr.Spec.Username != "system:node:"+node || len(csr.Status.Conditions) > 0 {
					continue
				}
				csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
					Reason: "HarnessApproved", Message: "approved by the test harness"})
				_, _ = admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond): // polling the API as an approver controller's resync would
		}
	}
}
