package latentcache

import (
	"fmt"
	"os"
	"path/filepath"
)

// LockName is the lock file of a cache folder's writer.
const LockName = "writer.lock"

// Lock makes c the only writer of its folder: it takes an exclusive lock
// on LockName (released by Close, or by the kernel when the process dies,
// so a killed writer never leaves a stale lock) and then removes the
// temporary files that a killed writer left behind (half-written shards and
// indexes, which no index refers to). Readers need no lock. A second
// writer gets an error instead of waiting.
func (c *Cache) Lock() error {
	if c.lock != nil {
		return nil
	}
	p := filepath.Join(c.dir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("latentcache: %v", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return fmt.Errorf("latentcache: %s is being written by another process (%s is locked: %v)", c.dir, p, err)
	}
	c.lock = f
	for _, pat := range []string{".shard-*.tmp-*", "." + IndexName + ".tmp-*"} {
		stale, _ := filepath.Glob(filepath.Join(c.dir, pat))
		for _, s := range stale {
			if err := os.Remove(s); err != nil {
				return fmt.Errorf("latentcache: removing a killed writer's temporary file: %v", err)
			}
		}
	}
	return nil
}

func (c *Cache) unlock() {
	if c.lock != nil {
		c.lock.Close() // closing the descriptor releases the lock
		c.lock = nil
	}
}
