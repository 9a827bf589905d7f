package stats

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// NetnsInterfaces returns the interfaces of the network namespace mounted
// at path, loopback left out, through netlink (no thread enters it).
func NetnsInterfaces(path string) ([]statsv1alpha1.InterfaceStats, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: links: %w", path, err)
	}
	var out []statsv1alpha1.InterfaceStats
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || a.Statistics == nil {
			continue
		}
		s := a.Statistics
		out = append(out, statsv1alpha1.InterfaceStats{Name: a.Name,
			RxBytes: ptr(s.RxBytes), RxErrors: ptr(s.RxErrors), TxBytes: ptr(s.TxBytes), TxErrors: ptr(s.TxErrors)})
	}
	return out, nil
}
