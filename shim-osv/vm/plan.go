// Package vm runs one container as a QEMU virtual machine: it turns the
// container's OCI spec and root filesystem into a VM (instance disk, OSv
// command line, virtio-fs shares, network, cgroup), runs QEMU and its
// virtiofsd helpers, and maps the container lifecycle — start, kill, pause,
// stats, exit status, delete — onto them.
package vm

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultMemoryMiB is the guest's RAM when the container has no memory
// limit. OSv itself boots in 16 MiB; this leaves room for the application.
const DefaultMemoryMiB = 256

// MemoryOverheadMiB is added to the container's memory limit for its cgroup:
// the guest gets the limit as its RAM, QEMU and virtiofsd need this on top
// (~75 MB RSS measured for QEMU with a sleeping OSv guest under TCG).
const MemoryOverheadMiB = 128

// Share is a host directory given to the guest through virtio-fs.
type Share struct {
	Source, Target string
}

// Plan is what a VM is made of, derived from the container's OCI spec.
type Plan struct {
	Args, Env   []string
	Cwd         string
	Shares      []Share
	Nameservers []net.IP
	MemoryMiB   int
	CPUs        int
	// NetNS is the network namespace to run QEMU in; "" keeps the shim's
	// and gives the guest no NIC.
	NetNS       string
	CgroupsPath string
	Resources   *specs.LinuxResources
	// TerminationLog is the host file bind-mounted at
	// /dev/termination-log, "" if none: the kubelet reads a container's
	// termination message from it, and the shim writes why a VM failed
	// there (the guest cannot).
	TerminationLog string
}

// TerminationLogPath is where Kubernetes mounts a container's termination
// message file by default.
const TerminationLogPath = "/dev/termination-log"

// kubeFiles are the single files Kubernetes bind-mounts into every
// container. A VM cannot take a single file; these are handled — resolv.conf
// becomes --nameserver, the termination log gets the failure — or have no
// meaning in the guest, so they are not an error.
var kubeFiles = map[string]bool{
	"/etc/resolv.conf": true, "/etc/hosts": true, "/etc/hostname": true, TerminationLogPath: true,
}

// kubeDirs are directories containerd's CRI plugin bind-mounts into every
// container that have no meaning in a VM: /dev/shm is the pod's shared
// memory, which a guest's own memory cannot share. They are not shared.
var kubeDirs = map[string]bool{"/dev/shm": true}

// PlanFromSpec derives a Plan from s, or returns an ErrInvalidArgument error
// saying what a VM cannot do.
func PlanFromSpec(s *specs.Spec) (Plan, error) {
	if s.Process == nil {
		return Plan{}, fmt.Errorf("spec has no process: %w", errdefs.ErrInvalidArgument)
	}
	p := Plan{Args: s.Process.Args, Env: s.Process.Env, Cwd: s.Process.Cwd, MemoryMiB: DefaultMemoryMiB, CPUs: 1}
	if s.Process.Terminal {
		return Plan{}, fmt.Errorf("a terminal (-t) is not supported: the VM's console is a serial line copied to stdout: %w", errdefs.ErrNotImplemented)
	}
	if l := s.Linux; l != nil {
		p.CgroupsPath = l.CgroupsPath
		p.Resources = l.Resources
		for _, ns := range l.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				p.NetNS = ns.Path
			}
		}
		if r := l.Resources; r != nil {
			if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
				p.MemoryMiB = int(*r.Memory.Limit >> 20)
				if p.MemoryMiB < 16 {
					return Plan{}, fmt.Errorf("memory limit %d bytes: a VM needs at least 16 MiB: %w", *r.Memory.Limit, errdefs.ErrInvalidArgument)
				}
			}
			if c := r.CPU; c != nil && c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
				p.CPUs = int((uint64(*c.Quota) + *c.Period - 1) / *c.Period)
			}
		}
	}
	for _, m := range s.Mounts {
		if !isBind(m) {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return Plan{}, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		dest := path.Clean(m.Destination)
		switch {
		case fi.IsDir() && kubeDirs[dest]:
		case fi.IsDir():
			p.Shares = append(p.Shares, Share{Source: m.Source, Target: dest})
		case dest == TerminationLogPath:
			p.TerminationLog = m.Source
		case dest == "/etc/resolv.conf":
			ns, err := nameservers(m.Source)
			if err != nil {
				return Plan{}, err
			}
			p.Nameservers = ns
		case kubeFiles[dest]:
		default:
			return Plan{}, fmt.Errorf("mount %s: a single file cannot be shared with a VM (virtio-fs shares directories): mount the directory holding it instead: %w",
				m.Destination, errdefs.ErrInvalidArgument)
		}
	}
	return p, nil
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// nameservers reads the IPv4 nameserver lines of a resolv.conf.
func nameservers(file string) ([]net.IP, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []net.IP
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if ip := net.ParseIP(fields[1]).To4(); ip != nil {
				out = append(out, ip)
			}
		}
	}
	return out, sc.Err()
}
