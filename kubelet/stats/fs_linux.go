package stats

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

func statFS(path string) (fsInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fsInfo{}, err
	}
	bs := uint64(st.Bsize)
	return fsInfo{capacity: st.Blocks * bs, free: st.Bfree * bs, available: st.Bavail * bs,
		inodes: st.Files, inodesFree: st.Ffree}, nil
}

// allocated is the bytes of disk a file takes (st_blocks).
func allocated(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(fi.Size())
}

// bootTime reads btime from /proc/stat.
func bootTime(proc string) time.Time {
	f, err := os.Open(filepath.Join(proc, "stat"))
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}

// rlimit reports the node's process limit and how many processes run.
func rlimit(proc string, now metav1.Time) *statsv1alpha1.RlimitStats {
	r := &statsv1alpha1.RlimitStats{Time: now}
	if data, err := os.ReadFile(filepath.Join(proc, "sys/kernel/pid_max")); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
			r.MaxPID = &n
		}
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		n := int64(si.Procs)
		r.NumOfRunningProcesses = &n
	}
	return r
}
