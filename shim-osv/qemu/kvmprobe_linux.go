package qemu

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ProbeEnv, set in a process's environment, makes the shim's main run
// ProbeKVM and exit instead of serving: Probe runs the probe in such a child,
// since a vCPU that hangs takes its thread with it and only a kill ends it.
const ProbeEnv = "FEATHER_KVM_PROBE"

// KVM ioctls and structures from linux/kvm.h. This is written against the
// raw API on purpose: the probe must run a guest in 64-bit mode (where the
// broken nested KVM of some hosts hangs, while real-mode firmware still
// runs), and QEMU cannot be asked to do that without a guest kernel.
const (
	kvmCreateVM          = 0xAE01
	kvmGetSupportedCPUID = 0xC008AE05
	kvmSetCPUID2         = 0x4008AE90
	maxCPUIDEntries      = 100
	cpuidEntrySize       = 40
	kvmGetVCPUMmapSize   = 0xAE04
	kvmCreateVCPU        = 0xAE41
	kvmSetUserMemRegion  = 0x4020AE46
	kvmRun               = 0xAE80
	kvmGetSregs          = 0x8138AE83
	kvmSetSregs          = 0x4138AE84
	kvmSetRegs           = 0x4090AE82
	kvmExitIO            = 2
	kvmExitHLT           = 5
	probePort            = 0x402
	guestMemSize         = 2 << 20
	codeAddr             = 0x8000
	pml4Addr, pdptAddr   = 0x1000, 0x2000
	pdAddr               = 0x3000
	gdtAddr              = 0x500
	cr0PE                = 1 << 0
	pagePresentWritable  = 0x3
	pageSize2M           = 0x80
	kvmRunExitReasonOff  = 8
	kvmRunIOPortOffset   = 32 + 2
	segmentCodeType      = 11 // execute/read, accessed
	segmentDataType      = 3  // read/write, accessed
	codeSel, dataSel     = 8, 16
	segLimit             = 0xffffffff
	kvmSregsSegmentCount = 8
)

type kvmSegment struct {
	Base                         uint64
	Limit                        uint32
	Selector                     uint16
	Type, Present, DPL, DB, S, L uint8
	G, AVL, Unusable, Padding    uint8
}

type kvmDtable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

type kvmSregs struct {
	Segs                                [kvmSregsSegmentCount]kvmSegment // cs ds es fs gs ss tr ldt
	GDT, IDT                            kvmDtable
	CR0, CR2, CR3, CR4, CR8, EFER, APIC uint64
	InterruptBitmap                     [4]uint64
}

type kvmRegs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

type kvmMemRegion struct {
	Slot, Flags               uint32
	GuestPhys, Size, UserAddr uint64
}

// ProbeKVM runs a one-vCPU guest in 64-bit long mode that writes a byte to
// an I/O port and halts, and returns nil if both happen. It may never return
// on a host whose KVM hangs: run it in a child process (see ProbeEnv).
func ProbeKVM() error {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	vm, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("create vm: %w", err)
	}
	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint64(mem[pml4Addr:], pdptAddr|pagePresentWritable)
	le.PutUint64(mem[pdptAddr:], pdAddr|pagePresentWritable)
	le.PutUint64(mem[pdAddr:], 0|pagePresentWritable|pageSize2M) // identity-map the first 2 MiB
	// A GDT with flat 32-bit code and data and a 64-bit code segment.
	for i, d := range []uint64{0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff} {
		le.PutUint64(mem[gdtAddr+8*i:], d)
	}
	copy(mem[codeAddr:], probeCode)
	region := kvmMemRegion{Size: guestMemSize, UserAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(vm, kvmSetUserMemRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return fmt.Errorf("set memory: %w", err)
	}
	vcpu, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return fmt.Errorf("create vcpu: %w", err)
	}
	// The vCPU has no CPUID until given one: without it, no long mode.
	cpuid := make([]byte, 8+maxCPUIDEntries*cpuidEntrySize)
	le.PutUint32(cpuid, maxCPUIDEntries)
	if _, err := ioctl(kvm, kvmGetSupportedCPUID, uintptr(unsafe.Pointer(&cpuid[0]))); err != nil {
		return fmt.Errorf("get cpuid: %w", err)
	}
	if _, err := ioctl(vcpu, kvmSetCPUID2, uintptr(unsafe.Pointer(&cpuid[0]))); err != nil {
		return fmt.Errorf("set cpuid: %w", err)
	}
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return err
	}
	run, err := unix.Mmap(vcpu, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	var sregs kvmSregs
	if _, err := ioctl(vcpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return fmt.Errorf("get sregs: %w", err)
	}
	// Start as firmware or a PVH loader hands over: 32-bit protected mode,
	// paging off. The code switches to long mode itself, as OSv and Linux
	// do; that switch is what hangs where nested KVM is broken.
	code := kvmSegment{Limit: segLimit, Selector: codeSel, Type: segmentCodeType, Present: 1, S: 1, DB: 1, G: 1}
	data := kvmSegment{Limit: segLimit, Selector: dataSel, Type: segmentDataType, Present: 1, S: 1, DB: 1, G: 1}
	sregs.Segs[0] = code
	for i := 1; i <= 5; i++ {
		sregs.Segs[i] = data
	}
	sregs.Segs[6] = kvmSegment{Limit: 0x67, Type: 11, Present: 1} // tr: long mode wants a 32/64-bit TSS
	sregs.GDT = kvmDtable{Base: gdtAddr, Limit: 4*8 - 1}
	sregs.CR0 = cr0PE
	sregs.CR3, sregs.CR4, sregs.EFER = 0, 0, 0
	if _, err := ioctl(vcpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return fmt.Errorf("set sregs: %w", err)
	}
	regs := kvmRegs{RIP: codeAddr, RFLAGS: 2}
	if _, err := ioctl(vcpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs))); err != nil {
		return fmt.Errorf("set regs: %w", err)
	}
	sawIO := false
	for range 4 {
		if _, err := ioctl(vcpu, kvmRun, 0); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		switch reason := le.Uint32(run[kvmRunExitReasonOff:]); reason {
		case kvmExitIO:
			sawIO = le.Uint16(run[kvmRunIOPortOffset:]) == probePort
		case kvmExitHLT:
			if !sawIO {
				return fmt.Errorf("guest halted without writing its port")
			}
			return nil
		default:
			return fmt.Errorf("unexpected exit reason %d", reason)
		}
	}
	return fmt.Errorf("guest did not halt")
}

// probeCode runs at codeAddr in 32-bit protected mode: it enables PAE,
// loads CR3 with the tables at pml4Addr, sets EFER.LME, turns on paging,
// jumps to 64-bit code (selector 0x18), writes 'K' to probePort and halts.
var probeCode = []byte{
	0x0f, 0x20, 0xe0, // mov eax, cr4
	0x83, 0xc8, 0x20, // or eax, PAE
	0x0f, 0x22, 0xe0, // mov cr4, eax
	0xb8, 0x00, 0x10, 0x00, 0x00, // mov eax, pml4Addr
	0x0f, 0x22, 0xd8, // mov cr3, eax
	0xb9, 0x80, 0x00, 0x00, 0xc0, // mov ecx, MSR_EFER
	0x0f, 0x32, // rdmsr
	0x0d, 0x00, 0x01, 0x00, 0x00, // or eax, LME
	0x0f, 0x30, // wrmsr
	0x0f, 0x20, 0xc0, // mov eax, cr0
	0x0d, 0x00, 0x00, 0x00, 0x80, // or eax, PG
	0x0f, 0x22, 0xc0, // mov cr0, eax
	0xea, 0x31, 0x80, 0x00, 0x00, 0x18, 0x00, // ljmp 0x18:codeAddr+0x31
	// 64-bit, at codeAddr+0x31:
	0xb0, 'K', // mov al, 'K'
	0x66, 0xba, probePort & 0xff, probePort >> 8, // mov dx, probePort
	0xee, // out dx, al
	0xf4, // hlt
}

func ioctl(fd int, req, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// RunProbeChild is for main: if this process was started as a KVM probe,
// it runs the probe and exits 0 when KVM works, 1 when it does not.
func RunProbeChild() {
	if os.Getenv(ProbeEnv) != "1" {
		return
	}
	if err := ProbeKVM(); err != nil {
		fmt.Fprintln(os.Stderr, "kvm probe:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
