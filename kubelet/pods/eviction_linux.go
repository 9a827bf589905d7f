package pods

import (
	"io/fs"
	"syscall"
)

// fileID names a file on the node: device and inode.
type fileID struct{ dev, ino uint64 }

// fileBlocks returns fi's identity, the bytes of disk it takes (st_blocks)
// and its link count.
func fileBlocks(fi fs.FileInfo) (fileID, int64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), st.Ino}, st.Blocks * 512, uint64(st.Nlink)
	}
	return fileID{}, fi.Size(), 1
}
