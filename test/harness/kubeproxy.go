package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// KubeProxy is kube-proxy (built by `make deps` with the control plane) in
// iptables mode, programming Services into this host's network namespace
// for the node it names — the host the agent's pods run on.
//
// It owns the host's KUBE-* iptables chains: only one may run on a host at
// a time, so no other Env (nor `make up`) may run one meanwhile. Close stops
// it and runs `kube-proxy --cleanup` to remove its rules.
type KubeProxy struct {
	// Dir holds its log.
	Dir  string
	proc *Process
	bin  string
}

// StartKubeProxy starts kube-proxy for node with the pods' CIDR and returns
// once its /healthz answers (it has synced its rules). It fails t if not.
func (e *Env) StartKubeProxy(cp *ControlPlane, node, clusterCIDR string) *KubeProxy {
	e.t.Helper()
	bin := RequiresBin(e.t, "kube-proxy")
	k := &KubeProxy{Dir: filepath.Join(e.Dir, "kube-proxy"), bin: bin}
	e.onClose(k.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := k.start(ctx, cp, node, clusterCIDR); err != nil {
		e.t.Fatalf("harness: kube-proxy: %v", err)
	}
	return k
}

func (k *KubeProxy) start(ctx context.Context, cp *ControlPlane, node, clusterCIDR string) error {
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	health := hostPort(ports[0])
	args := map[string]string{
		"kubeconfig":           cp.AdminKubeconfig,
		"hostname-override":    node,
		"proxy-mode":           "iptables",
		"cluster-cidr":         clusterCIDR,
		"healthz-bind-address": health,
		"metrics-bind-address": hostPort(ports[1]),
		// Leave the host's conntrack and localhost settings as they are.
		"conntrack-max-per-core":            "0",
		"conntrack-tcp-timeout-established": "0",
		"conntrack-tcp-timeout-close-wait":  "0",
		"iptables-localhost-nodeports":      "false",
	}
	k.proc, err = startProcess("kube-proxy", filepath.Join(k.Dir, "kube-proxy.log"), nil, append([]string{k.bin}, flags(args)...)...)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Second}
	return k.proc.waitReady(ctx, httpOK(c, "http://"+health+"/healthz"))
}

// stop ends kube-proxy and removes the rules it wrote.
func (k *KubeProxy) stop() error {
	if k.proc != nil {
		k.proc.Stop(5 * time.Second)
	}
	out, err := exec.Command(k.bin, "--cleanup", "--proxy-mode=iptables").CombinedOutput()
	if err != nil {
		return fmt.Errorf("kube-proxy --cleanup: %v: %s", err, out)
	}
	return nil
}
