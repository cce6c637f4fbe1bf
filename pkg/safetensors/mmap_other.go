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
