package store

import (
	"os"
	"path/filepath"
	"syscall"
)

// stRdonly is ST_RDONLY in statfs(2)'s f_flags.
const stRdonly = 0x1

// statDisk asks the file system file's directory is on how full it is and
// whether it is mounted read-only; it reports nothing it cannot find out.
func statDisk(file string) disk {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(file), &st); err != nil {
		return disk{}
	}
	free := st.Bavail // root may use the blocks reserved for it
	if os.Geteuid() == 0 {
		free = st.Bfree
	}
	return disk{
		full:     free*uint64(st.Bsize) < 1<<20,
		noInodes: st.Files > 0 && st.Ffree == 0,
		readOnly: st.Flags&stRdonly != 0,
	}
}
