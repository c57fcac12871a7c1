package sshrunner

import (
	"os"
	"syscall"
)

// fileIdentity is the device, inode and ctime of fi, from stat(2).
func fileIdentity(fi os.FileInfo) (dev, ino uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0
	}
	return uint64(st.Dev), st.Ino, st.Ctim.Nano()
}
