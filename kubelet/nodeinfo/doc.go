// Package nodeinfo describes the Feather node to Kubernetes: what it is, what it offers and how it is doing.
//
// It has four parts:
//
//   - Monitor measures the host: CPUs and memory (cgroup v1, v2 or hybrid aware), pod slots, ephemeral storage,
//     and the pressure signals (available memory, free disk, free PIDs) that drive the node conditions.
//   - Build and Update make the *corev1.Node the agent registers: labels (including feather.dev/backends), the
//     default taint, addresses, nodeInfo, capacity, allocatable and conditions, as the kubelet reports them.
//   - Admit is the kubelet's admission check: a pod whose requests do not fit in what is left of allocatable is
//     rejected with the kubelet's reason ("OutOfmemory", …) and message.
//   - Provider implements virtual-kubelet's node.NodeProvider: it re-measures the node every Interval and hands
//     virtual-kubelet a new node whenever capacity, addresses or conditions change.
//
// Wiring it into virtual-kubelet's nodeutil, with pods the agent's pod lifecycle provider:
//
//	m := nodeinfo.NewMonitor("/var/lib/feather")
//	np, err := nodeinfo.NewProvider(ctx, nodeinfo.Config{
//		Name:              "feather-1",
//		Backends:          []string{"container", "osv"},
//		ContainerdVersion: version.Version,
//	}, m, nodeinfo.ProviderConfig{RuntimeCheck: func(ctx context.Context) error {
//		_, err := client.Version(ctx)
//		return err
//	}})
//	…
//	vk, err := nodeutil.NewNode("feather-1",
//		func(nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) { return pods, np, nil },
//		func(c *nodeutil.NodeConfig) error { c.NodeSpec = *np.Node(); return nil })
//
// and, before starting a pod, the kubelet's admission check:
//
//	if err := nodeinfo.Admit(pod, running, np.Allocatable()); err != nil {
//		var ae *nodeinfo.AdmitError
//		if errors.As(err, &ae) {
//			pod.Status = ae.PodStatus() // and a Warning event with ae.Reason, ae.Error()
//		}
//	}
//
// Labels are chosen so that a node identity (system:node:<name>) may set them: NodeRestriction forbids
// kubernetes.io/role and node-role.kubernetes.io/*, so Build never sets them and refuses them in Config.Labels.
package nodeinfo
