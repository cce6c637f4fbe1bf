package latentcache

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func randLatent(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 3)
	}
	return v
}

func makeEntry(t testing.TB, r *rand.Rand, i int, bucket [2]int, flip bool) (*Entry, [4][]float32) {
	t.Helper()
	e := &Entry{
		Key:          Key(KeyInput{ImageSHA256: strings.Repeat("ab", 32), Bucket: bucket, Crop: [4]int{i, 0, 0, 0}, VAEHash: "v", Flip: flip}),
		Shape:        [3]int{4, bucket[1] / 8, bucket[0] / 8},
		SourceSHA256: strings.Repeat("cd", 32),
		Bucket:       bucket, Resized: bucket, Crop: [4]int{0, 0, bucket[0], bucket[1]},
	}
	var v [4][]float32
	for j := range v {
		v[j] = randLatent(r, e.Numel())
	}
	if err := e.SetLatent(false, v[0], v[1]); err != nil {
		t.Fatal(err)
	}
	if flip {
		if err := e.SetLatent(true, v[2], v[3]); err != nil {
			t.Fatal(err)
		}
	}
	return e, v
}

// closeF16 checks b is a within fp16 rounding of a (relative 2^-11).
func closeF16(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > math.Abs(float64(want[i]))/1024+1e-7 {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func writeCache(t *testing.T, dir string, n int, flip bool) ([]*Entry, [][4][]float32) {
	t.Helper()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	var es []*Entry
	var vs [][4][]float32
	buckets := [][2]int{{64, 64}, {64, 128}, {128, 64}}
	for i := 0; i < n; i++ {
		e, v := makeEntry(t, r, i, buckets[i%len(buckets)], flip)
		if err := c.Put(e, "v"); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		es, vs = append(es, e), append(vs, v)
	}
	c.AddVAE("v", VAEInfo{File: "vae.safetensors", DType: "f32"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return es, vs
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	es, vs := writeCache(t, dir, 7, true)
	c, err := Open(dir) // a fresh reader, as another process would
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 7 || len(c.Index().Shards) != 2 {
		t.Fatalf("%d entries in %d shards, want 7 in 2", c.Len(), len(c.Index().Shards))
	}
	for i, e := range es {
		got, err := c.Get(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Bucket != e.Bucket || got.Shape != e.Shape || got.SourceSHA256 != e.SourceSHA256 {
			t.Fatalf("entry %d: provenance %v %v, want %v %v", i, got.Bucket, got.Shape, e.Bucket, e.Shape)
		}
		for j, flip := range []bool{false, true} {
			m, l, err := got.Latent(flip)
			if err != nil {
				t.Fatal(err)
			}
			closeF16(t, "mean", m, vs[i][2*j])
			closeF16(t, "logvar", l, vs[i][2*j+1])
		}
	}
	groups, err := c.ByBucket(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 3 || groups[0].Bucket != [2]int{64, 64} || len(groups[0].Keys) != 3 || groups[2].Bucket != [2]int{128, 64} {
		t.Fatalf("ByBucket: %+v", groups)
	}
	if errs := c.Verify(); len(errs) != 0 {
		t.Fatal(errs)
	}
	if _, err := c.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope): %v", err)
	}
	// No temporary files left.
	ents, _ := os.ReadDir(dir)
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("left over: %s", d.Name())
		}
	}
}

func TestCorruption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string, ix IndexEntry) error
		want   string
	}{
		{"flipped byte", func(p string, ie IndexEntry) error {
			b, _ := os.ReadFile(p)
			b[ie.Offset+ie.Length/2] ^= 0x10
			return os.WriteFile(p, b, 0o644)
		}, "checksum mismatch"},
		{"truncated", func(p string, ie IndexEntry) error {
			return os.Truncate(p, ie.Offset+ie.Length-3)
		}, "truncated"},
		{"vanished", func(p string, ie IndexEntry) error { return os.Remove(p) }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			es, vs := writeCache(t, dir, 6, false)
			c, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Damage the last entry of the last shard.
			victim := es[len(es)-1].Key
			ie := c.Index().Entries[victim]
			shard := filepath.Join(dir, ie.Shard)
			if err := tc.damage(shard, ie); err != nil {
				t.Fatal(err)
			}
			_, err = c.Get(victim)
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Key != victim || ee.Shard != shard || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get of damaged entry: %v, want an EntryError naming %s, %s and %q", err, shard, victim, tc.want)
			}
			errs := c.Verify()
			named := false
			for _, e := range errs {
				named = named || strings.Contains(e.Error(), victim) && strings.Contains(e.Error(), ie.Shard)
			}
			if !named {
				t.Fatalf("Verify: %v, want an error naming %s and %s", errs, ie.Shard, victim)
			}
			// Entries of the other shard, and for a flipped byte or a
			// truncation the earlier entries of the same shard, stay readable.
			for i, e := range es[:len(es)-1] {
				if tc.name == "vanished" && c.Index().Entries[e.Key].Shard == ie.Shard {
					continue
				}
				got, err := c.Get(e.Key)
				if err != nil {
					t.Fatalf("undamaged entry %d: %v", i, err)
				}
				m, _, _ := got.Latent(false)
				closeF16(t, "mean", m, vs[i][0])
			}
		})
	}
}

// A record whose frame is intact but sits under another key in the index
// (an index pointing at the wrong frame) is refused.
func TestIndexMismatch(t *testing.T) {
	dir := t.TempDir()
	es, _ := writeCache(t, dir, 2, false)
	c, _ := Open(dir)
	defer c.Close()
	a, b := es[0].Key, es[1].Key
	c.ix.Entries[a], c.ix.Entries[b] = c.ix.Entries[b], c.ix.Entries[a]
	if _, err := c.Get(a); err == nil || !strings.Contains(err.Error(), "record holds key "+b) {
		t.Fatalf("swapped index entries: %v", err)
	}
}

// A killed writer (no Flush) leaves nothing a reader would use.
func TestUnflushedIsInvisible(t *testing.T) {
	dir := t.TempDir()
	writeCache(t, dir, 3, false)
	c, _ := Open(dir)
	r := rand.New(rand.NewPCG(9, 9))
	e, _ := makeEntry(t, r, 99, [2]int{64, 64}, false)
	if err := c.Put(e, "v"); err != nil {
		t.Fatal(err)
	}
	if !c.Has(e.Key) {
		t.Fatal("pending entry not reported by Has")
	}
	// Simulate the kill: the process ends without Flush or Close.
	c2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Has(e.Key) || c2.Len() != 3 {
		t.Fatalf("unflushed entry visible: has=%v len=%d", c2.Has(e.Key), c2.Len())
	}
	if errs := c2.Verify(); len(errs) != 0 {
		t.Fatal(errs)
	}
	c.Close()
}

func TestGC(t *testing.T) {
	dir := t.TempDir()
	es, vs := writeCache(t, dir, 6, true)
	c, _ := Open(dir)
	defer c.Close()
	keep := map[string]bool{es[0].Key: true, es[5].Key: true}
	n, err := c.GC(keep)
	if err != nil || n != 4 {
		t.Fatalf("GC: %d, %v", n, err)
	}
	c2, _ := Open(dir)
	defer c2.Close()
	if c2.Len() != 2 {
		t.Fatalf("after GC %d entries", c2.Len())
	}
	if errs := c2.Verify(); len(errs) != 0 {
		t.Fatal(errs)
	}
	got, err := c2.Get(es[5].Key)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := got.Latent(true)
	closeF16(t, "flip mean", m, vs[5][2])
	shards, _ := filepath.Glob(filepath.Join(dir, "shard-*"))
	if len(shards) != len(c2.Index().Shards) {
		t.Fatalf("shard files %v, index %v", shards, c2.Index().Shards)
	}
}

func TestKeySensitivity(t *testing.T) {
	base := KeyInput{ImageSHA256: strings.Repeat("01", 32), Decode: "exif=1,rgb8", Bucket: [2]int{512, 512},
		Resized: [2]int{512, 600}, Crop: [4]int{0, 44, 512, 556}, Filter: "area", VAEHash: "abc", DType: "f32"}
	k0 := Key(base)
	if Key(base) != k0 || len(k0) != 32 {
		t.Fatalf("key %q not stable / not 32 hex digits", k0)
	}
	changes := map[string]func(*KeyInput){
		"image":   func(k *KeyInput) { k.ImageSHA256 = strings.Repeat("02", 32) },
		"decode":  func(k *KeyInput) { k.Decode = "exif=0,rgb8" },
		"bucket":  func(k *KeyInput) { k.Bucket = [2]int{576, 448} },
		"resized": func(k *KeyInput) { k.Resized = [2]int{512, 601} },
		"crop":    func(k *KeyInput) { k.Crop = [4]int{0, 43, 512, 555} },
		"filter":  func(k *KeyInput) { k.Filter = "lanczos" },
		"flip":    func(k *KeyInput) { k.Flip = true },
		"vae":     func(k *KeyInput) { k.VAEHash = "abd" },
		"dtype":   func(k *KeyInput) { k.DType = "f16" },
	}
	seen := map[string]string{k0: "base"}
	for name, f := range changes {
		in := base
		f(&in)
		k := Key(in)
		if prev, ok := seen[k]; ok {
			t.Errorf("changing %s gives the key of %s", name, prev)
		}
		seen[k] = name
	}
}

// One writer at a time; the next writer removes a killed writer's
// temporary files and keeps everything indexed.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	writeCache(t, dir, 3, false)
	// A killed writer: a half-written shard and index under temporary names.
	for _, n := range []string{".shard-000003.zst.tmp-123", ".index.json.tmp-456"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := Open(dir)
	if err := a.Lock(); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*")); len(tmp) != 0 {
		t.Fatalf("temporary files not removed by Lock: %v", tmp)
	}
	b, _ := Open(dir)
	if err := b.Lock(); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second writer: %v, want a lock error", err)
	}
	if b.Len() != 3 || len(b.Verify()) != 0 {
		t.Fatalf("reader beside a writer: %d entries, %v", b.Len(), b.Verify())
	}
	a.Close()
	if err := b.Lock(); err != nil {
		t.Fatalf("lock after the first writer closed: %v", err)
	}
	b.Close()
}

// A damaged entry is found by CheckFrame and replaced by putting it again;
// a shard all of whose entries were replaced leaves the index and the disk.
func TestReplaceDamaged(t *testing.T) {
	dir := t.TempDir()
	es, vs := writeCache(t, dir, 4, false) // shard 1: entries 0–2, shard 2: entry 3
	c, _ := Open(dir)
	defer c.Close()
	for _, e := range es {
		if err := c.CheckFrame(e.Key); err != nil {
			t.Fatalf("sound entry: %v", err)
		}
	}
	if err := c.CheckFrame("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CheckFrame(nope): %v", err)
	}
	ie1, ie3 := c.Index().Entries[es[1].Key], c.Index().Entries[es[3].Key]
	if ie1.Shard == ie3.Shard {
		t.Fatalf("entries 1 and 3 in the same shard %s", ie1.Shard)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ie1.Shard))
	b[ie1.Offset+ie1.Length/2] ^= 1
	os.WriteFile(filepath.Join(dir, ie1.Shard), b, 0o644)
	os.Truncate(filepath.Join(dir, ie3.Shard), ie3.Length-1)
	for _, i := range []int{1, 3} {
		var ee *EntryError
		if err := c.CheckFrame(es[i].Key); !errors.As(err, &ee) || ee.Key != es[i].Key {
			t.Fatalf("damaged entry %d: CheckFrame says %v", i, err)
		}
	}
	for _, i := range []int{0, 2} {
		if err := c.CheckFrame(es[i].Key); err != nil {
			t.Fatalf("entry %d beside the damaged one: %v", i, err)
		}
	}
	if err := c.Put(es[1], "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(es[3], "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	r, _ := Open(dir)
	defer r.Close()
	if errs := r.Verify(); r.Len() != 4 || len(errs) != 0 {
		t.Fatalf("after replacing: %d entries, %v", r.Len(), errs)
	}
	if shards := r.Index().Shards; len(shards) != 2 || shards[0] != ie1.Shard {
		t.Fatalf("shards %v: want %s (still holding entries 0 and 2) and the new one", shards, ie1.Shard)
	}
	if _, err := os.Stat(filepath.Join(dir, ie3.Shard)); !os.IsNotExist(err) {
		t.Fatalf("shard %s, no longer referenced, still on disk (%v)", ie3.Shard, err)
	}
	for i, e := range es {
		got, err := r.Get(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		m, _, _ := got.Latent(false)
		closeF16(t, "mean", m, vs[i][0])
	}
}

// A damaged or hand-edited index is refused at Open, naming the entry,
// instead of reading outside the folder or allocating a huge frame.
func TestDamagedIndexEntries(t *testing.T) {
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"shard path", `"shard": "shard-`, `"shard": "../shard-`, "not a file name"},
		{"hidden shard", `"shard": "shard-`, `"shard": ".shard-`, "not a file name"},
		{"negative offset", `"offset": 0,`, `"offset": -5,`, "frame at offset -5"},
		{"huge length", `"length": `, `"length": 9999999999`, "frame at offset"},
		{"zero shape", `"shape": [`, `"shape": [0, `, "shape"}, // JSON drops the fourth value
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCache(t, dir, 2, false)
			p := filepath.Join(dir, IndexName)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			if !strings.Contains(s, c.old) {
				t.Fatalf("index has no %q:\n%s", c.old, s)
			}
			s = strings.Replace(s, c.old, c.new, 1)
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), IndexName) {
				t.Fatalf("Open of an index with a bad %s: %v, want an error naming the index and %q", c.name, err, c.want)
			}
		})
	}
}
