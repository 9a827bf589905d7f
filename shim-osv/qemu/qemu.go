// Package qemu turns a VM's description into a qemu-system-x86_64 command
// line, makes its per-instance disk, and finds out which accelerator really
// works on this host.
package qemu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Accelerators.
const (
	KVM = "kvm"
	TCG = "tcg"
)

// TCGBufferMiB is the size of TCG's translation buffer (-accel
// tcg,tb-size=…).
const TCGBufferMiB = 4

// Config describes one VM.
type Config struct {
	// Name shows in ps and QEMU's own messages.
	Name string
	// Accel is KVM or TCG. Under KVM the machine is microvm-capable and
	// the CPU the host's; under TCG it is "pc" (OSv halts on TCG microvm).
	Accel string
	// MemoryMiB is the guest's RAM; CPUs its vCPUs.
	MemoryMiB int
	CPUs      int

	// Disk is the instance disk (a qcow2 overlay), attached as virtio-blk.
	Disk string
	// Kernel, if set, is booted directly with Append as its command line
	// (and Initrd, if set); otherwise the firmware boots from Disk.
	Kernel, Initrd, Append string

	// QMP is the path of the QMP control socket QEMU listens on.
	QMP string
	// StatsQMP, if set, is the path of a second QMP monitor, for readers
	// outside the shim (the agent's stats ask it query-balloon): a QMP
	// server serves one client at a time, and the shim holds QMP's.
	StatsQMP string
	// Shares are vhost-user-fs sockets, one per virtiofsd, in order: the
	// guest's /dev/virtiofsN is Shares[N], with tag "virtiofsN".
	Shares []string
	// Tap, if set, is the tap device in QEMU's network namespace that
	// backs the guest's NIC, whose MAC is MAC.
	Tap string
	MAC net.HardwareAddr
	// FirmwareLog, if set, is a file that gets the firmware's (SeaBIOS's)
	// debug messages, through QEMU's debug console port 0x402: why a disk
	// did not boot ("Boot failed: …", "No bootable device."), which
	// nothing prints on the serial console.
	FirmwareLog string
}

// Args returns QEMU's arguments (without the program name). The serial
// console is QEMU's stdout; there is no display, monitor or default device,
// and the guest's own reset ends QEMU rather than rebooting (-no-reboot), as
// does a failure to boot (reboot-timeout=0).
func (c Config) Args() ([]string, error) {
	if c.MemoryMiB <= 0 || c.CPUs <= 0 {
		return nil, fmt.Errorf("qemu: memory %d MiB and %d CPUs: both must be positive", c.MemoryMiB, c.CPUs)
	}
	if c.Disk == "" || c.QMP == "" {
		return nil, fmt.Errorf("qemu: a disk and a QMP socket are required")
	}
	args := []string{
		"-name", c.Name,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot", "-boot", "strict=on,reboot-timeout=0",
		"-sandbox", "on",
	}
	switch c.Accel {
	case KVM:
		args = append(args, "-machine", "q35,accel=kvm", "-cpu", "host")
	case TCG:
		// A 4 MiB translation buffer instead of TCG's 1 GiB default, of
		// which an idle OSv touches 12 MiB (in 2 MiB huge pages): 9 MiB
		// less RSS, the same idle CPU (shim-osv/README.md, Footprint).
		args = append(args, "-machine", "pc", "-accel", "tcg,tb-size="+strconv.Itoa(TCGBufferMiB))
	default:
		return nil, fmt.Errorf("qemu: unknown accelerator %q (kvm or tcg)", c.Accel)
	}
	mem := strconv.Itoa(c.MemoryMiB) + "M"
	args = append(args,
		"-m", mem,
		"-smp", strconv.Itoa(c.CPUs),
		"-serial", "stdio",
		"-qmp", "unix:"+c.QMP+",server=on,wait=off",
		"-drive", "file="+escape(c.Disk)+",if=virtio,format=qcow2",
		// A balloon, so that query-balloon tells the guest's memory. OSv
		// v0.57 has no balloon driver: QEMU then reports all of the RAM
		// as the guest's ("actual"). It costs no measurable boot time and
		// about 0.3 MiB of QEMU's RSS.
		"-device", "virtio-balloon-pci,id=balloon0",
	)
	if c.StatsQMP != "" {
		args = append(args,
			"-chardev", "socket,id=statsqmp,path="+escape(c.StatsQMP)+",server=on,wait=off",
			"-mon", "chardev=statsqmp,mode=control")
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel, "-append", c.Append)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
	}
	// The guest's RAM is a memfd, shared (vhost-user needs it shared with
	// virtiofsd): QEMU asks for transparent huge pages on anonymous guest
	// RAM, so that each 2 MiB the guest touches costs 2 MiB; shmem follows
	// the host's shmem_enabled (never by default) and costs what is touched.
	args = append(args,
		"-object", "memory-backend-memfd,id=mem,size="+mem+",share=on",
		"-numa", "node,memdev=mem")
	if len(c.Shares) > 0 {
		for i, sock := range c.Shares {
			id := "fs" + strconv.Itoa(i)
			args = append(args,
				"-chardev", "socket,id="+id+",path="+escape(sock),
				"-device", "vhost-user-fs-pci,queue-size=1024,chardev="+id+",tag=virtiofs"+strconv.Itoa(i))
		}
	}
	if c.FirmwareLog != "" {
		args = append(args,
			"-chardev", "file,id=firmware,path="+escape(c.FirmwareLog),
			"-device", "isa-debugcon,iobase=0x402,chardev=firmware")
	}
	if c.Tap != "" {
		args = append(args,
			"-netdev", "tap,id=net0,ifname="+c.Tap+",script=no,downscript=no,vhost=off",
			"-device", "virtio-net-pci,netdev=net0,mac="+c.MAC.String())
	} else {
		args = append(args, "-nic", "none")
	}
	return args, nil
}

// escape doubles the commas in a value of a QEMU option list, where a comma
// separates options.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
