package nodeinfo

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultInterval is how often a Provider measures the node unless ProviderConfig.Interval says otherwise.
const DefaultInterval = 10 * time.Second

// ProviderConfig configures a Provider.
type ProviderConfig struct {
	// Interval is how often the node is measured; 0 means DefaultInterval.
	Interval time.Duration
	// RuntimeCheck tells whether containerd answers (e.g. a Version call); nil means always healthy. It is called
	// at each measurement and from Ping, with a context that ends within Interval, and must honour it.
	RuntimeCheck func(context.Context) error
	// NetworkCheck tells whether pods can be given a network; nil means always. Called like RuntimeCheck.
	NetworkCheck func(context.Context) error
}

// Provider is the node's virtual-kubelet NodeProvider: it measures the node every Interval (and on Refresh) and
// passes virtual-kubelet a new node whenever its capacity, allocatable, addresses, nodeInfo or conditions
// change, so that virtual-kubelet updates the node's status. Its methods may be called from any goroutine.
type Provider struct {
	cfg Config
	m   *Monitor
	pc  ProviderConfig

	mu         sync.Mutex
	node       *corev1.Node  // the latest measured node
	kick       chan struct{} // closed by Refresh, then replaced
	runtimeErr error         // the last RuntimeCheck result seen by Ping
}

var _ node.NodeProvider = (*Provider)(nil)

// NewProvider checks the agent's health, builds the node (Build) and returns its Provider. It fails as Build
// does.
func NewProvider(ctx context.Context, cfg Config, m *Monitor, pc ProviderConfig) (*Provider, error) {
	if pc.Interval <= 0 {
		pc.Interval = DefaultInterval
	}
	p := &Provider{cfg: cfg, m: m, pc: pc, kick: make(chan struct{})}
	h := p.health(ctx)
	n, err := Build(cfg, m, h)
	if err != nil {
		return nil, err
	}
	p.node, p.runtimeErr = n, h.Runtime
	return p, nil
}

// Node returns a copy of the latest node: what to register (virtual-kubelet's nodeutil.NodeConfig.NodeSpec).
func (p *Provider) Node() *corev1.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node.DeepCopy()
}

// Allocatable returns the node's latest allocatable, for Admit.
func (p *Provider) Allocatable() Resources {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ResourcesFromList(p.node.Status.Allocatable)
}

// Refresh asks for a measurement now rather than at the next Interval. It does not block; several calls before
// the measurement make one.
func (p *Provider) Refresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.kick)
	p.kick = make(chan struct{})
}

// Ping is virtual-kubelet's heartbeat. It runs RuntimeCheck and, when containerd's health changed, Refresh, so the
// node turns NotReady (or Ready) at once. It returns only ctx's error: a node whose runtime is down is reported
// NotReady, as the kubelet does, rather than silenced (virtual-kubelet stops the status updates and the lease of
// a node whose Ping fails, and the node would only turn Unknown after the grace period).
func (p *Provider) Ping(ctx context.Context) error {
	if p.pc.RuntimeCheck != nil {
		err := p.pc.RuntimeCheck(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.mu.Lock()
		changed := errString(err) != errString(p.runtimeErr)
		p.runtimeErr = err
		p.mu.Unlock()
		if changed {
			p.Refresh()
		}
	}
	return ctx.Err()
}

// NotifyNodeStatus starts measuring the node every Interval, until ctx ends, and calls cb with a new node (a copy
// that cb may keep) each time its status changed since the last call. It does not block; cb is called from one
// goroutine, one call at a time, and may block. virtual-kubelet calls it once per NodeController.Run.
func (p *Provider) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	go p.run(ctx, cb)
}

func (p *Provider) run(ctx context.Context, cb func(*corev1.Node)) {
	t := time.NewTicker(p.pc.Interval)
	defer t.Stop()
	last := p.Node()
	for {
		// Take the next kick before measuring, so a Refresh during the measurement is not lost.
		p.mu.Lock()
		kick := p.kick
		p.mu.Unlock()
		if n, err := p.measure(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("measure node")
		} else if statusChanged(last, n) {
			last = n
			cb(n.DeepCopy())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// measure updates the latest node and returns a copy.
func (p *Provider) measure(ctx context.Context) (*corev1.Node, error) {
	h := p.health(ctx)
	n := p.Node()
	if err := Update(n, p.cfg, p.m, h); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.node = n.DeepCopy()
	p.mu.Unlock()
	return n, nil
}

// health runs the checks, each with a deadline of one Interval.
func (p *Provider) health(ctx context.Context) Health {
	check := func(f func(context.Context) error) error {
		if f == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, p.pc.Interval)
		defer cancel()
		return f(ctx)
	}
	return Health{Runtime: check(p.pc.RuntimeCheck), Network: check(p.pc.NetworkCheck)}
}

// statusChanged compares the parts of the status a Provider writes, ignoring condition times.
func statusChanged(a, b *corev1.Node) bool {
	strip := func(n *corev1.Node) corev1.NodeStatus {
		s := *n.Status.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
			s.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		return s
	}
	return !equality.Semantic.DeepEqual(strip(a), strip(b))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
