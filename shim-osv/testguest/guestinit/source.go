package guestinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Where the OSv command line comes from.
const (
	// DiskToken on the kernel command line says the command line is on
	// the boot disk; the disk image's bootloader passes it.
	DiskToken = "feather.cmdline=disk"
	// DiskOffset and DiskMax locate it there: a NUL-terminated string at
	// byte 512 of the disk, as OSv reads it.
	DiskOffset = 512
	DiskMax    = 32255
)

// Source names the files the command line is read from; tests point them at
// fixtures.
type Source struct {
	ProcCmdline string // /proc/cmdline
	Disk        string // the boot disk, /dev/vda
}

// DefaultSource is the guest's own.
var DefaultSource = Source{ProcCmdline: "/proc/cmdline", Disk: "/dev/vda"}

// Read returns the OSv command line: the NUL-terminated string at DiskOffset
// of the boot disk when the kernel command line holds DiskToken, else the
// kernel command line as it is (direct boot: -append "<OSv command line>").
// fromDisk tells which.
func (s Source) Read() (cmdline string, fromDisk bool, err error) {
	b, err := os.ReadFile(s.ProcCmdline)
	if err != nil {
		return "", false, fmt.Errorf("read kernel command line: %w", err)
	}
	kernel := strings.TrimRight(string(b), "\n")
	if !hasToken(kernel, DiskToken) {
		return kernel, false, nil
	}
	f, err := os.Open(s.Disk)
	if err != nil {
		return "", true, fmt.Errorf("read command line from boot disk: %w", err)
	}
	defer f.Close()
	cmdline, err = readDisk(f)
	if err != nil {
		return "", true, fmt.Errorf("read command line at offset %d of %s: %w", DiskOffset, s.Disk, err)
	}
	return cmdline, true, nil
}

// readDisk reads the NUL-terminated string at DiskOffset of r.
func readDisk(r io.ReaderAt) (string, error) {
	buf := make([]byte, DiskMax+1)
	n, err := r.ReadAt(buf, DiskOffset)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	buf = buf[:n]
	i := bytes.IndexByte(buf, 0)
	if i < 0 {
		return "", fmt.Errorf("no NUL within %d bytes: not an OSv command line", DiskMax)
	}
	return string(buf[:i]), nil
}

// hasToken reports whether the white-space separated line holds tok.
func hasToken(line, tok string) bool {
	for _, f := range strings.Fields(line) {
		if f == tok {
			return true
		}
	}
	return false
}
