package leak

import (
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
)

// Links returns the names of the network links in this process's network
// namespace, to compare with NewLinks later.
func Links() (map[string]bool, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := make(map[string]bool, len(links))
	for _, l := range links {
		names[l.Attrs().Name] = true
	}
	return names, nil
}

// NewLinks returns, sorted, the links present now that were not in before:
// taps, veths and bridges someone made and did not remove.
func NewLinks(before map[string]bool) ([]string, error) {
	now, err := Links()
	if err != nil {
		return nil, err
	}
	var added []string
	for name := range now {
		if !before[name] {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	return added, nil
}
