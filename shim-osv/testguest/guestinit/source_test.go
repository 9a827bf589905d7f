package guestinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSourceRead(t *testing.T) {
	// disk returns a disk image holding b at DiskOffset.
	disk := func(b []byte) []byte { return append(make([]byte, DiskOffset), b...) }
	long := strings.Repeat("x", DiskMax)
	for _, tc := range []struct {
		name     string
		proc     string // fixture in testdata/
		disk     []byte // nil: no disk
		want     string
		fromDisk bool
		wantErr  string
	}{
		{name: "direct", proc: "proc-cmdline-direct", want: `--env=A=1 --cwd=/tmp /args x "y z"`},
		{name: "direct ignores the disk", proc: "proc-cmdline-direct", disk: disk([]byte("/exit 7\x00")), want: `--env=A=1 --cwd=/tmp /args x "y z"`},
		{name: "token must be whole", proc: "proc-cmdline-notdisk", want: "feather.cmdline=diskette quiet"},
		{name: "disk", proc: "proc-cmdline-disk", disk: disk([]byte("/exit 7\x00garbage")), want: "/exit 7", fromDisk: true},
		{name: "disk sector padded with zeros", proc: "proc-cmdline-disk", disk: disk(append([]byte("/hello"), make([]byte, 506)...)), want: "/hello", fromDisk: true},
		{name: "longest", proc: "proc-cmdline-disk", disk: disk([]byte(long + "\x00")), want: long, fromDisk: true},
		{name: "too long", proc: "proc-cmdline-disk", disk: disk([]byte(long + "x\x00")), fromDisk: true, wantErr: "no NUL within 32255 bytes"},
		{name: "disk ends without NUL", proc: "proc-cmdline-disk", disk: disk([]byte("/hello")), fromDisk: true, wantErr: "no NUL"},
		{name: "empty disk command line", proc: "proc-cmdline-disk", disk: disk([]byte{0}), want: "", fromDisk: true},
		{name: "no disk", proc: "proc-cmdline-disk", fromDisk: true, wantErr: "read command line from boot disk"},
		{name: "no /proc/cmdline", proc: "missing", wantErr: "read kernel command line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Source{ProcCmdline: filepath.Join("testdata", tc.proc), Disk: filepath.Join(t.TempDir(), "vda")}
			if tc.disk != nil {
				if err := os.WriteFile(s.Disk, tc.disk, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, fromDisk, err := s.Read()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Read() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || fromDisk != tc.fromDisk {
				t.Errorf("Read() = %q, %v; want %q, %v", got, fromDisk, tc.want, tc.fromDisk)
			}
		})
	}
}
