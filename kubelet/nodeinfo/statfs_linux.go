package nodeinfo

import "syscall"

// statFS measures the file system holding dir.
func statFS(dir string) (fsStats, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fsStats{}, err
	}
	return fsStats{
		total:     int64(st.Blocks) * int64(st.Bsize),
		available: int64(st.Bavail) * int64(st.Bsize),
	}, nil
}
