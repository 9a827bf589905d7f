package podnet

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/feather-edge/feather/shim-osv/netns"

	"github.com/feather-edge/feather/internal/prereq"
)

func TestEnsureRemove(t *testing.T) {
	prereq.Root(t)
	m := &Manager{Dir: t.TempDir()}
	p, err := m.Ensure("pod-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove("pod-1") })
	if p2, err := m.Ensure("pod-1"); err != nil || p2 != p {
		t.Fatalf("second Ensure = %q, %v", p2, err)
	}
	var names []string
	err = netns.Do(p, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().Flags&1 != 0 { // up
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "lo" {
		t.Errorf("links up in the pod namespace = %v, want [lo]", names)
	}
	if uids, _ := m.List(); len(uids) != 1 || uids[0] != "pod-1" {
		t.Errorf("List = %v", uids)
	}
	if err := m.Remove("pod-1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("pod-1"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("netns file still there: %v", err)
	}
}
