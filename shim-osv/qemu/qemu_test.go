package qemu

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestArgs compares QEMU's argv for typical VMs with golden files, one
// argument a line.
func TestArgs(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:58:00:07")
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"disk-boot-tcg", Config{Name: "feather-c1", Accel: TCG, MemoryMiB: 256, CPUs: 1,
			Disk: "/run/b/c1/disk.qcow2", QMP: "/run/b/c1/qmp.sock", FirmwareLog: "firmware.log"}},
		{"direct-boot-kvm-shares-net", Config{Name: "feather-c2", Accel: KVM, MemoryMiB: 64, CPUs: 2,
			Disk: "/run/b/c2/disk.qcow2", QMP: "/run/b/c2/qmp.sock", StatsQMP: "/run/b/c2/qmp-stats.sock",
			Kernel: "/run/b/c2/rootfs/feather/kernel", Initrd: "/run/b/c2/rootfs/feather/initrd",
			Append: `--env=A=1 /args "x y"`,
			Shares: []string{"/run/b/c2/fs0.sock", "/run/b/c2/fs,1.sock"}, Tap: "tap0123456789ab", MAC: mac}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.c.Args()
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(args, "\n") + "\n"
			golden := filepath.Join("testdata", tc.name+".argv")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s (run with -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestArgsInvalid(t *testing.T) {
	ok := Config{Name: "x", Accel: TCG, MemoryMiB: 16, CPUs: 1, Disk: "/d", QMP: "/q"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no memory", func(c *Config) { c.MemoryMiB = 0 }},
		{"no cpus", func(c *Config) { c.CPUs = 0 }},
		{"no disk", func(c *Config) { c.Disk = "" }},
		{"unknown accel", func(c *Config) { c.Accel = "hvf" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if _, err := c.Args(); err == nil {
				t.Error("Args accepted it")
			}
		})
	}
}
