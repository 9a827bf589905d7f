package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/osv"
)

// Paths in the initramfs, written by the build package.
const (
	// ModulesDir holds the kernel modules; ModulesList names them, one a
	// line, in load order (dependencies first).
	ModulesDir  = "/lib/modules"
	ModulesList = ModulesDir + "/load"
	// ConsolePath is the serial console programs write to.
	ConsolePath = "/dev/ttyS0"
	// PrintkPath sets the kernel's console log level.
	PrintkPath = "/proc/sys/kernel/printk"
)

// deviceWait bounds how long init waits for a device (boot disk, network
// interface, virtio-fs tag) to appear after its driver loaded.
const deviceWait = 5 * time.Second

// Init is PID 1: it sets the guest up, runs the OSv command line and powers
// off. It never returns; on any error it prints it to the console and powers
// off (QEMU runs with -no-reboot, and PID 1 must not exit).
func Init() {
	mountErr := mountBase()
	con := openConsole()
	defer func() {
		if r := recover(); r != nil {
			fatal(con, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
		}
	}()
	if mountErr != nil {
		fatal(con, mountErr)
	}
	if err := quietKernel(PrintkPath); err != nil {
		fmt.Fprintf(con, "feather-guest: kernel messages stay on the console: %v\n", err)
	}
	if err := boot(con); err != nil {
		fatal(con, err)
	}
	powerOff(con)
}

// boot does everything between the base mounts and power off.
func boot(con *os.File) error {
	if err := loadModules(ModulesList); err != nil {
		return err
	}
	var (
		line     string
		fromDisk bool
	)
	err := retry(func() (err error) { // the boot disk may still be probing
		line, fromDisk, err = DefaultSource.Read()
		return err
	})
	if err != nil {
		return err
	}
	cfg, err := Parse(line)
	if err != nil {
		where := "kernel command line"
		if fromDisk {
			where = fmt.Sprintf("command line at offset %d of %s", DiskOffset, DefaultSource.Disk)
		}
		// Not the line itself: it holds every environment value.
		return fmt.Errorf("parse %s (%d bytes): %w", where, len(line), err)
	}
	if cfg.Verbose {
		for _, o := range cfg.Ignored {
			fmt.Fprintf(con, "feather-guest: ignoring option %s\n", o)
		}
	}
	if err := setupNetwork(cfg); err != nil {
		return err
	}
	if err := mountShares(cfg.Mounts); err != nil {
		return err
	}
	// As OSv, which echoes the commands just before it runs them; the shim
	// takes this line as the program's start and keeps everything before
	// it (the environment's values among it) out of the container's output.
	fmt.Fprintf(con, "Cmdline: %s\n", osv.AppPart(line))
	runCommands(cfg, con)
	return nil
}

// mountBase mounts /dev, /proc, /sys and /tmp.
func mountBase() error {
	for _, m := range []struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// openConsole opens the serial console and makes it init's stdout and stderr
// too, so that a Go panic reaches it. It falls back to /dev/console.
func openConsole() *os.File {
	for _, p := range []string{ConsolePath, "/dev/console"} {
		f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			continue
		}
		for _, fd := range []int{1, 2} {
			unix.Dup3(int(f.Fd()), fd, 0)
		}
		return f
	}
	return os.Stdout
}

// quietKernel keeps the kernel's messages, all but its emergencies (a
// panic), off the console, as `dmesg -n 1` does; they stay in its log
// buffer. `quiet` on the command line still lets warnings through — under
// TCG on a busy host, the clocksource watchdog's, at any moment — and one
// printed in the middle of the "Cmdline:" line breaks it, so the shim never
// sees the program start and keeps all its output out of the container's.
func quietKernel(printk string) error {
	return os.WriteFile(printk, []byte("1\n"), 0)
}

// loadModules loads the modules that list names, in its order.
func loadModules(list string) error {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if err := loadModule(filepath.Join(filepath.Dir(list), name)); err != nil {
			return err
		}
	}
	return sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load kernel module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load kernel module %s: %w", path, err)
	}
	return nil
}

// mountShares mounts each virtio-fs share read-only (OSv's virtio-fs is
// read-only) by its tag.
func mountShares(mounts []Mount) error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.Dir, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.Device, err)
		}
		err := retry(func() error {
			return unix.Mount(m.Tag(), m.Dir, "virtiofs", unix.MS_RDONLY, "")
		})
		if err != nil {
			return fmt.Errorf("mount virtio-fs tag %s (for %s) on %s: %w (does QEMU have -device vhost-user-fs-pci,tag=%s?)",
				m.Tag(), m.Device, m.Dir, err, m.Tag())
		}
	}
	return nil
}

// retry calls f until it succeeds or deviceWait passed, for devices that a
// driver may still be probing.
func retry(f func() error) error {
	deadline := time.Now().Add(deviceWait)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCommands runs the commands: each foreground one to its end, printing
// "program ARGV0 returned N"; background ones are started and left running.
func runCommands(cfg *Config, con *os.File) {
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	for _, c := range cfg.Commands {
		argv0 := c.Argv[0]
		cmd, err := command(c.Argv, cfg.Env, cwd, con)
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			var nf notFoundError
			if errors.As(err, &nf) {
				fmt.Fprintf(con, "Failed to load object: %s\n", argv0)
			} else {
				fmt.Fprintf(con, "feather-guest: run %s: %v\n", argv0, err)
			}
			if !c.Background {
				fmt.Fprintf(con, "program %s returned 1\n", argv0)
			}
			continue
		}
		if c.Background {
			go cmd.Wait() // reap it
			continue
		}
		cmd.Wait()
		fmt.Fprintf(con, "program %s returned %d\n", argv0, exitCode(cmd.ProcessState))
	}
}

// command prepares argv to run with exactly env (the --env options) in cwd,
// its stdio the console.
func command(argv, env []string, cwd string, con *os.File) (*exec.Cmd, error) {
	path, err := lookPath(argv[0], env, cwd)
	if err != nil {
		return nil, err
	}
	return &exec.Cmd{Path: path, Args: argv, Env: env, Dir: cwd, Stdin: con, Stdout: con, Stderr: con}, nil
}

// notFoundError is a program that does not exist.
type notFoundError struct{ name string }

func (e notFoundError) Error() string { return e.name + ": no such program" }

// lookPath resolves a program name as OSv does for its objects: a path with
// a slash as it is (relative to cwd), a bare name in the directories of the
// PATH in env ("/" when unset).
func lookPath(name string, env []string, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if isExecutable(p) {
			return p, nil
		}
		return "", notFoundError{name}
	}
	path := "/"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", notFoundError{name}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// exitCode is the process's exit status, 128+N for a process killed by
// signal N, as a shell reports it.
func exitCode(s *os.ProcessState) int {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return s.ExitCode()
}

// fatal prints err and powers off.
func fatal(con io.Writer, err error) {
	fmt.Fprintf(con, "feather-guest: fatal: %v\nfeather-guest: powering off\n", err)
	powerOff(con)
}

// powerOff flushes the console and powers the VM off (QEMU then exits 0).
// It never returns.
func powerOff(con io.Writer) {
	if f, ok := con.(*os.File); ok {
		unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain
	}
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(con, "feather-guest: power off: %v\n", err)
	for {
		time.Sleep(time.Hour)
	}
}
