package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/feather-edge/feather/osv"
	"github.com/feather-edge/feather/shim-osv/netns"
	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/shim-osv/qmp"
	"github.com/feather-edge/feather/shim-osv/rofs"
	"github.com/feather-edge/feather/vmimage"
)

// Virtiofsd is the virtio-fs daemon, one per share and boot (the C
// virtiofsd of QEMU 7.2 exits when its VM disconnects).
var Virtiofsd = "/usr/lib/qemu/virtiofsd"

// Timing of the VM's lifecycle.
const (
	// TermGrace is how long a SIGTERM's ACPI power-down may take before
	// QEMU is told to quit.
	TermGrace = 5 * time.Second
	// KVMBootTimeout is how long a guest under KVM may stay silent before
	// the shim decides KVM does not really work here, boots it under TCG
	// instead and remembers that.
	KVMBootTimeout = 8 * time.Second
	socketTimeout  = 10 * time.Second
)

// EndGrace is how long a guest may keep running after its console reported
// the program's end (OSv powers off at once) before the shim stops it: a
// guest that halted instead, or hangs, must not look alive.
var EndGrace = 10 * time.Second

// Dir is the VM's own directory in the bundle, 0700: its disk, sockets and
// state. Sockets are named relative to it (QEMU and virtiofsd run in it),
// which keeps their paths short whatever the bundle's.
const Dir = "vm"

// Config is how to create a VM.
type Config struct {
	ID, Bundle string
	// Rootfs is the mounted root filesystem of the container.
	Rootfs string
	// RootfsOwn, if set, is the directory of the root filesystem's own
	// files (its snapshot's upper directory, vmimage.OwnDir): an instance
	// disk there is opened there, not through the mount.
	RootfsOwn string
	Spec      *specs.Spec
	// Stdout receives the console; Stderr the shim's own messages about
	// the VM (why it failed). Either may be nil. The VM closes them.
	Stdout, Stderr io.WriteCloser
	// Accel overrides the accelerator: kvm, tcg, or "" to probe.
	Accel string
}

// Status is a VM's state, as containerd names task states.
type Status int

// The states. A VM goes Created → Starting (booting) → Running ⇄ Paused →
// Stopped; Created and Starting go straight to Stopped when killed, and
// Starting when its boot fails.
const (
	Created Status = iota
	Starting
	Running
	Paused
	Stopped
)

var statusNames = [...]string{"created", "starting", "running", "paused", "stopped"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// VM is one container's virtual machine.
type VM struct {
	cfg     Config
	dir     string
	plan    Plan
	layout  vmimage.Layout
	disk    string // the instance disk QEMU boots
	cmdline string
	net     *netns.Config
	tap     string
	cg      vmCgroup
	cons    *console

	// ctl serializes Pause and Resume (a slot, taken with a context): QMP
	// stop and cont must not cross. Kill does not take it.
	ctl chan struct{}

	// mu guards the fields below. It is never held across slow work — a
	// boot, the KVM probe and wait, a QMP call, waiting for a process —
	// only across reading and changing them, so that Kill, State and Pids
	// answer while the VM boots.
	mu       sync.Mutex
	status   Status
	abort    context.CancelFunc // ends the boot under way (Starting)
	qemu     *exec.Cmd
	fsds     []*exec.Cmd
	qmp      *qmp.Client
	stderr   *tailBuffer
	reason   string         // QEMU's SHUTDOWN reason
	killSig  syscall.Signal // the signal Kill was asked for, 0 if none
	exitCode int
	exitedAt time.Time
	exited   chan struct{}
	accel    string // the accelerator of the last boot

	copies      []shareCopy // shares the shim copies (see shares.go)
	stopRefresh context.CancelFunc
}

// shareCopy is a share given to the guest as a copy: Source copied to Dir
// at Version.
type shareCopy struct {
	Source, Dir, Version string
}

// Create prepares a VM without starting it: finds the image's disk and
// kernel, makes the instance disk, renders and places the OSv command line,
// and creates the cgroup. On error nothing is left behind.
func Create(ctx context.Context, cfg Config) (_ *VM, retErr error) {
	plan, err := PlanFromSpec(cfg.Spec)
	if err != nil {
		return nil, err
	}
	layout, err := vmimage.Find(cfg.Rootfs)
	if err != nil {
		return nil, err
	}
	if layout.Instance != "" && cfg.RootfsOwn != "" {
		// The same file, without overlayfs between QEMU and it: QEMU's
		// locks on it are what tells the snapshotter the disk is in use.
		p := filepath.Join(cfg.RootfsOwn, vmimage.InstanceDiskPath)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			layout.Instance = p
		}
	}
	v := &VM{cfg: cfg, dir: filepath.Join(cfg.Bundle, Dir), plan: plan, layout: layout,
		stderr: &tailBuffer{max: 4096}, exited: make(chan struct{}), ctl: make(chan struct{}, 1)}
	if err := os.Mkdir(v.dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			v.teardown(ctx)
		}
	}()
	if plan.NetNS != "" {
		c, ok, err := netns.Discover(plan.NetNS)
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", plan.NetNS, err)
		}
		if ok {
			v.net, v.tap = &c, netns.TapName(cfg.ID)
		}
	}
	// Verbose: OSv reports the program's end only so. PowerOffOnAbort: a
	// crashed program powers the VM off rather than halting it.
	for i, s := range v.plan.Shares {
		if !isAtomicDir(s.Source) {
			continue
		}
		c := shareCopy{Source: s.Source, Dir: filepath.Join(v.dir, "share"+strconv.Itoa(i))}
		if c.Version, err = copyShare(s.Source, c.Dir); err != nil {
			return nil, fmt.Errorf("copy the volume at %s for the guest: %w", s.Target, err)
		}
		v.copies = append(v.copies, c)
		v.plan.Shares[i].Source = c.Dir
	}
	cl := osv.Cmdline{Args: plan.Args, Env: plan.Env, Cwd: plan.Cwd, Verbose: true, PowerOffOnAbort: true}
	for i, s := range plan.Shares {
		cl.Mounts = append(cl.Mounts, osv.Mount{Device: i, Target: s.Target})
	}
	if v.net != nil {
		cl.Network = &osv.Network{Interface: "eth0", Addr: v.net.Addr, Gateway: v.net.Gateway, Nameservers: plan.Nameservers}
	}
	if v.cmdline, err = cl.Render(); err != nil {
		return nil, err
	}
	v.cons = v.newConsole(ctx)
	// The snapshotter's instance disk, in the container's snapshot on
	// disk; else one of our own in the bundle (under /run, a tmpfs on a
	// real node: the VM's writes are then held in RAM).
	disk := layout.Instance
	if disk == "" {
		disk = filepath.Join(v.dir, "disk.qcow2")
		if err := qemu.CreateOverlay(ctx, layout.Disk, layout.DiskFormat, disk); err != nil {
			return nil, fmt.Errorf("instance disk: %w", err)
		}
	}
	v.disk = disk
	if err := v.ensureMountPoints(ctx, disk); err != nil {
		return nil, err
	}
	if layout.Kernel != "" {
		if err := osv.CheckLength(v.cmdline, osv.MaxDirect); err != nil {
			return nil, err
		}
	} else {
		if err := osv.CheckLength(v.cmdline, osv.MaxDisk); err != nil {
			return nil, err
		}
		// NUL-terminated, padded to whole sectors so nothing of the base's
		// own command line shows through.
		n := (len(v.cmdline) + 1 + 511) / 512 * 512
		buf := make([]byte, n)
		copy(buf, v.cmdline)
		if err := qemu.WriteAt(ctx, disk, osv.CmdlineOffset, buf); err != nil {
			return nil, fmt.Errorf("write command line: %w", err)
		}
	}
	if plan.CgroupsPath != "" {
		if v.cg, err = newCgroup(plan.CgroupsPath, plan.Resources); err != nil {
			return nil, err
		}
	}
	if err := v.saveState(nil); err != nil {
		return nil, err
	}
	// Not the command line itself: it holds every environment value.
	log.G(ctx).WithField("cmdline_bytes", len(v.cmdline)).WithField("direct", layout.Kernel != "").WithField("disk", disk).Debug("vm created")
	return v, nil
}

// Start boots the VM. Under KVM, a guest silent for KVMBootTimeout is
// booted again under TCG (see KVMBootTimeout). The VM is Starting
// meanwhile, and a Kill ends the boot: Start then fails with
// errdefs.ErrAborted and the VM is Stopped with 128+signal. A boot that fails
// leaves it Stopped with status 1 (its helpers gone, its outputs closed).
func (v *VM) Start(ctx context.Context) error {
	v.mu.Lock()
	if v.status != Created {
		st := v.status
		v.mu.Unlock()
		return fmt.Errorf("vm %s is %s, not created: %w", v.cfg.ID, st, errdefs.ErrFailedPrecondition)
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v.status, v.abort = Starting, cancel
	v.mu.Unlock()

	began := time.Now()
	pump, err := v.startAll(bctx)

	v.mu.Lock()
	defer v.mu.Unlock()
	v.abort = nil
	if sig := v.killSig; sig != 0 {
		err = fmt.Errorf("vm %s was killed (signal %d) while it booted: %w", v.cfg.ID, int(sig), errdefs.ErrAborted)
	}
	if err != nil {
		v.mu.Unlock()
		v.reap(pump)
		v.mu.Lock()
		code := 1
		if v.killSig != 0 {
			code = 128 + int(v.killSig)
		}
		v.closeOutputs()
		v.stop(code)
		return err
	}
	v.status = Running
	go v.wait(ctx, v.qemu, pump)
	go v.watchEnd(ctx, v.cons, v.qemu)
	go v.recordBoot(ctx, v.cons, began, v.accel)
	rctx, cancel := context.WithCancel(log.WithLogger(context.Background(), log.G(ctx)))
	v.stopRefresh = cancel
	for _, c := range v.copies {
		go refresh(rctx, c.Source, c.Dir, c.Version)
	}
	return nil
}

// ensureMountPoints makes the shares' mount points exist in the ROFS root
// of the instance disk: OSv cannot create one on its read-only root. On a
// disk that is not ROFS (a ZFS root, say) the image must have them.
func (v *VM) ensureMountPoints(ctx context.Context, disk string) error {
	var targets []string
	for _, s := range v.plan.Shares {
		targets = append(targets, s.Target)
	}
	if len(targets) == 0 {
		return nil
	}
	added, err := rofs.EnsureDirs(ctx, disk, targets)
	switch {
	case errors.Is(err, rofs.ErrNotROFS) || errdefs.IsNotImplemented(err):
		log.G(ctx).WithError(err).Debug("mount points: the disk's root is not ROFS, the image must have them")
		return nil
	case err != nil:
		return fmt.Errorf("mount points in the image's root: %w", err)
	}
	if len(added) > 0 {
		log.G(ctx).WithField("added", added).Debug("mount points added to the instance disk")
	}
	return nil
}

// newConsole returns a console logging OSv's own lines with the VM's id.
func (v *VM) newConsole(ctx context.Context) *console {
	return newConsole(log.G(ctx).WithField("vm", v.cfg.ID))
}

// watchEnd stops a guest that keeps running EndGrace after its console
// reported the program's end: OSv powers off at once, so it halted instead
// (or hangs) and would look alive while QEMU burns a core.
func (v *VM) watchEnd(ctx context.Context, cons *console, cmd *exec.Cmd) {
	select {
	case <-cons.ended:
	case <-v.exited:
		return
	}
	t := time.NewTimer(EndGrace)
	defer t.Stop()
	select {
	case <-v.exited:
		return
	case <-t.C:
	}
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("grace", EndGrace).Warn("the guest is still running after its program ended: stopping it")
	_ = cmd.Process.Kill()
}

// recordBoot writes BootFile once the guest's program has started: how it
// booted and how long that took from Start.
func (v *VM) recordBoot(ctx context.Context, cons *console, began time.Time, accel string) {
	select {
	case <-cons.start:
	case <-v.exited:
		return
	}
	b := Boot{Mode: BootDisk, Accel: accel, Seconds: time.Since(began).Seconds()}
	if v.layout.Kernel != "" {
		b.Mode = BootDirect
	}
	if err := b.write(v.dir); err != nil {
		log.G(ctx).WithError(err).WithField("vm", v.cfg.ID).Warn("record boot")
		return
	}
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("mode", b.Mode).WithField("accel", accel).
		WithField("seconds", b.Seconds).Debug("program started")
}

// startAll wires the network and boots QEMU with the accelerator that
// works, with v.mu not held; ctx ends when Kill aborts the boot. It returns
// the channel the console pump closes at its end, nil if QEMU never
// started.
func (v *VM) startAll(ctx context.Context) (chan struct{}, error) {
	accel, err := qemu.Accelerator(ctx, v.cfg.Accel)
	if err != nil {
		return nil, err
	}
	if v.net != nil {
		if err := netns.Wire(v.plan.NetNS, *v.net, v.tap); err != nil {
			return nil, fmt.Errorf("wire %s to %s: %w", v.tap, v.net.Interface, err)
		}
	}
	pump, err := v.boot(ctx, accel)
	if accel == qemu.KVM && v.cfg.Accel == "" && (errors.Is(err, errQEMUExited) || (err == nil && !v.bootedUnderKVM(ctx, pump))) && ctx.Err() == nil {
		// KVM opened, and even ran the probe, yet QEMU died at once (a
		// host whose KVM refuses -cpu host's MSRs: "failed to set MSR
		// 0x10a"), or the guest died or stays silent: KVM does not really
		// run guests here (nested KVM).
		log.G(ctx).WithField("qemu", v.stderr.String()).Warn("guest failed under KVM: using TCG from now on")
		v.reap(pump)
		qemu.RememberAccelerator(qemu.TCG)
		v.mu.Lock()
		v.qemu, v.qmp, v.cons, v.stderr = nil, nil, v.newConsole(ctx), &tailBuffer{max: 4096}
		v.mu.Unlock()
		pump, err = v.boot(ctx, qemu.TCG)
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return pump, err
}

// bootedUnderKVM reports whether a guest booted under KVM shows life: its
// first console output within KVMBootTimeout, QEMU still running.
func (v *VM) bootedUnderKVM(ctx context.Context, pump chan struct{}) bool {
	t := time.NewTimer(KVMBootTimeout)
	defer t.Stop()
	select {
	case <-v.console().first:
		return true
	case <-pump:
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// console returns the console of the current boot.
func (v *VM) console() *console {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cons
}

// stop marks the VM stopped with code, once. Called with mu held.
func (v *VM) stop(code int) {
	if v.status == Stopped {
		return
	}
	v.exitCode, v.exitedAt, v.status = code, time.Now(), Stopped
	close(v.exited)
}

// boot starts virtiofsd for each share, then QEMU in the container's
// network namespace and cgroup, its console copied to stdout, and connects
// to its QMP socket. It returns the channel closed when the console ends,
// nil if QEMU did not start. What it started is in v (for reap) even when
// it fails.
func (v *VM) boot(ctx context.Context, accel string) (chan struct{}, error) {
	v.mu.Lock()
	v.fsds = nil
	cons, stderr := v.cons, v.stderr
	v.mu.Unlock()
	var shares []string
	for i, s := range v.plan.Shares {
		sock := "fs" + strconv.Itoa(i) + ".sock"
		// The shim makes the socket and hands virtiofsd the listening fd:
		// given a path, virtiofsd would lock a pid file named after it in
		// /run/virtiofsd, shared by every VM, and leave it behind.
		f, err := listenUnix(filepath.Join(v.dir, sock))
		if err != nil {
			return nil, fmt.Errorf("virtio-fs socket for %s: %w", s.Target, err)
		}
		cmd := exec.Command(Virtiofsd, "--fd=3", "-o", "source="+s.Source, "-o", "cache=auto")
		cmd.Dir = v.dir
		cmd.Stderr = stderr
		cmd.ExtraFiles = []*os.File{f}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("start virtiofsd for %s: %w", s.Target, err)
		}
		v.mu.Lock()
		v.fsds = append(v.fsds, cmd)
		v.mu.Unlock()
		if err := v.join(cmd.Process.Pid); err != nil {
			return nil, err
		}
		shares = append(shares, sock)
	}
	qc := qemu.Config{Name: "feather-" + v.cfg.ID, Accel: accel, MemoryMiB: v.plan.MemoryMiB, CPUs: v.plan.CPUs,
		Disk: v.disk, QMP: "qmp.sock", StatsQMP: StatsQMP, Shares: shares, Tap: v.tap, FirmwareLog: firmwareLog}
	if v.layout.Kernel != "" {
		qc.Kernel, qc.Initrd, qc.Append = v.layout.Kernel, v.layout.Initrd, v.cmdline
	}
	if v.net != nil {
		qc.MAC = v.net.MAC
	}
	args, err := qc.Args()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(qemu.System, args...)
	cmd.Dir = v.dir
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(v.dir, "qmp.sock"))
	_ = os.Remove(filepath.Join(v.dir, StatsQMP))
	if err := netns.Do(v.plan.NetNS, cmd.Start); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: install Debian package qemu-system-x86: %w", qemu.System, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	pump := make(chan struct{})
	go func(w io.Writer) {
		cons.pump(out, w)
		close(pump)
	}(v.cfg.Stdout)
	v.mu.Lock()
	v.qemu, v.accel = cmd, accel
	pids := append(v.pids(), cmd.Process.Pid)
	v.mu.Unlock()
	if err := v.join(cmd.Process.Pid); err != nil {
		return pump, err
	}
	if err := v.saveState(pids); err != nil {
		return pump, err
	}
	dctx, cancel := context.WithTimeout(ctx, socketTimeout)
	defer cancel()
	dialing := make(chan struct{})
	go func() {
		select {
		case <-pump: // QEMU exited: its socket will never answer
			cancel()
		case <-dialing:
		}
	}()
	c, err := qmp.Dial(dctx, socketAddr(filepath.Join(v.dir, "qmp.sock")))
	close(dialing)
	if err != nil {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-pump:
			err = fmt.Errorf("%w: %w", errQEMUExited, err)
		case <-t.C:
		}
		return pump, fmt.Errorf("qemu control socket: %w: %s", err, stderr.String())
	}
	v.mu.Lock()
	v.qmp = c
	v.mu.Unlock()
	go v.watchEvents(c)
	return pump, nil
}

// errQEMUExited says QEMU exited before its control socket answered.
var errQEMUExited = errors.New("qemu exited")

// reap ends what a boot started — QEMU (whose console pump closes pump),
// its QMP connection, virtiofsd — and waits for them. For a boot that did
// not become Running: the VM's wait goroutine reaps a running one. Called
// without mu.
func (v *VM) reap(pump chan struct{}) {
	v.mu.Lock()
	cmd, q := v.qemu, v.qmp
	v.mu.Unlock()
	if cmd != nil && pump != nil {
		_ = cmd.Process.Kill()
		<-pump
		_ = cmd.Wait()
	}
	if q != nil {
		q.Close()
	}
	v.stopHelpers()
}

// join puts pid into the container's cgroup, if it has one.
func (v *VM) join(pid int) error {
	if v.cg == nil {
		return nil
	}
	if err := v.cg.add(pid); err != nil {
		return fmt.Errorf("join cgroup %s: %w", v.plan.CgroupsPath, err)
	}
	return nil
}

// watchEvents records why QEMU shut down.
func (v *VM) watchEvents(c *qmp.Client) {
	for ev := range c.Events() {
		if ev.Name != "SHUTDOWN" {
			continue
		}
		var data struct{ Reason string }
		if err := json.Unmarshal(ev.Data, &data); err == nil {
			v.mu.Lock()
			v.reason = data.Reason
			v.mu.Unlock()
		}
	}
}

// wait reaps QEMU, works out the exit status, stops the helpers and marks
// the VM stopped.
func (v *VM) wait(ctx context.Context, cmd *exec.Cmd, pump chan struct{}) {
	<-pump // the console's last lines are in (before Wait closes the pipe)
	werr := cmd.Wait()
	v.mu.Lock()
	code, msg := v.exitStatus(werr)
	q, stderr, stopRefresh := v.qmp, v.cfg.Stderr, v.stopRefresh
	v.mu.Unlock()
	if msg != "" {
		log.G(ctx).WithField("status", code).Warn(msg)
		if stderr != nil {
			fmt.Fprintf(stderr, "feather: %s\n", msg)
		}
		if v.plan.TerminationLog != "" {
			// What kubectl shows as the container's termination message.
			if err := os.WriteFile(v.plan.TerminationLog, []byte(msg+"\n"), 0o644); err != nil {
				log.G(ctx).WithError(err).Warn("write termination log")
			}
		}
	}
	v.stopHelpers()
	if stopRefresh != nil {
		stopRefresh()
	}
	if q != nil {
		q.Close()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	// The output ends with the VM, as a process's does: whoever reads it
	// (CRI waits for that before it deletes the task) sees EOF now.
	v.closeOutputs()
	v.stop(code)
}

// exitStatus is the container's exit status: the guest's reported code;
// else 128+signal when killed; else 0 for a clean power-off; else non-zero
// with a message carrying the console's last lines. Called with mu held.
func (v *VM) exitStatus(werr error) (int, string) {
	tail := strings.Join(v.cons.lastLines(), "\n")
	if e := v.cons.end(); e != nil && !(e.Inferred && v.killSig != 0) {
		switch e.Reason {
		case "NotFound":
			return e.Code, fmt.Sprintf("the program could not be loaded (%s): is its path in the image right?\nlast console lines:\n%s", e.Line, tail)
		case "NoRoot":
			return e.Code, fmt.Sprintf("OSv mounted no root file system from the image's disk, so it could not load the program (%s): is the disk an OSv image whose file system this kernel reads (ROFS, ZFS)?\nlast console lines:\n%s", e.Line, tail)
		case "Crashed":
			return e.Code, fmt.Sprintf("the program crashed (%s)\nlast console lines:\n%s", e.Line, tail)
		}
		return e.Code, ""
	}
	if v.killSig != 0 {
		return 128 + int(v.killSig), ""
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return exitOr1(ee.ExitCode()), fmt.Sprintf("qemu exited with status %d: %s\nlast console lines:\n%s",
			ee.ExitCode(), strings.TrimSpace(v.stderr.String()), tail)
	}
	if werr != nil {
		return 1, fmt.Sprintf("qemu: %v", werr)
	}
	switch v.reason {
	case "guest-shutdown", "host-qmp-quit", "host-qmp-system-reset", "":
		if v.reason == "" && len(v.cons.lastLines()) == 0 {
			return 1, "the VM ended without a word: no console output\n" + strings.TrimSpace(v.stderr.String())
		}
		if !v.cons.started() {
			return 1, "the guest powered off before its program started\nlast console lines:\n" + tail
		}
		return 0, ""
	default:
		if tail == "" {
			return 1, fmt.Sprintf("the guest did not power off cleanly (%s: failed to boot or crashed); it printed nothing on its console; last firmware lines:\n%s",
				v.reason, strings.Join(v.firmwareTail(), "\n"))
		}
		return 1, fmt.Sprintf("the guest did not power off cleanly (%s: failed to boot or crashed); last console lines:\n%s", v.reason, tail)
	}
}

// firmwareLog, in the VM's directory, holds SeaBIOS's debug messages.
const firmwareLog = "firmware.log"

// firmwareTail returns what SeaBIOS said about booting — the devices it
// tried ("Booting from …"), why they failed ("Boot failed: …", "No bootable
// device.") — else its last lines that are not traces.
func (v *VM) firmwareTail() []string {
	b, err := os.ReadFile(filepath.Join(v.dir, firmwareLog))
	if err != nil {
		return nil
	}
	var boot, other []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "Booting from"), strings.HasPrefix(l, "Boot failed"), strings.HasPrefix(l, "No bootable device"):
			boot = append(boot, l)
		case l != "" && l != "NULL" && !strings.HasPrefix(l, "enter "):
			other = append(other, l)
		}
	}
	if len(boot) > 0 {
		return boot[max(0, len(boot)-4):]
	}
	return other[max(0, len(other)-3):]
}

func exitOr1(code int) int {
	if code <= 0 {
		return 1
	}
	return code
}

// Exited is closed once the VM has stopped.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// ExitStatus returns the exit status and time, valid once Exited is closed.
func (v *VM) ExitStatus() (int, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitCode, v.exitedAt
}

// Status returns the VM's state.
func (v *VM) Status() Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

// Pid returns QEMU's pid, 0 before Start.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.qemu == nil {
		return 0
	}
	return v.qemu.Process.Pid
}

// Pids returns the pids of QEMU and its virtiofsd helpers.
func (v *VM) Pids() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	pids := v.pids()
	if v.qemu != nil {
		pids = append([]int{v.qemu.Process.Pid}, pids...)
	}
	return pids
}

// ProgramStarted reports whether the current boot's program has started:
// its console printed OSv's start line.
func (v *VM) ProgramStarted() bool {
	c := v.console()
	return c != nil && c.started()
}

func (v *VM) pids() []int {
	var pids []int
	for _, c := range v.fsds {
		pids = append(pids, c.Process.Pid)
	}
	return pids
}

// Kill delivers sig the way a VM understands it: SIGKILL ends QEMU at once;
// any other signal asks the guest to power off (ACPI), and QEMU is told to
// quit if it has not within TermGrace. The exit status is then 128+sig. A
// VM that has not started yet never runs: a created one stops at once, a
// booting one once its boot is ended (see Start). A stopped VM is
// ErrNotFound, as a process that already finished.
func (v *VM) Kill(ctx context.Context, sig syscall.Signal) error {
	v.mu.Lock()
	switch v.status {
	case Stopped:
		v.mu.Unlock()
		return fmt.Errorf("vm %s: process already finished: %w", v.cfg.ID, errdefs.ErrNotFound)
	case Created:
		defer v.mu.Unlock()
		v.killSig = sig
		v.closeOutputs()
		v.stop(128 + int(sig))
		return nil
	case Starting:
		defer v.mu.Unlock()
		if v.killSig == 0 || sig == syscall.SIGKILL {
			v.killSig = sig
		}
		v.abort()
		return nil
	}
	if v.killSig == 0 || sig == syscall.SIGKILL {
		v.killSig = sig
	}
	q, p, paused := v.qmp, v.qemu.Process, v.status == Paused
	v.mu.Unlock()
	if sig == syscall.SIGKILL {
		if err := p.Kill(); err != nil {
			if errors.Is(err, os.ErrProcessDone) {
				return fmt.Errorf("vm %s: process already finished: %w", v.cfg.ID, errdefs.ErrNotFound)
			}
			return fmt.Errorf("kill qemu: %w", err)
		}
		return nil
	}
	if paused {
		// A paused guest cannot power off.
		if err := q.Cont(ctx); err == nil {
			v.mu.Lock()
			if v.status == Paused {
				v.status = Running
			}
			v.mu.Unlock()
		}
	}
	if err := q.SystemPowerdown(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("system_powerdown")
	}
	go func() {
		select {
		case <-v.exited:
			return
		case <-time.After(TermGrace):
		}
		qctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := q.Quit(qctx); err != nil {
			_ = p.Kill()
		}
		select {
		case <-v.exited:
		case <-time.After(2 * time.Second):
			_ = p.Kill()
		}
	}()
	return nil
}

// takeCtl takes the Pause/Resume slot, or fails when ctx ends first.
func (v *VM) takeCtl(ctx context.Context) error {
	select {
	case v.ctl <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *VM) releaseCtl() { <-v.ctl }

// Pause stops the guest's vCPUs (QMP stop).
func (v *VM) Pause(ctx context.Context) error {
	return v.transition(ctx, Running, Paused, (*qmp.Client).Stop)
}

// Resume lets a paused guest run again (QMP cont).
func (v *VM) Resume(ctx context.Context) error {
	return v.transition(ctx, Paused, Running, (*qmp.Client).Cont)
}

// transition moves the VM from state from to state to by QMP command do,
// which runs without mu held.
func (v *VM) transition(ctx context.Context, from, to Status, do func(*qmp.Client, context.Context) error) error {
	if err := v.takeCtl(ctx); err != nil {
		return err
	}
	defer v.releaseCtl()
	v.mu.Lock()
	st, q := v.status, v.qmp
	v.mu.Unlock()
	if st != from {
		return fmt.Errorf("vm %s is %s, not %s: %w", v.cfg.ID, st, from, errdefs.ErrFailedPrecondition)
	}
	if err := do(q, ctx); err != nil {
		return fmt.Errorf("vm %s: %w", v.cfg.ID, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.status == from { // else it stopped meanwhile
		v.status = to
	}
	return nil
}

// Stats returns the cgroup metrics of the VM's processes.
func (v *VM) Stats() (*anypb.Any, error) {
	if v.cg == nil {
		return nil, fmt.Errorf("vm %s has no cgroup: %w", v.cfg.ID, errdefs.ErrNotFound)
	}
	return v.cg.stats()
}

// Delete removes everything the VM holds: processes, tap, cgroup, files.
// A VM that is booting or running is ErrFailedPrecondition; a created one
// ends (as killed) without having run. It is idempotent.
func (v *VM) Delete(ctx context.Context) error {
	v.mu.Lock()
	st := v.status
	if st == Created {
		v.killSig = syscall.SIGKILL
		v.stop(128 + int(syscall.SIGKILL))
	}
	v.mu.Unlock()
	if st == Starting || st == Running || st == Paused {
		return fmt.Errorf("vm %s is %s: kill it first: %w", v.cfg.ID, st, errdefs.ErrFailedPrecondition)
	}
	return v.teardown(ctx)
}

// teardown removes what the VM holds on the host; its processes have ended
// (or never started). Called without mu.
func (v *VM) teardown(ctx context.Context) error {
	v.mu.Lock()
	v.closeOutputs()
	stopRefresh := v.stopRefresh
	v.mu.Unlock()
	v.stopHelpers()
	if stopRefresh != nil {
		stopRefresh()
	}
	var errs []error
	if v.tap != "" {
		errs = append(errs, netns.Unwire(v.plan.NetNS, v.net.Interface, v.tap))
	}
	if v.cg != nil {
		errs = append(errs, v.cg.delete())
	}
	errs = append(errs, os.RemoveAll(v.dir))
	return errors.Join(errs...)
}

// closeOutputs closes the VM's stdout and stderr, once. Called with mu
// held.
func (v *VM) closeOutputs() {
	for _, c := range []*io.WriteCloser{&v.cfg.Stdout, &v.cfg.Stderr} {
		if *c != nil {
			(*c).Close()
			*c = nil
		}
	}
}

// stopHelpers kills the virtiofsd of the last boot, if running, and reaps
// them. Called without mu.
func (v *VM) stopHelpers() {
	v.mu.Lock()
	fsds := v.fsds
	v.fsds = nil
	v.mu.Unlock()
	for _, c := range fsds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

func (v *VM) saveState(pids []int) error {
	s := state{Pids: pids, NetNS: v.plan.NetNS, Tap: v.tap, CgroupsPath: v.plan.CgroupsPath}
	if v.net != nil {
		s.Interface = v.net.Interface
	}
	return s.write(v.dir)
}

// Cleanup removes what the VM of bundle left after its shim died: it kills
// the processes recorded (if they still are QEMU or virtiofsd of this VM),
// unwires the tap, deletes the cgroup and removes the VM's directory. It is
// idempotent and ignores what is already gone.
func Cleanup(ctx context.Context, bundle string) error {
	dir := filepath.Join(bundle, Dir)
	s, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.RemoveAll(dir)
	}
	if err != nil {
		return err
	}
	for _, pid := range s.Pids {
		if cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd")); err == nil && cwd == dir {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var errs []error
	if s.Tap != "" {
		errs = append(errs, netns.Unwire(s.NetNS, s.Interface, s.Tap))
	}
	if s.CgroupsPath != "" {
		if cg, err := loadCgroup(s.CgroupsPath); err == nil {
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := cg.delete()
				if err == nil || time.Now().After(deadline) {
					errs = append(errs, err)
					break
				}
				time.Sleep(50 * time.Millisecond) // killed processes leave the cgroup asynchronously
			}
		}
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

// listenUnix makes a listening unix socket at path and returns it as a
// file to hand to a child.
func listenUnix(path string) (*os.File, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketAddr(path), Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	return l.File()
}

// socketAddr returns path, or, when it is too long for a socket address
// (108 bytes; a CRI container's bundle path alone takes ~140), path made
// relative to the working directory: the shim runs in the bundle of its
// first container, and the bundles of a pod's containers are siblings.
func socketAddr(path string) string {
	if len(path) <= 100 {
		return path
	}
	if cwd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(cwd, path); err == nil {
			return rel
		}
	}
	return path
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
