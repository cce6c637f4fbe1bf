//go:build unix

package safetensors

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// mmapFile maps the whole file read-only. It fails for empty files and
// wherever the system refuses; the caller then falls back to ReadAt.
func mmapFile(fd *os.File, size int64) ([]byte, func() error, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, errors.New("cannot map this size")
	}
	data, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return unix.Munmap(data) }, nil
}

// adviseDontNeed drops the whole pages of data[from:to] (a read-only shared
// file mapping) from the resident set. Errors are ignored: it is advice.
func adviseDontNeed(data []byte, from, to int64) {
	page := int64(os.Getpagesize())
	from = (from + page - 1) / page * page
	to = to / page * page
	if to > int64(len(data)) {
		to = int64(len(data)) / page * page
	}
	if from >= to {
		return
	}
	_ = unix.Madvise(data[from:to], unix.MADV_DONTNEED)
}
