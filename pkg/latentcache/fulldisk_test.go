package latentcache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// disk hands out a budget of bytes to the files the cache creates whose
// temporary name contains match ("shard" or "index"); a write past it
// writes what fits and fails with ENOSPC, as a full file system does.
// syncFails makes their Sync fail instead (space found missing only at
// write-back, as with delayed allocation).
type disk struct {
	match     string
	left      int
	syncFails bool
}

type diskFile struct {
	*os.File
	d *disk
}

func (f diskFile) Write(p []byte) (int, error) {
	if !strings.Contains(filepath.Base(f.Name()), f.d.match) {
		return f.File.Write(p)
	}
	if len(p) <= f.d.left {
		f.d.left -= len(p)
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.d.left])
	f.d.left = 0
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f diskFile) Sync() error {
	if f.d.syncFails && strings.Contains(filepath.Base(f.Name()), f.d.match) {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Sync()
}

func (d *disk) create(dir, pattern string) (writeFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return diskFile{f, d}, nil
}

// TestFullDisk runs out of space while a shard is written, while the index
// is written, and at the index's fsync: each gives an error naming the file
// and "no space left", the index on disk stays byte-for-byte the previous
// one and reads back whole, no temporary file is left, and once space is
// free again the same Cache writes the entries.
func TestFullDisk(t *testing.T) {
	for _, tc := range []struct {
		name  string
		disk  disk
		where string // the error happens in Put or Flush
		file  string // and names this file
	}{
		{"shard", disk{match: "shard", left: 5000}, "Put", "shard-000003.zst"},
		{"shard sync", disk{match: "shard", left: 1 << 30, syncFails: true}, "Flush", "shard-000003.zst"},
		{"index", disk{match: "index", left: 2000}, "Flush", IndexName},
		{"index sync", disk{match: "index", left: 1 << 30, syncFails: true}, "Flush", IndexName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCache(t, dir, 4, false)
			before, err := os.ReadFile(filepath.Join(dir, IndexName))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			oldKeys := c.Keys()
			d := tc.disk
			c.create = d.create

			// New 64×64-pixel entries (2 × 256 fp16 values, ~1 KiB each).
			r := rand.New(rand.NewPCG(7, 7))
			var fresh []*Entry
			var failed error
			where := ""
			for i := 0; i < 12 && failed == nil; i++ {
				e, _ := makeEntry(t, r, 100+i, [2]int{64, 64}, false)
				fresh = append(fresh, e)
				if failed = c.Put(e, "v"); failed != nil {
					where = "Put"
				}
			}
			if failed == nil {
				if failed = c.Flush(); failed != nil {
					where = "Flush"
				}
			}
			if failed == nil {
				t.Fatalf("no error with %d bytes of space", tc.disk.left)
			}
			if where != tc.where || !strings.Contains(failed.Error(), "no space left on device") || !strings.Contains(failed.Error(), tc.file) {
				t.Fatalf("%s: %v; want an error in %s naming %s and ENOSPC", where, failed, tc.where, tc.file)
			}
			t.Logf("%s: %v", where, failed)

			// The previous index: unchanged on disk and in memory.
			after, err := os.ReadFile(filepath.Join(dir, IndexName))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatalf("index.json changed by the failed write")
			}
			if c.Len() != len(oldKeys) || c.Pending() != 0 {
				t.Fatalf("after the failure: %d entries indexed, %d pending; want %d and 0", c.Len(), c.Pending(), len(oldKeys))
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*"))
			if len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			r2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			if r2.Len() != len(oldKeys) || len(r2.Verify()) != 0 {
				t.Fatalf("another reader sees %d entries, %v; want %d, sound", r2.Len(), r2.Verify(), len(oldKeys))
			}
			shards, _ := filepath.Glob(filepath.Join(dir, "shard-*"))
			if len(shards) != len(r2.Index().Shards) {
				t.Fatalf("shard files %v, index lists %v", shards, r2.Index().Shards)
			}

			// Space again: the same Cache writes them.
			d.left, d.syncFails = 1<<30, false
			for _, e := range fresh {
				if err := c.Put(e, "v"); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			r3, _ := Open(dir)
			defer r3.Close()
			if r3.Len() != len(oldKeys)+len(fresh) || len(r3.Verify()) != 0 {
				t.Fatalf("after freeing space: %d entries, %v", r3.Len(), r3.Verify())
			}
		})
	}
}

// TestFullDiskGC: GC copying kept frames into a new shard, or rewriting
// the index, on a full disk fails and leaves the cache as it was.
func TestFullDiskGC(t *testing.T) {
	for _, match := range []string{"shard", "index"} {
		t.Run(match, func(t *testing.T) {
			dir := t.TempDir()
			es, _ := writeCache(t, dir, 6, false)
			before, _ := os.ReadFile(filepath.Join(dir, IndexName))
			c, _ := Open(dir)
			defer c.Close()
			d := &disk{match: match, left: 100}
			c.create = d.create
			_, err := c.GC(map[string]bool{es[0].Key: true, es[4].Key: true})
			if err == nil || !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("GC on a full disk: %v", err)
			}
			after, _ := os.ReadFile(filepath.Join(dir, IndexName))
			if !bytes.Equal(before, after) || c.Len() != 6 {
				t.Fatalf("GC failure changed the index (%d entries in memory)", c.Len())
			}
			r, _ := Open(dir)
			defer r.Close()
			if errs := r.Verify(); r.Len() != 6 || len(errs) != 0 {
				t.Fatalf("after a failed GC: %d entries, %v", r.Len(), errs)
			}
			files, _ := os.ReadDir(dir)
			if len(files) != 1+len(r.Index().Shards) {
				var names []string
				for _, f := range files {
					names = append(names, f.Name())
				}
				t.Fatalf("files after a failed GC: %v; want index.json and %v", names, r.Index().Shards)
			}
		})
	}
}
