package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
)

// System is the QEMU binary the shim runs.
var System = "qemu-system-x86_64"

// ProbeTimeout bounds the KVM probe: a guest that works prints within
// milliseconds; one that hangs (nested KVM without support) never does.
const ProbeTimeout = 3 * time.Second

// Probe reports whether a guest really runs under KVM here. Opening
// /dev/kvm is not enough: on some hosts (nested virtualization without
// support) KVM creates VMs and even runs real-mode firmware, but a vCPU in
// 64-bit mode never runs. So it runs ProbeKVM in a child — this same
// program, started with ProbeEnv=1, whose main calls RunProbeChild — and
// kills it if it has not answered within ProbeTimeout.
func Probe(ctx context.Context) bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), ProbeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		log.G(ctx).WithError(err).WithField("output", strings.TrimSpace(string(out))).Debug("kvm probe failed")
	}
	return err == nil
}

// AccelCache is where Accelerator keeps the probe's answer; it is on a
// tmpfs, so a reboot — the only thing that changes the answer — clears it.
var AccelCache = "/run/feather/accel"

// Accelerator returns the accelerator to use: override when it is KVM or
// TCG, else the cached probe result, else a fresh probe, which it caches.
// Any other non-empty override is an error.
func Accelerator(ctx context.Context, override string) (string, error) {
	switch override {
	case KVM, TCG:
		return override, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("accelerator %q: want kvm, tcg or auto", override)
	}
	if b, err := os.ReadFile(AccelCache); err == nil {
		if a := strings.TrimSpace(string(b)); a == KVM || a == TCG {
			return a, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	accel := TCG
	if Probe(ctx) {
		accel = KVM
	}
	log.G(ctx).WithField("accel", accel).Info("probed accelerator")
	RememberAccelerator(accel)
	return accel, nil
}

// RememberAccelerator caches accel as the answer for this host, for
// Accelerator; the shim calls it when a guest proves KVM wrong. Failing to
// write the cache only costs a later probe.
func RememberAccelerator(accel string) {
	if err := os.MkdirAll(filepath.Dir(AccelCache), 0o755); err != nil {
		return
	}
	// Written whole then renamed, so concurrent shims never read half.
	tmp := fmt.Sprintf("%s.%d", AccelCache, os.Getpid())
	if os.WriteFile(tmp, []byte(accel+"\n"), 0o644) == nil {
		_ = os.Rename(tmp, AccelCache)
	}
}
