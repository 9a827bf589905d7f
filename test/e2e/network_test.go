package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/vishvananda/netlink"

	"github.com/feather-edge/feather/shim-osv/netns"
	"github.com/feather-edge/feather/test/harness"
)

// netPair is what TestOSvNetwork builds: a "client" namespace standing for
// the test and a "pod" namespace standing for what CNI would give a pod,
// joined by a veth pair with addresses on one /24.
type netPair struct {
	client, pod     string // bind-mounted namespace paths
	clientIP, podIP string
}

// newNetPair creates the two namespaces with `ip netns` and removes them when
// the test ends.
func newNetPair(t *testing.T) netPair {
	t.Helper()
	_, err := exec.LookPath("ip")
	harness.Prerequisite(t, err == nil, "ip (iproute2) not found: run `make deps`")
	base := fmt.Sprintf("feather-e2e-%d", os.Getpid())
	p := netPair{
		client:   filepath.Join("/var/run/netns", base+"-client"),
		pod:      filepath.Join("/var/run/netns", base+"-pod"),
		clientIP: "10.99.77.1",
		podIP:    "10.99.77.2",
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, n := range []string{p.client, p.pod} {
		name := filepath.Base(n)
		ip("netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	c, pod := filepath.Base(p.client), filepath.Base(p.pod)
	ip("-n", c, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod)
	ip("-n", c, "addr", "add", p.clientIP+"/24", "dev", "veth0")
	ip("-n", c, "link", "set", "veth0", "up")
	ip("-n", pod, "addr", "add", p.podIP+"/24", "dev", "eth0")
	ip("-n", pod, "link", "set", "eth0", "up")
	ip("-n", pod, "link", "set", "lo", "up")
	ip("-n", pod, "route", "add", "default", "via", p.clientIP)
	return p
}

// links lists the link names in the namespace at path.
func links(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	err := netns.Do(path, func() error {
		ls, err := netlink.LinkList()
		for _, l := range ls {
			names = append(names, l.Attrs().Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestOSvNetwork runs the guest's HTTP server in a VM placed in a network
// namespace with a configured veth, as CNI leaves a pod's, and fetches its
// page on the pod IP from the other end of the veth.
func TestOSvNetwork(t *testing.T) {
	env, ctrd := osvEnv(t)
	p := newNetPair(t)
	before := links(t, p.pod)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nctx := namespaces.WithNamespace(ctx, ns)
	for _, tc := range []struct{ name, ref string }{
		{"direct", directRef},
		{"disk", diskRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "net-" + tc.name
			if _, err := ctrd.Ctr(ctx, "-n", ns, "run", "-d", "--runtime", osvRuntime,
				"--with-ns", "network:"+p.pod, tc.ref, id, "/httpd", "8080"); err != nil {
				t.Fatal(err)
			}
			task := loadTask(nctx, t, ctrd, id)
			defer func() {
				task.Kill(nctx, 9)
				if st, err := task.Wait(nctx); err == nil {
					<-st
				}
				if _, err := task.Delete(nctx); err != nil {
					t.Errorf("delete task: %v", err)
				}
				if _, err := ctrd.Ctr(ctx, "-n", ns, "container", "delete", id); err != nil {
					t.Errorf("delete container: %v", err)
				}
				if got := links(t, p.pod); strings.Join(got, ",") != strings.Join(before, ",") {
					t.Errorf("links in the pod namespace after delete: %v, want %v", got, before)
				}
			}()

			if got := links(t, p.pod); len(got) != len(before)+1 {
				t.Errorf("links in the pod namespace while the VM runs: %v, want a tap beside %v", got, before)
			}
			gctx, gcancel := context.WithTimeout(ctx, time.Minute)
			defer gcancel()
			body, err := getFrom(gctx, p.client, "http://"+net.JoinHostPort(p.podIP, "8080")+"/")
			if err != nil {
				t.Fatal(err)
			}
			if body != "hello from feather guest\n" {
				t.Errorf("GET / = %q", body)
			}
		})
	}
	assertNoLeaks(t, env)
}

// getFrom fetches url from inside the namespace at nsPath, retrying until
// the guest answers or ctx ends (the guest boots meanwhile).
func getFrom(ctx context.Context, nsPath, url string) (string, error) {
	// A socket belongs to the namespace it was created in: dial on a thread
	// inside nsPath, then use the connection from anywhere.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := netns.Do(nsPath, func() (err error) {
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var last error
	for {
		resp, err := cl.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			last = fmt.Errorf("GET %s: %s %q %v", url, resp.Status, b, err)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond): // poll interval while the guest boots
		}
	}
}
