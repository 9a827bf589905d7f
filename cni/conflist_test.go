package cni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestDefaultConflist(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       DefaultNetwork
		want    []string // substrings of the JSON
		wantErr string
	}{
		{name: "defaults", n: DefaultNetwork{Subnets: []string{"10.244.0.0/24"}},
			want: []string{`"cniVersion": "1.0.0"`, `"name": "feather"`, `"bridge": "feather0"`, `"subnet": "10.244.0.0/24"`,
				`"dst": "0.0.0.0/0"`, `"type": "portmap"`, `"portMappings": true`, `"type": "loopback"`, `"ipMasq": true`, `"hairpinMode": true`}},
		{name: "dual stack, data dir, mtu", n: DefaultNetwork{Name: "n", Bridge: "br1", Subnets: []string{"10.1.0.0/16", "fd00:1::/64"}, DataDir: "/var/x", MTU: 1400},
			want: []string{`"subnet": "fd00:1::/64"`, `"dst": "::/0"`, `"dataDir": "/var/x"`, `"mtu": 1400`, `"bridge": "br1"`}},
		{name: "no subnet", n: DefaultNetwork{}, wantErr: "no pod CIDR"},
		{name: "bad subnet", n: DefaultNetwork{Subnets: []string{"10.0.0.300/24"}}, wantErr: `pod CIDR "10.0.0.300/24"`},
		{name: "host bits", n: DefaultNetwork{Subnets: []string{"10.0.0.5/24"}}, wantErr: "host bits set (want 10.0.0.0/24)"},
		{name: "two IPv4", n: DefaultNetwork{Subnets: []string{"10.0.0.0/24", "10.1.0.0/24"}}, wantErr: "at most one IPv4 and one IPv6"},
		{name: "too small", n: DefaultNetwork{Subnets: []string{"10.0.0.0/31"}}, wantErr: "too small"},
		{name: "long bridge", n: DefaultNetwork{Bridge: "a-bridge-name-too-long", Subnets: []string{"10.0.0.0/24"}}, wantErr: "at most 15 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.n.Conflist()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Conflist = %v, want error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("conflist lacks %s:\n%s", w, b)
				}
			}
			list, err := libcni.NetworkConfFromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, p := range list.Plugins {
				types = append(types, p.Network.Type)
			}
			if !slices.Equal(types, []string{"bridge", "portmap", "loopback"}) {
				t.Errorf("plugins = %v", types)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestInstallDefault(t *testing.T) {
	n := DefaultNetwork{Subnets: []string{"10.244.0.0/24"}}
	dir := filepath.Join(t.TempDir(), "net.d")
	if wrote, err := InstallDefault(dir, n); err != nil || !wrote {
		t.Fatalf("InstallDefault into a missing dir = %v, %v", wrote, err)
	}
	files, _ := ConfFiles(dir)
	if len(files) != 1 || filepath.Base(files[0]) != DefaultFile {
		t.Fatalf("files = %v", files)
	}
	if wrote, err := InstallDefault(dir, n); err != nil || wrote {
		t.Errorf("second InstallDefault = %v, %v; want nothing written", wrote, err)
	}

	// A user's configuration is used as it is.
	user := t.TempDir()
	for _, f := range []string{"99-z.conf", "50-mine.conflist", "README", "05-a.json"} {
		os.WriteFile(filepath.Join(user, f), []byte("{}"), 0o644)
	}
	os.Mkdir(filepath.Join(user, "00-dir.conflist"), 0o755)
	if wrote, err := InstallDefault(user, n); err != nil || wrote {
		t.Errorf("InstallDefault beside a user's configuration = %v, %v", wrote, err)
	}
	files, _ = ConfFiles(user)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if !slices.Equal(names, []string{"05-a.json", "50-mine.conflist", "99-z.conf"}) {
		t.Errorf("ConfFiles = %v", names)
	}
}
