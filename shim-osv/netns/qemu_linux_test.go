package netns

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/internal/prereq"
)

// TestQEMUOpensTap checks that QEMU, started inside the namespace with Do as
// the shim does, can attach to the tap that Wire made (the tap's carrier goes
// up while a queue is attached).
func TestQEMUOpensTap(t *testing.T) {
	bin := prereq.Program(t, "qemu-system-x86_64", "apt-get install qemu-system-x86")
	ns := podNS(t, "10.213.7.2/24", "10.213.7.1")
	cfg, ok, err := Discover(ns)
	if err != nil || !ok {
		t.Fatalf("Discover = %v, %v", ok, err)
	}
	tap := TapName(t.Name())
	t.Cleanup(func() { Unwire(ns, cfg.Interface, tap) })
	if err := Wire(ns, cfg, tap); err != nil {
		t.Fatalf("Wire: %v", err)
	}

	carrier := func() bool {
		t.Helper()
		var up bool
		if err := Do(ns, func() error {
			l, err := netlink.LinkByName(tap)
			if err == nil {
				up = l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return up
	}
	if carrier() {
		t.Fatal("tap has carrier before anything attached to it")
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-M", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no")
	cmd.Stderr = &stderr
	if err := Do(ns, cmd.Start); err != nil {
		t.Fatalf("start qemu in netns: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("qemu pid %d not reaped", cmd.Process.Pid)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for !carrier() {
		select {
		case <-exited:
			t.Fatalf("qemu exited: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap %s has no carrier 10s after qemu started; stderr: %s", tap, stderr.String())
		}
	}
}
