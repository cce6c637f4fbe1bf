package latentcache

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// IndexName is the index file inside a cache folder.
const IndexName = "index.json"

// Index is the cache's table of contents.
type Index struct {
	Format  int                    `json:"format"`
	VAEs    map[string]VAEInfo     `json:"vaes"`    // by VAE hash
	Entries map[string]IndexEntry  `json:"entries"` // by key
	Shards  []string               `json:"shards"`  // complete shards, in write order
	Extra   map[string]interface{} `json:"extra,omitempty"`
}

// VAEInfo records one VAE that entries were encoded with.
type VAEInfo struct {
	File     string `json:"file"`     // the checkpoint as named on the command line
	DType    string `json:"dtype"`    // encoder dtype
	Settings string `json:"settings"` // encode settings (decode, filters, batch)
	Created  string `json:"created"`  // RFC 3339, first use
	Version  string `json:"loco"`     // loco version that wrote it
}

// IndexEntry locates one entry.
type IndexEntry struct {
	Shard  string `json:"shard"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	CRC32C uint32 `json:"crc32c"` // of the compressed frame
	Shape  [3]int `json:"shape"`
	DType  string `json:"dtype"` // of the stored values: "f16"
	Bucket [2]int `json:"bucket"`
	Flip   bool   `json:"flip"`
	VAE    string `json:"vae"`
	Source string `json:"source_sha256"`
}

func readIndex(dir string) (*Index, error) {
	p := filepath.Join(dir, IndexName)
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return &Index{Format: FormatVersion, VAEs: map[string]VAEInfo{}, Entries: map[string]IndexEntry{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("latentcache: %s: not a valid index: %v", p, err)
	}
	if ix.Format != FormatVersion {
		return nil, fmt.Errorf("latentcache: %s: format %d, this loco reads format %d", p, ix.Format, FormatVersion)
	}
	if ix.VAEs == nil {
		ix.VAEs = map[string]VAEInfo{}
	}
	if ix.Entries == nil {
		ix.Entries = map[string]IndexEntry{}
	}
	for key, ie := range ix.Entries {
		if err := ie.check(); err != nil {
			return nil, fmt.Errorf("latentcache: %s: entry %s: %v (the index is damaged or was edited: move the folder away and run loco-encode again)", p, key, err)
		}
	}
	return &ix, nil
}

// maxFrame bounds an entry's compressed length: a 4×512×512 latent with its
// flip is 4 MiB raw; anything near this is a damaged index.
const maxFrame = 1 << 30

// check validates what Get would otherwise trust: the shard is a plain file
// name of this folder, the frame's place and size are sane, the shape is a
// latent's.
func (ie IndexEntry) check() error {
	switch {
	case ie.Shard == "" || filepath.Base(ie.Shard) != ie.Shard || strings.HasPrefix(ie.Shard, "."):
		return fmt.Errorf("shard %q is not a file name of the cache folder", ie.Shard)
	case ie.Offset < 0 || ie.Length <= 0 || ie.Length > maxFrame:
		return fmt.Errorf("frame at offset %d of length %d", ie.Offset, ie.Length)
	case ie.Shape[0] <= 0 || ie.Shape[1] <= 0 || ie.Shape[2] <= 0 || ie.Shape[0]*ie.Shape[1]*ie.Shape[2] > 1<<26:
		return fmt.Errorf("shape %v", ie.Shape)
	}
	return nil
}

// writeIndex rewrites the index atomically: temporary file, sync, rename,
// sync of the folder. On any error the previous index is intact.
func (c *Cache) writeIndex(ix *Index) error {
	sort.Strings(ix.Shards)
	b, err := json.MarshalIndent(ix, "", " ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	return c.writeAtomic(IndexName, b)
}

func (c *Cache) writeAtomic(name string, b []byte) error {
	dir := c.dir
	f, err := c.create(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("latentcache: %v", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("latentcache: writing %s: %v", filepath.Join(dir, name), err)
	}
	syncDir(dir)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
