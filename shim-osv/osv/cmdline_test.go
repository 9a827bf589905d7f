package osv

import (
	"net"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCmdline(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.88.0.0/16")
	addr := &net.IPNet{IP: net.ParseIP("10.88.0.7"), Mask: subnet.Mask}
	for _, tc := range []struct {
		name    string
		c       Cmdline
		want    string
		invalid bool
	}{
		{"plain", Cmdline{Args: []string{"/hello"}}, "/hello", false},
		{"args grouped", Cmdline{Args: []string{"/args", "x", "y z", "", "a;b", "it's"}},
			`/args x "y z" "" "a;b" "it's"`, false},
		{"env cwd verbose", Cmdline{Args: []string{"/args"}, Env: []string{"PATH=/", "A=b c"}, Cwd: "/tmp", Verbose: true},
			`--verbose --env=PATH=/ "--env=A=b c" --cwd=/tmp /args`, false},
		{"root cwd omitted", Cmdline{Args: []string{"/x"}, Cwd: "/"}, "/x", false},
		{"mounts", Cmdline{Args: []string{"/ls", "/data"}, Mounts: []Mount{{0, "/data"}, {1, "/etc/config"}}},
			"--mount-fs=virtiofs,/dev/virtiofs0,/data --mount-fs=virtiofs,/dev/virtiofs1,/etc/config /ls /data", false},
		{"network", Cmdline{Args: []string{"/httpd", "8080"}, Network: &Network{Interface: "eth0", Addr: addr,
			Gateway: net.ParseIP("10.88.0.1"), Nameservers: []net.IP{net.ParseIP("10.96.0.10")}}},
			"--ip=eth0,10.88.0.7,255.255.0.0 --defaultgw=10.88.0.1 --nameserver=10.96.0.10 /httpd 8080", false},
		{"no args", Cmdline{}, "", true},
		{"double quote", Cmdline{Args: []string{`say "hi"`}}, "", true},
		{"newline in env", Cmdline{Args: []string{"/x"}, Env: []string{"A=1\n2"}}, "", true},
		{"env without =", Cmdline{Args: []string{"/x"}, Env: []string{"NOVALUE"}}, "", true},
		{"comma in mount", Cmdline{Args: []string{"/x"}, Mounts: []Mount{{0, "/a,b"}}}, "", true},
		{"ipv6", Cmdline{Args: []string{"/x"}, Network: &Network{Interface: "eth0",
			Addr: &net.IPNet{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(64, 128)}}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.String()
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("String() = %q, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("String() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckLength(t *testing.T) {
	if err := CheckLength(strings.Repeat("a", MaxDirect), MaxDirect); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := CheckLength(strings.Repeat("a", MaxDirect+1), MaxDirect)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "3648 bytes") {
		t.Errorf("over the limit: %v", err)
	}
}
