//go:build !unix

package safetensors

import (
	"errors"
	"os"
)

// mmapFile is not available here; Open reads with ReadAt instead.
func mmapFile(fd *os.File, size int64) ([]byte, func() error, error) {
	return nil, nil, errors.New("memory mapping not supported on this system")
}

// adviseDontNeed does nothing where files are not mapped.
func adviseDontNeed(data []byte, from, to int64) {}
