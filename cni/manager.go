package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// DefaultBinDir is where Debian's containernetworking-plugins installs the
// plugins; DefaultConfDir where kubelet and containerd look for networks.
const (
	DefaultBinDir  = "/usr/lib/cni"
	DefaultConfDir = "/etc/cni/net.d"
)

// IfName is the pod's interface.
const IfName = "eth0"

// Config configures a Manager.
type Config struct {
	// ConfDir holds the network configurations; the lexically first
	// *.conflist, *.conf or *.json is used (default DefaultConfDir).
	ConfDir string
	// BinDirs are searched for plugin binaries (default DefaultBinDir).
	BinDirs []string
	// StateDir holds the Manager's state: libcni's cache (cache/), a record
	// of each attachment (pods/), and host-local stores the Manager may
	// garbage-collect (networks/, see DefaultNetwork.DataDir).
	StateDir string
	// Timeout bounds one ADD, CHECK or DEL of a pod (default 2 minutes).
	Timeout time.Duration
	// Exec runs plugins; nil runs the binaries (tests give a fake).
	Exec invoke.Exec
}

// Pod is what a pod is attached with.
type Pod struct {
	// UID is the pod's UID: the CNI container ID, and
	// K8S_POD_INFRA_CONTAINER_ID.
	UID string
	// Namespace and Name are passed as K8S_POD_NAMESPACE and K8S_POD_NAME.
	Namespace, Name string
	// NetNS is the path of the pod's network namespace.
	NetNS string
	// PortMappings are the pod's hostPorts, passed to plugins with the
	// portMappings capability (portmap).
	PortMappings []PortMapping
}

// PortMapping is one hostPort, as the portMappings capability carries it.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // "tcp", "udp" or "sctp"
	HostIP        string `json:"hostIP,omitempty"`
}

// Result is what attaching a pod gave it.
type Result struct {
	// Network is the network's name.
	Network string
	// IPs are the addresses of the pod's interface, in the order the
	// plugins gave them (the first is the pod's primary IP).
	IPs []net.IP
}

// NotReadyError says the network cannot take pods: no configuration, an
// invalid one, or a plugin missing or too old. It is a failed precondition
// (errdefs.IsFailedPrecondition).
type NotReadyError struct{ Err error }

func (e *NotReadyError) Error() string { return e.Err.Error() }
func (e *NotReadyError) Unwrap() error { return e.Err }

// FailedPrecondition marks it for errdefs.IsFailedPrecondition.
func (e *NotReadyError) FailedPrecondition() {}

// Manager attaches pods' network namespaces to the CNI network configured in
// ConfDir: ADD when a pod starts, CHECK when a restarted agent finds it
// attached, DEL when it goes. Each attachment is recorded under StateDir
// before its ADD, so a pod is detached with the configuration and arguments
// it was attached with, even when the configuration changed or broke since,
// and attachments of pods that went while the agent was down are found at
// start-up (Collect). Its methods may be called from any goroutine, for
// different pods at once.
type Manager struct {
	cfg Config
	cni *libcni.CNIConfig

	mu  sync.Mutex
	cur *loaded
}

// loaded is the network configuration last read, with what identifies it.
type loaded struct {
	fileKey   string // path, size and time of the file
	pluginKey string // of the plugin binaries (pluginsKey)
	list      *libcni.NetworkConfigList
	err       error
}

// New returns a Manager; it reads nothing yet.
func New(cfg Config) *Manager {
	if cfg.ConfDir == "" {
		cfg.ConfDir = DefaultConfDir
	}
	if len(cfg.BinDirs) == 0 {
		cfg.BinDirs = []string{DefaultBinDir}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Exec == nil {
		cfg.Exec = &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	}
	return &Manager{cfg: cfg, cni: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, filepath.Join(cfg.StateDir, "cache"), cfg.Exec)}
}

// NetworksDir is where a DefaultNetwork's host-local store belongs (its
// DataDir), so that Collect releases addresses leaked by a crash.
func (m *Manager) NetworksDir() string { return filepath.Join(m.cfg.StateDir, "networks") }

// Ready returns nil when pods can be attached, else a *NotReadyError saying
// why. It re-reads the configuration only when a file changed.
func (m *Manager) Ready(ctx context.Context) error {
	list, err := m.network(ctx)
	if err != nil {
		return err
	}
	if err := m.cni.GetStatusNetworkList(ctx, list); err != nil { // CNI 1.1 STATUS; a no-op before
		return &NotReadyError{fmt.Errorf("network %q: %w", list.Name, err)}
	}
	return nil
}

// network returns the configuration in use, validated: it parses and every
// plugin exists and speaks its version.
func (m *Manager) network(ctx context.Context) (*libcni.NetworkConfigList, error) {
	files, err := ConfFiles(m.cfg.ConfDir)
	if err != nil {
		return nil, &NotReadyError{err}
	}
	if len(files) == 0 {
		return nil, &NotReadyError{fmt.Errorf("no CNI network configuration in %s", m.cfg.ConfDir)}
	}
	path := files[0]
	st, err := os.Stat(path)
	if err != nil {
		return nil, &NotReadyError{err}
	}
	key := fmt.Sprintf("%s %d %d", path, st.Size(), st.ModTime().UnixNano())
	m.mu.Lock()
	cur := m.cur
	m.mu.Unlock()
	if cur != nil && cur.err == nil && cur.fileKey == key && cur.pluginKey == m.pluginsKey(cur.list) {
		return cur.list, nil
	}
	// Read again: the file or a plugin changed, or it was not ready (a
	// missing plugin may have been installed since).
	l := &loaded{fileKey: key}
	l.list, l.err = m.load(ctx, path)
	if l.err != nil {
		l.list, l.err = nil, &NotReadyError{fmt.Errorf("%s: %w", path, l.err)}
	} else {
		l.pluginKey = m.pluginsKey(l.list)
	}
	m.mu.Lock()
	if prev := m.cur; prev == nil || fmt.Sprint(prev.err) != fmt.Sprint(l.err) || prev.fileKey != l.fileKey {
		if l.err != nil {
			log.G(ctx).WithError(l.err).Warn("CNI network not ready")
		} else {
			log.G(ctx).WithField("network", l.list.Name).WithField("file", path).Info("CNI network configuration loaded")
		}
	}
	m.cur = l
	m.mu.Unlock()
	return l.list, l.err
}

// pluginsKey identifies the plugin binaries of list by path, size and time,
// so that installing or removing one is noticed without running any.
func (m *Manager) pluginsKey(list *libcni.NetworkConfigList) string {
	var b strings.Builder
	for _, p := range list.Plugins {
		path, err := m.cfg.Exec.FindInPath(p.Network.Type, m.cfg.BinDirs)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", p.Network.Type)
			continue
		}
		st, err := os.Stat(path)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", p.Network.Type)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", path, st.Size(), st.ModTime().UnixNano())
	}
	return b.String()
}

// load parses the configuration file at path and validates it.
func (m *Manager) load(ctx context.Context, path string) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	list, err := parseConf(b)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, p := range list.Plugins {
		if _, err := m.cfg.Exec.FindInPath(p.Network.Type, m.cfg.BinDirs); err != nil {
			missing = append(missing, fmt.Sprintf("%q", p.Network.Type))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("network %q: plugin %s not found in %s: install it (Debian: containernetworking-plugins) or fix the configuration",
			list.Name, strings.Join(missing, ", "), strings.Join(m.cfg.BinDirs, ":"))
	}
	if _, err := m.cni.ValidateNetworkList(ctx, list); err != nil {
		return nil, fmt.Errorf("network %q: %w", list.Name, err)
	}
	return list, nil
}

// parseConf reads a configuration list, or a single plugin's configuration
// (a .conf file) as a list of one.
func parseConf(b []byte) (*libcni.NetworkConfigList, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, ok := probe["plugins"]; ok {
		list, err := libcni.NetworkConfFromBytes(b)
		if err != nil {
			return nil, err
		}
		if len(list.Plugins) == 0 {
			return nil, fmt.Errorf("network %q has no plugins", list.Name)
		}
		return list, nil
	}
	conf, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		return nil, err
	}
	if conf.Network.Name == "" {
		return nil, errors.New("error parsing configuration: missing 'name'")
	}
	return libcni.ConfListFromConf(conf) //nolint:staticcheck // .conf files are still written by some installers
}

// Setup attaches pod to the network and returns its addresses. It is
// idempotent: a pod already attached (before an agent restart, say) is
// CHECKed and keeps its addresses; one whose CHECK fails is detached and
// attached again. A failed ADD is undone with DEL. An error that is a
// *NotReadyError means the network cannot take pods now; the pod was not
// touched.
func (m *Manager) Setup(ctx context.Context, pod Pod) (Result, error) {
	if err := checkUID(pod.UID); err != nil {
		return Result{}, err
	}
	if pod.NetNS == "" {
		return Result{}, fmt.Errorf("pod %s: no network namespace", pod.UID)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	if rec, err := m.readRecord(pod.UID); err != nil {
		return Result{}, err
	} else if rec != nil {
		if res, ok := m.recheck(ctx, pod, rec); ok {
			return res, nil
		}
	}
	list, err := m.network(ctx)
	if err != nil {
		return Result{}, err
	}
	rec := &record{Config: json.RawMessage(list.Bytes), RuntimeConf: runtimeConf(pod)}
	if err := m.writeRecord(pod.UID, rec); err != nil {
		return Result{}, err
	}
	rt := rec.rt()
	r, err := m.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		err = fmt.Errorf("add pod to network %q: %w", list.Name, err)
		if derr := m.cni.DelNetworkList(ctx, list, rt); derr != nil {
			log.G(ctx).WithError(derr).Warn("undo failed CNI ADD")
		} else {
			_ = m.removeRecord(pod.UID)
		}
		return Result{}, err
	}
	return result(list.Name, r)
}

// recheck finds whether an attachment made before (by an agent that has
// since restarted) still holds: the pod's interface has the addresses of the
// cached result. Then the pod keeps them, and the plugins' CHECK runs for
// the log only: Debian's portmap 1.1 fails CHECK on any hostPort ("could not
// check ipv6 dnat"), and attaching a running pod anew would cut it off. ok is
// false when the pod must be attached anew, after what remained of the
// attachment was detached.
func (m *Manager) recheck(ctx context.Context, pod Pod, rec *record) (Result, bool) {
	l := log.G(ctx).WithField("pod-uid", pod.UID)
	list, err := libcni.NetworkConfFromBytes(rec.Config)
	if err != nil {
		l.WithError(err).Warn("unreadable CNI attachment record: attaching anew")
		_ = m.removeRecord(pod.UID)
		return Result{}, false
	}
	rt := rec.rt()
	rt.ContainerID, rt.NetNS = pod.UID, pod.NetNS
	if cached, err := m.cni.GetNetworkListCachedResult(list, rt); err == nil && cached != nil {
		res, err := result(list.Name, cached)
		if err == nil {
			err = hasAddrs(pod.NetNS, rt.IfName, res.IPs)
		}
		if err == nil {
			if err := m.cni.CheckNetworkList(ctx, list, rt); err != nil {
				l.WithError(err).Warn("CNI CHECK failed; the pod's interface has its addresses, so it keeps them")
			}
			return res, true
		}
		l.WithError(err).Warn("the pod's network attachment is broken: detaching and attaching it anew")
	}
	// No cached result (an ADD that failed or never finished), or a broken
	// attachment: undo it.
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		l.WithError(err).Warn("CNI DEL of a broken attachment")
		return Result{}, false
	}
	_ = m.removeRecord(pod.UID)
	return Result{}, false
}

// Teardown detaches pod from the network it was attached to, releasing its
// addresses, with the configuration and arguments of its ADD. It is
// idempotent: a pod never attached, or already detached, is fine, and so is
// a network namespace that is gone (the addresses are still released), but
// DEL must run before the namespace is removed for the bridge plugin to
// remove its masquerading rule. A pod attached before this Manager kept
// records is detached from libcni's cache.
func (m *Manager) Teardown(ctx context.Context, pod Pod) error {
	if err := checkUID(pod.UID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	rec, err := m.readRecord(pod.UID)
	if err != nil {
		return err
	}
	if rec == nil {
		atts, err := m.cni.GetCachedAttachments(pod.UID)
		if err != nil {
			return err
		}
		for _, a := range atts {
			rec := &record{Config: a.Config, RuntimeConf: RuntimeConf{NetNS: a.NetNS, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}}
			if err := m.del(ctx, pod, rec); err != nil {
				return err
			}
		}
		return nil
	}
	if err := m.del(ctx, pod, rec); err != nil {
		return err
	}
	return m.removeRecord(pod.UID)
}

func (m *Manager) del(ctx context.Context, pod Pod, rec *record) error {
	list, err := libcni.NetworkConfFromBytes(rec.Config)
	if err != nil {
		return fmt.Errorf("pod %s: attachment record: %w", pod.UID, err)
	}
	rt := rec.rt()
	rt.ContainerID = pod.UID
	if pod.NetNS != "" {
		rt.NetNS = pod.NetNS
	}
	if rt.NetNS != "" && !isNetNS(rt.NetNS) {
		rt.NetNS = "" // gone: plugins then only release what they hold on the host
	}
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("remove pod %s from network %q: %w", pod.UID, list.Name, err)
	}
	return nil
}

// Collect detaches every pod not in live, as a restarted agent must for pods
// deleted while it was down, and releases host-local addresses held for such
// pods in the stores under NetworksDir (left by a crash in the middle of an
// ADD). It returns the first error after trying all.
func (m *Manager) Collect(ctx context.Context, live map[string]bool) error {
	var errs []error
	uids, err := m.recordUIDs()
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, uid := range uids {
		done[uid] = true
		if live[uid] {
			continue
		}
		log.G(ctx).WithField("pod-uid", uid).Info("detaching a pod that is gone from the CNI network")
		if err := m.Teardown(ctx, Pod{UID: uid}); err != nil {
			errs = append(errs, err)
		}
	}
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		errs = append(errs, err)
	}
	for _, a := range atts {
		if live[a.ContainerID] || done[a.ContainerID] {
			continue
		}
		done[a.ContainerID] = true
		log.G(ctx).WithField("pod-uid", a.ContainerID).Info("detaching a pod that is gone from the CNI network (libcni cache)")
		if err := m.Teardown(ctx, Pod{UID: a.ContainerID}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.collectReservations(ctx, live); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collectReservations removes host-local reservations under NetworksDir
// whose container is not live. host-local names a reservation after its
// address and writes the container ID on its first line.
func (m *Manager) collectReservations(ctx context.Context, live map[string]bool) error {
	nets, err := os.ReadDir(m.NetworksDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range nets {
		if !n.IsDir() {
			continue
		}
		dir := filepath.Join(m.NetworksDir(), n.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir() || net.ParseIP(e.Name()) == nil {
				continue
			}
			p := filepath.Join(dir, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			id, _, _ := strings.Cut(string(b), "\n")
			id = strings.TrimSpace(id)
			if live[id] {
				continue
			}
			log.G(ctx).WithField("pod-uid", id).WithField("ip", e.Name()).Info("releasing the address of a pod that is gone")
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// Attached lists the UIDs of the pods with an attachment record.
func (m *Manager) Attached() ([]string, error) { return m.recordUIDs() }

// result turns a plugin result into the pod's addresses: those of
// interfaces inside the pod's namespace, or of no named interface.
func result(network string, r types.Result) (Result, error) {
	res := Result{Network: network}
	cur, err := types100.NewResultFromResult(r)
	if err != nil {
		return res, fmt.Errorf("network %q: result: %w", network, err)
	}
	for _, ip := range cur.IPs {
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(cur.Interfaces) && cur.Interfaces[*ip.Interface].Sandbox == "" {
			continue // the host side (a bridge's gateway address)
		}
		res.IPs = append(res.IPs, ip.Address.IP)
	}
	if len(res.IPs) == 0 {
		return res, fmt.Errorf("network %q gave the pod no IP address", network)
	}
	return res, nil
}

// runtimeConf are the arguments of pod's ADD, as kubelet and containerd
// pass them.
func runtimeConf(pod Pod) RuntimeConf {
	rc := RuntimeConf{NetNS: pod.NetNS, IfName: IfName, Args: [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.UID},
		{"K8S_POD_UID", pod.UID},
	}}
	if len(pod.PortMappings) > 0 {
		pms := make([]any, 0, len(pod.PortMappings))
		for _, pm := range pod.PortMappings {
			pm.Protocol = strings.ToLower(pm.Protocol)
			if pm.Protocol == "" {
				pm.Protocol = "tcp"
			}
			b, _ := json.Marshal(pm)
			var v map[string]any
			_ = json.Unmarshal(b, &v)
			pms = append(pms, v)
		}
		rc.CapabilityArgs = map[string]any{"portMappings": pms}
	}
	return rc
}
