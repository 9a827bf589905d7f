package vm

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPlanFromSpec(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("search x\nnameserver 10.96.0.10\nnameserver fd00::1\n"), 0o644)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	limit := int64(512 << 20)
	tiny := int64(8 << 20)
	quota, period := int64(150000), uint64(100000)
	base := func() *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Args: []string{"/app"}, Env: []string{"A=1"}, Cwd: "/"},
			Linux: &specs.Linux{CgroupsPath: "/ns/id"}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*specs.Spec)
		check func(*testing.T, Plan)
		err   error
	}{
		{"defaults", func(*specs.Spec) {}, func(t *testing.T, p Plan) {
			if p.MemoryMiB != DefaultMemoryMiB || p.CPUs != 1 || p.NetNS != "" || p.CgroupsPath != "/ns/id" {
				t.Errorf("plan = %+v", p)
			}
		}, nil},
		{"limits", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit},
				CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}
		}, func(t *testing.T, p Plan) {
			if p.MemoryMiB != 512 || p.CPUs != 2 {
				t.Errorf("memory %d MiB, %d CPUs; want 512, 2", p.MemoryMiB, p.CPUs)
			}
		}, nil},
		{"netns", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}
		}, func(t *testing.T, p Plan) {
			if p.NetNS != "/var/run/netns/x" {
				t.Errorf("netns = %q", p.NetNS)
			}
		}, nil},
		{"mounts", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{
				{Destination: "/proc", Type: "proc", Source: "proc"},
				{Destination: "/data/", Type: "bind", Source: data, Options: []string{"rbind", "ro"}},
				{Destination: "/etc/resolv.conf", Source: resolv, Options: []string{"bind"}},
				{Destination: "/etc/hosts", Source: file, Options: []string{"bind"}},
			}
		}, func(t *testing.T, p Plan) {
			if !slices.Equal(p.Shares, []Share{{data, "/data"}}) {
				t.Errorf("shares = %v", p.Shares)
			}
			if len(p.Nameservers) != 1 || !p.Nameservers[0].Equal(net.ParseIP("10.96.0.10")) {
				t.Errorf("nameservers = %v", p.Nameservers)
			}
		}, nil},
		{"cri mounts", func(s *specs.Spec) {
			// What containerd's CRI plugin adds to a pod's container.
			s.Mounts = []specs.Mount{
				{Destination: "/etc/hostname", Type: "bind", Source: file, Options: []string{"rbind", "rprivate", "rw"}},
				{Destination: "/dev/shm", Type: "bind", Source: data, Options: []string{"rbind", "rprivate", "rw"}},
				{Destination: "/dev/termination-log", Type: "bind", Source: file, Options: []string{"rbind", "rprivate", "rw"}},
				{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Type: "bind", Source: data, Options: []string{"rbind", "rprivate", "ro"}},
			}
		}, func(t *testing.T, p Plan) {
			if !slices.Equal(p.Shares, []Share{{data, "/var/run/secrets/kubernetes.io/serviceaccount"}}) {
				t.Errorf("shares = %v, want the service account's directory alone", p.Shares)
			}
			if p.TerminationLog != file {
				t.Errorf("termination log = %q, want %q", p.TerminationLog, file)
			}
		}, nil},
		{"single file", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/app/config.yaml", Source: file, Options: []string{"bind"}}}
		}, nil, errdefs.ErrInvalidArgument},
		{"missing source", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Source: filepath.Join(dir, "nope"), Type: "bind"}}
		}, nil, os.ErrNotExist},
		{"tiny memory", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &tiny}}
		}, nil, errdefs.ErrInvalidArgument},
		{"terminal", func(s *specs.Spec) { s.Process.Terminal = true }, nil, errdefs.ErrNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			p, err := PlanFromSpec(s)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}
