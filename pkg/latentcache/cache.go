package latentcache

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Cache is an open cache folder. Reads (Get, Has, Keys, Verify) may run
// from several goroutines; writes (Put, Flush, AddVAE, GC) from one, in
// one process at a time: a writer calls Lock first.
type Cache struct {
	dir string
	ix  *Index

	mu    sync.Mutex
	files map[string]*os.File
	dec   *zstd.Decoder
	enc   *zstd.Encoder
	cur   *shardWriter
	lock  *os.File // held by Lock

	// create makes every file the cache writes (shards, index) under a
	// temporary name; tests replace it to simulate a full disk.
	create func(dir, pattern string) (writeFile, error)
}

// writeFile is what the cache writes through: an *os.File, or in tests a
// file that runs out of space.
type writeFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	Name() string
}

func createTemp(dir, pattern string) (writeFile, error) { return os.CreateTemp(dir, pattern) }

type shardWriter struct {
	name    string // final name
	f       writeFile
	off     int64
	pending map[string]IndexEntry
}

// Open opens the cache folder dir, creating it if needed. A folder without
// an index is an empty cache.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("latentcache: %v", err)
	}
	ix, err := readIndex(dir)
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return &Cache{dir: dir, ix: ix, files: map[string]*os.File{}, dec: dec, enc: enc, create: createTemp}, nil
}

// Dir is the cache folder.
func (c *Cache) Dir() string { return c.dir }

// Index returns the index (read-only for callers).
func (c *Cache) Index() *Index { return c.ix }

// Len is the number of indexed entries.
func (c *Cache) Len() int { return len(c.ix.Entries) }

// Has reports whether key is indexed (or pending in the shard being written).
func (c *Cache) Has(key string) bool {
	if _, ok := c.ix.Entries[key]; ok {
		return true
	}
	if c.cur != nil {
		_, ok := c.cur.pending[key]
		return ok
	}
	return false
}

// AddVAE records a VAE in the index (written at the next Flush).
func (c *Cache) AddVAE(hash string, info VAEInfo) {
	if _, ok := c.ix.VAEs[hash]; !ok {
		c.ix.VAEs[hash] = info
	}
}

// Put appends e to the shard being written. It becomes visible to readers
// of the folder only after Flush. vae is the VAE hash recorded for it.
func (c *Cache) Put(e *Entry, vae string) error {
	if err := e.check(); err != nil {
		return fmt.Errorf("latentcache: entry %s: %v", e.Key, err)
	}
	if c.cur == nil {
		if err := c.startShard(); err != nil {
			return err
		}
	}
	raw, err := msgpack.Marshal(e)
	if err != nil {
		return fmt.Errorf("latentcache: entry %s: %v", e.Key, err)
	}
	frame := c.enc.EncodeAll(raw, nil)
	if _, err := c.cur.f.Write(frame); err != nil {
		// The shard may now end in part of a frame: drop it whole.
		name, n := c.cur.name, len(c.cur.pending)
		c.Abort()
		return fmt.Errorf("latentcache: writing shard %s (entry %s): %v; the %d entries written since the last flush are dropped, the index is unchanged", filepath.Join(c.dir, name), e.Key, err, n)
	}
	c.cur.pending[e.Key] = IndexEntry{
		Shard: c.cur.name, Offset: c.cur.off, Length: int64(len(frame)),
		CRC32C: crc32.Checksum(frame, castagnoli), Shape: e.Shape, DType: "f16",
		Bucket: e.Bucket, Flip: e.HasFlip(), VAE: vae, Source: e.SourceSHA256,
	}
	c.cur.off += int64(len(frame))
	return nil
}

// Pending is the number of entries written since the last Flush.
func (c *Cache) Pending() int {
	if c.cur == nil {
		return 0
	}
	return len(c.cur.pending)
}

func (c *Cache) startShard() error {
	n := len(c.ix.Shards) + 1
	var name string
	for ; ; n++ {
		name = fmt.Sprintf("shard-%06d.zst", n)
		if _, err := os.Stat(filepath.Join(c.dir, name)); os.IsNotExist(err) {
			break
		}
	}
	f, err := c.create(c.dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("latentcache: %v", err)
	}
	c.cur = &shardWriter{name: name, f: f, pending: map[string]IndexEntry{}}
	return nil
}

// Flush completes the shard being written (sync, rename to its final name)
// and then rewrites the index to include its entries. After an error the
// index on disk is the previous one and the pending entries are dropped.
func (c *Cache) Flush() error {
	if c.cur == nil {
		return c.writeIndex(c.ix)
	}
	s := c.cur
	c.cur = nil
	tmp := s.f.Name()
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(c.dir, s.name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("latentcache: writing shard %s: %v", filepath.Join(c.dir, s.name), err)
	}
	syncDir(c.dir)
	old := make(map[string]IndexEntry, len(s.pending))
	for k, v := range s.pending {
		if p, ok := c.ix.Entries[k]; ok {
			old[k] = p
		}
		c.ix.Entries[k] = v
	}
	prevShards := append([]string(nil), c.ix.Shards...)
	// Shards whose every entry was replaced (re-encoded after damage) leave
	// the index; their files are removed once the new index is in place.
	used := map[string]bool{s.name: true}
	for _, ie := range c.ix.Entries {
		used[ie.Shard] = true
	}
	var shards, unused []string
	for _, n := range c.ix.Shards {
		if used[n] {
			shards = append(shards, n)
		} else {
			unused = append(unused, n)
		}
	}
	c.ix.Shards = append(shards, s.name)
	if err := c.writeIndex(c.ix); err != nil {
		// The index on disk is the previous one: so is the one in memory.
		for k := range s.pending {
			delete(c.ix.Entries, k)
		}
		for k, v := range old {
			c.ix.Entries[k] = v
		}
		c.ix.Shards = prevShards
		os.Remove(filepath.Join(c.dir, s.name))
		return err
	}
	c.mu.Lock()
	for _, n := range unused {
		if f, ok := c.files[n]; ok {
			f.Close()
			delete(c.files, n)
		}
		os.Remove(filepath.Join(c.dir, n))
	}
	c.mu.Unlock()
	return nil
}

// Abort drops the shard being written (its temporary file is removed).
func (c *Cache) Abort() {
	if c.cur != nil {
		c.cur.f.Close()
		os.Remove(c.cur.f.Name())
		c.cur = nil
	}
}

// Close aborts any unflushed shard and closes the open shard files.
func (c *Cache) Close() error {
	c.Abort()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = map[string]*os.File{}
	c.dec.Close()
	c.unlock()
	return nil
}

// EntryError is a damaged or unreadable entry: it names the shard and key.
type EntryError struct {
	Shard string // path of the shard file
	Key   string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("latentcache: shard %s: entry %s: %v", e.Shard, e.Key, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// ErrNotFound is returned by Get for a key that is not indexed.
var ErrNotFound = errors.New("not in the cache")

// Get reads the entry of key, checking the frame checksum, the zstd content
// checksum, and the record's key and shape against the index.
func (c *Cache) Get(key string) (*Entry, error) {
	ie, ok := c.ix.Entries[key]
	if !ok {
		return nil, fmt.Errorf("latentcache: %s: entry %s: %w", c.dir, key, ErrNotFound)
	}
	path := filepath.Join(c.dir, ie.Shard)
	fail := func(format string, args ...any) (*Entry, error) {
		return nil, &EntryError{Shard: path, Key: key, Err: fmt.Errorf(format, args...)}
	}
	frame, err := c.frame(key, ie)
	if err != nil {
		return nil, err
	}
	raw, err := c.dec.DecodeAll(frame, nil)
	if err != nil {
		return fail("zstd: %v", err)
	}
	var e Entry
	if err := msgpack.Unmarshal(raw, &e); err != nil {
		return fail("record: %v", err)
	}
	if e.Key != key {
		return fail("record holds key %s", e.Key)
	}
	if e.Shape != ie.Shape {
		return fail("record shape %v, index says %v", e.Shape, ie.Shape)
	}
	if err := e.check(); err != nil {
		return fail("%v", err)
	}
	if e.HasFlip() != ie.Flip {
		return fail("record flip %t, index says %t", e.HasFlip(), ie.Flip)
	}
	return &e, nil
}

// CheckFrame is the cheap check of an indexed entry: its frame is read
// and its crc32c compared with the index, without decompressing or
// decoding it (Get does all of that). loco-encode runs it on every entry a
// rerun would reuse, so a damaged entry is encoded again instead of being
// counted as cached. A key pending in the shard being written is not
// checked (nil).
func (c *Cache) CheckFrame(key string) error {
	ie, ok := c.ix.Entries[key]
	if !ok {
		if c.cur != nil {
			if _, ok := c.cur.pending[key]; ok {
				return nil
			}
		}
		return fmt.Errorf("latentcache: %s: entry %s: %w", c.dir, key, ErrNotFound)
	}
	_, err := c.frame(key, ie)
	return err
}

// frame reads the compressed frame of an indexed entry and checks its
// length and crc32c.
func (c *Cache) frame(key string, ie IndexEntry) ([]byte, error) {
	path := filepath.Join(c.dir, ie.Shard)
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, &EntryError{Shard: path, Key: key, Err: fmt.Errorf(format, args...)}
	}
	f, err := c.shardFile(ie.Shard)
	if err != nil {
		return fail("%v", err)
	}
	frame := make([]byte, ie.Length)
	n, err := f.ReadAt(frame, ie.Offset)
	if n < len(frame) {
		if err == io.EOF || err == nil {
			return fail("truncated: frame at offset %d needs %d bytes, shard ends after %d", ie.Offset, ie.Length, n)
		}
		return fail("%v", err)
	}
	if sum := crc32.Checksum(frame, castagnoli); sum != ie.CRC32C {
		return fail("checksum mismatch (crc32c %08x, index says %08x): the shard is damaged", sum, ie.CRC32C)
	}
	return frame, nil
}

func (c *Cache) shardFile(name string) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[name]; ok {
		return f, nil
	}
	f, err := os.Open(filepath.Join(c.dir, name))
	if err != nil {
		return nil, err
	}
	c.files[name] = f
	return f, nil
}

// Keys returns the indexed keys, sorted.
func (c *Cache) Keys() []string {
	keys := make([]string, 0, len(c.ix.Entries))
	for k := range c.ix.Entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// BucketKeys is the keys of one bucket.
type BucketKeys struct {
	Bucket [2]int
	Keys   []string // sorted
}

// ByBucket groups the indexed keys (or, if keys is non-nil, those keys) by
// bucket, buckets sorted by (w, h).
func (c *Cache) ByBucket(keys []string) ([]BucketKeys, error) {
	if keys == nil {
		keys = c.Keys()
	}
	m := map[[2]int][]string{}
	for _, k := range keys {
		ie, ok := c.ix.Entries[k]
		if !ok {
			return nil, fmt.Errorf("latentcache: %s: entry %s: %w", c.dir, k, ErrNotFound)
		}
		m[ie.Bucket] = append(m[ie.Bucket], k)
	}
	out := make([]BucketKeys, 0, len(m))
	for b, ks := range m {
		sort.Strings(ks)
		out = append(out, BucketKeys{Bucket: b, Keys: ks})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Bucket, out[j].Bucket
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	return out, nil
}

// Verify reads every indexed entry (checksums, record against index) and
// checks that every shard named by the index exists. It returns one error
// per problem (each naming the shard and key); nil means the cache is sound.
func (c *Cache) Verify() []error {
	var errs []error
	for _, k := range c.Keys() {
		if _, err := c.Get(k); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range c.ix.Shards {
		p := filepath.Join(c.dir, s)
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("latentcache: shard %s: %v", p, err))
		}
	}
	return errs
}

// Stats summarizes the cache.
type Stats struct {
	Entries    int
	Flipped    int
	Shards     int
	ShardBytes int64          // bytes of the indexed frames
	PerBucket  map[[2]int]int // entries per bucket
	PerVAE     map[string]int // entries per VAE hash
}

// Stats counts entries, shards and bytes from the index.
func (c *Cache) Stats() Stats {
	s := Stats{Entries: len(c.ix.Entries), Shards: len(c.ix.Shards), PerBucket: map[[2]int]int{}, PerVAE: map[string]int{}}
	for _, ie := range c.ix.Entries {
		s.ShardBytes += ie.Length
		s.PerBucket[ie.Bucket]++
		s.PerVAE[ie.VAE]++
		if ie.Flip {
			s.Flipped++
		}
	}
	return s
}

// GC drops from the index every entry whose key keep does not hold, then
// rewrites the shards that lost entries (copying the kept frames verbatim)
// and removes shards no entry references. It returns the number of entries
// dropped.
func (c *Cache) GC(keep map[string]bool) (int, error) {
	if c.cur != nil {
		return 0, fmt.Errorf("latentcache: GC with unflushed entries")
	}
	dropped := 0
	touched := map[string]bool{}
	for k, ie := range c.ix.Entries {
		if !keep[k] {
			touched[ie.Shard] = true
			dropped++
		}
	}
	if dropped == 0 {
		return 0, nil
	}
	// Copy each touched shard's kept frames into a new shard.
	newIx := &Index{Format: c.ix.Format, VAEs: c.ix.VAEs, Entries: map[string]IndexEntry{}, Extra: c.ix.Extra}
	var newShard *shardWriter
	for k, ie := range c.ix.Entries {
		if !keep[k] {
			continue
		}
		if !touched[ie.Shard] {
			newIx.Entries[k] = ie
			continue
		}
		if newShard == nil {
			if err := c.startShard(); err != nil {
				return 0, err
			}
			newShard, c.cur = c.cur, nil
		}
		f, err := c.shardFile(ie.Shard)
		if err != nil {
			return 0, err
		}
		frame := make([]byte, ie.Length)
		if _, err := f.ReadAt(frame, ie.Offset); err != nil {
			newShard.f.Close()
			os.Remove(newShard.f.Name())
			return 0, &EntryError{Shard: filepath.Join(c.dir, ie.Shard), Key: k, Err: err}
		}
		if crc32.Checksum(frame, castagnoli) != ie.CRC32C {
			newShard.f.Close()
			os.Remove(newShard.f.Name())
			return 0, &EntryError{Shard: filepath.Join(c.dir, ie.Shard), Key: k, Err: fmt.Errorf("checksum mismatch; run verify")}
		}
		if _, err := newShard.f.Write(frame); err != nil {
			newShard.f.Close()
			os.Remove(newShard.f.Name())
			return 0, fmt.Errorf("latentcache: gc: writing shard %s: %v; the cache is unchanged", filepath.Join(c.dir, newShard.name), err)
		}
		ie.Shard, ie.Offset = newShard.name, newShard.off
		newShard.off += ie.Length
		newIx.Entries[k] = ie
	}
	used := map[string]bool{}
	for _, ie := range newIx.Entries {
		used[ie.Shard] = true
	}
	for _, s := range c.ix.Shards {
		if used[s] {
			newIx.Shards = append(newIx.Shards, s)
		}
	}
	if newShard != nil {
		tmp := newShard.f.Name()
		err := newShard.f.Sync()
		if cerr := newShard.f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, filepath.Join(c.dir, newShard.name))
		}
		if err != nil {
			os.Remove(tmp)
			return 0, fmt.Errorf("latentcache: gc: writing shard %s: %v; the cache is unchanged", filepath.Join(c.dir, newShard.name), err)
		}
		newIx.Shards = append(newIx.Shards, newShard.name)
	}
	if err := c.writeIndex(newIx); err != nil {
		if newShard != nil {
			os.Remove(filepath.Join(c.dir, newShard.name))
		}
		return 0, err
	}
	old := c.ix
	c.ix = newIx
	c.mu.Lock()
	for _, s := range old.Shards {
		if !used[s] {
			if f, ok := c.files[s]; ok {
				f.Close()
				delete(c.files, s)
			}
			os.Remove(filepath.Join(c.dir, s))
		}
	}
	c.mu.Unlock()
	return dropped, nil
}
