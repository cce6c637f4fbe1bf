//go:build !unix

package latentcache

import "os"

// lockFile does nothing where flock(2) is not available: one writer per
// cache folder is then the user's responsibility.
func lockFile(f *os.File) error { return nil }
