// Command loco-encode encodes bucketed records (JSON Lines from
// loco-bucket) with the VAE into a latent cache folder and writes the
// records with their cache key added (see ../../pkg/latentcache).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/internal/device"
	"loco/pkg/latentcache"
	"loco/pkg/latentcache/encode"
	"loco/pkg/manifest"
)

// KeyField is the record field loco-encode adds: the entry's cache key.
const KeyField = "latent_key"

const usage = `loco-encode reads bucketed image records (JSON Lines from loco-bucket),
decodes each image (EXIF orientation applied), resizes and crops it as the
record says, encodes it with the VAE of --vae in batches of one bucket, and
stores the latent distribution (mean and log-variance, fp16) in the cache
folder -o. The records go to stdout with the field "latent_key" added.

Entries are content-addressed (image bytes, bucket, crop, resize, VAE
weights): a rerun encodes only what is not cached yet, and a changed image
or VAE is encoded anew. Captions and repeats are not part of the cache.
A rerun checks the checksum of every entry it would reuse and encodes a
damaged one again. One loco-encode writes a cache at a time (a lock file).

Examples:
   loco-scan img --reg reg | loco-bucket -r 512 | loco-encode --vae sd15.safetensors -o cache > train.jsonl
   loco-encode --vae sd15.safetensors -o cache --flip -i bucketed.jsonl > train.jsonl
   loco-encode -o cache --verify          # re-check every checksum
   loco-encode -o cache --stats           # entries, bytes, per bucket
   loco-encode -o cache --list | jq .     # the index as JSON Lines
   loco-encode -o cache --gc -i train.jsonl   # drop entries no record uses`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "vae", Usage: "SD 1.x checkpoint or VAE file (.safetensors, keys first_stage_model.*)"},
		&ucli.StringFlag{Name: "cache", Aliases: []string{"o"}, Usage: "the cache folder (created if needed; required)"},
		&ucli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: "-", Usage: "read records from this file (- for stdin)"},
		&ucli.StringFlag{Name: "output", Value: "-", Usage: "write the records to this file (- for stdout)"},
		&ucli.BoolFlag{Name: "flip", Usage: "also encode the horizontally mirrored image (flip augmentation)"},
		&ucli.IntFlag{Name: "batch-size", Value: 4, Usage: "images per encoder batch (one bucket per batch)"},
		&ucli.IntFlag{Name: "flush-every", Value: 64, Usage: "complete a shard and update the index after this many new entries"},
		&ucli.BoolFlag{Name: "strict", Usage: "fail on an unreadable image instead of skipping it"},
		&ucli.BoolFlag{Name: "verify", Usage: "check every entry of the cache and exit"},
		&ucli.BoolFlag{Name: "stats", Usage: "print cache statistics and exit"},
		&ucli.BoolFlag{Name: "list", Usage: "print the index as JSON Lines and exit"},
		&ucli.BoolFlag{Name: "gc", Usage: "drop the entries that no record of the input references (by latent_key) and exit"},
		cli.ProgressFlag(""),
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto (a CUDA GPU when one is found, else the CPU), cuda or cpu; the VAE runs in float32 on either"},
	}
	app := &ucli.App{
		Name:        "loco-encode",
		Usage:       "encode bucketed records into a latent cache",
		UsageText:   "loco-encode --vae MODEL -o CACHE [options] < bucketed.jsonl > train.jsonl",
		Description: usage,
		Flags:       flags,
		Action: func(c *ucli.Context) error {
			return action(c, stdin, stdout, stderr)
		},
	}
	return cli.Run(app, cli.Permute(args, flags), stdout, stderr)
}

func action(c *ucli.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	rep := cli.NewReporter("loco-encode", stderr)
	if c.NArg() > 0 {
		return cli.Usagef("unexpected argument %q (read records with -i FILE or from stdin)", c.Args().First())
	}
	mode, err := cli.ParseProgress(c.String("progress"))
	if err != nil {
		return err
	}
	dir := c.String("cache")
	if dir == "" {
		return cli.Usagef("-o CACHE (the cache folder) is required")
	}
	n := 0
	for _, f := range []string{"verify", "stats", "list", "gc"} {
		if c.Bool(f) {
			n++
		}
	}
	if n > 1 {
		return cli.Usagef("--verify, --stats, --list and --gc are exclusive")
	}
	if c.Int("batch-size") < 1 || c.Int("flush-every") < 1 {
		return cli.Usagef("--batch-size and --flush-every must be at least 1")
	}
	if n == 1 {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("cache folder %s: %v", dir, err)
		}
	}
	cache, err := latentcache.Open(dir)
	if err != nil {
		return err
	}
	defer cache.Close()
	switch {
	case c.Bool("verify"):
		return verify(cache, rep)
	case c.Bool("stats"):
		return stats(cache, rep, stdout)
	case c.Bool("list"):
		return list(cache, stdout)
	case c.Bool("gc"):
		return gc(c, cache, rep, stdin)
	}
	if c.String("vae") == "" {
		return cli.Usagef("--vae MODEL is required to encode")
	}
	return encodeRecords(c, cache, rep, mode, stdin, stdout, stderr)
}

func verify(cache *latentcache.Cache, rep *cli.Reporter) error {
	errs := cache.Verify()
	for _, e := range errs {
		rep.Printf("loco-encode: %v\n", e)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %d problem(s) in %d entries", cache.Dir(), len(errs), cache.Len())
	}
	rep.Notef("%s: %d entries in %d shard(s) verified", cache.Dir(), cache.Len(), len(cache.Index().Shards))
	return nil
}

func stats(cache *latentcache.Cache, rep *cli.Reporter, stdout io.Writer) error {
	s := cache.Stats()
	fmt.Fprintf(stdout, "entries %d (with flip %d), shards %d, %d bytes", s.Entries, s.Flipped, s.Shards, s.ShardBytes)
	if s.Entries > 0 {
		fmt.Fprintf(stdout, ", %.0f bytes per entry", float64(s.ShardBytes)/float64(s.Entries))
	}
	fmt.Fprintln(stdout)
	var bs [][2]int
	for b := range s.PerBucket {
		bs = append(bs, b)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i][0] < bs[j][0] || bs[i][0] == bs[j][0] && bs[i][1] < bs[j][1] })
	for _, b := range bs {
		fmt.Fprintf(stdout, "bucket %dx%d %d\n", b[0], b[1], s.PerBucket[b])
	}
	for h, n := range s.PerVAE {
		fmt.Fprintf(stdout, "vae %s %s %d\n", h, cache.Index().VAEs[h].File, n)
	}
	return nil
}

func list(cache *latentcache.Cache, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	for _, k := range cache.Keys() {
		ie := cache.Index().Entries[k]
		if err := enc.Encode(struct {
			Key string `json:"key"`
			latentcache.IndexEntry
		}{k, ie}); err != nil {
			return err
		}
	}
	return nil
}

func gc(c *ucli.Context, cache *latentcache.Cache, rep *cli.Reporter, stdin io.Reader) error {
	in, closeIn, err := cli.OpenInput(c.String("input"), stdin)
	if err != nil {
		return err
	}
	defer closeIn()
	recs, err := manifest.ReadAll(in, displayName(c.String("input")), KeyField)
	if err != nil {
		return err
	}
	if err := cache.Lock(); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, r := range recs {
		var k string
		if err := json.Unmarshal(r.Extra[KeyField], &k); err != nil {
			return fmt.Errorf("%s: %s is not a string", r.Path, KeyField)
		}
		keep[k] = true
	}
	dropped, err := cache.GC(keep)
	if err != nil {
		return err
	}
	rep.Notef("gc: dropped %d entries, %d kept", dropped, cache.Len())
	return nil
}

type pending struct {
	job  *encode.Job
	recs []int // record indices sharing this key
}

func encodeRecords(c *ucli.Context, cache *latentcache.Cache, rep *cli.Reporter, mode cli.ProgressMode, stdin io.Reader, stdout, stderr io.Writer) error {
	in, closeIn, err := cli.OpenInput(c.String("input"), stdin)
	if err != nil {
		return err
	}
	defer closeIn()
	name := displayName(c.String("input"))
	recs, err := manifest.ReadAll(in, name, "bucket", "resized", "crop")
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("no records in %s (expected JSON Lines from loco-bucket)", name)
	}
	if err := cache.Lock(); err != nil {
		return err
	}
	// The VAE is loaded and checked before any image is read.
	// The VAE runs in float32 on either device (SD 1.x's VAE is known to
	// overflow in fp16 at large sizes), so the cache keys agree.
	e, err := device.Engine(c.String("device"), "no", "encoding", rep.Notef)
	if err != nil {
		return err
	}
	model, err := encode.LoadVAE(c.String("vae"), e)
	if err != nil {
		return err
	}
	cache.AddVAE(model.Hash, latentcache.VAEInfo{
		File: c.String("vae"), DType: encode.DType, Settings: encode.DecodeSettings + ",crop=center",
		Created: time.Now().UTC().Format(time.RFC3339), Version: "loco-encode",
	})
	flip, strict := c.Bool("flip"), c.Bool("strict")
	factor := model.Cfg.Factor()

	for i, r := range recs {
		if _, err := encode.Check(r, factor); err != nil {
			return &manifest.LineError{Name: name, Line: i + 1, Err: err}
		}
	}
	keys := make([]string, len(recs))
	skip := make([]bool, len(recs))
	bad := 0
	skipBad := func(i int, err error) error {
		if strict {
			return fmt.Errorf("%w (--strict)", err)
		}
		rep.Warnf("%v; skipped", err)
		skip[i] = true
		bad++
		return nil
	}
	todo := map[string]*pending{}
	var order []*pending
	reusedKeys := map[string]bool{}
	damaged := 0
	for i, r := range recs {
		b, err := os.ReadFile(r.Path)
		if err != nil {
			if err := skipBad(i, fmt.Errorf("%s: %v", r.Path, unwrapPath(err))); err != nil {
				return err
			}
			continue
		}
		job, err := encode.Plan(r, b, model.Hash, flip, factor)
		if err != nil {
			return &manifest.LineError{Name: name, Line: i + 1, Err: err}
		}
		keys[i] = job.Key
		switch p, ok := todo[job.Key]; {
		case ok:
			p.recs = append(p.recs, i)
		case reusedKeys[job.Key]:
		case cache.Has(job.Key) && checkReused(cache, job.Key, rep, &damaged):
			reusedKeys[job.Key] = true
		default:
			p := &pending{job: job, recs: []int{i}}
			todo[job.Key] = p
			order = append(order, p)
		}
	}
	// Group by bucket (sorted), keep the input order within a bucket.
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i].job.Assign.Bucket, order[j].job.Assign.Bucket
		return a.W*a.H < b.W*b.H || a.W*a.H == b.W*b.H && a.W < b.W
	})
	reused := len(reusedKeys)
	prog := cli.NewProgress(mode, stderr, "loco-encode: encoding", len(order)).Rate("images")
	rep.Progress = prog // warnings go above the progress line
	encoded := 0
	start := time.Now()
	bs, flushEvery := c.Int("batch-size"), c.Int("flush-every")
	for lo := 0; lo < len(order); {
		bk := order[lo].job.Assign.Bucket
		hi := lo
		for hi < len(order) && hi-lo < bs && order[hi].job.Assign.Bucket == bk {
			hi++
		}
		var batch []*pending
		var px, fpx []float32
		for _, p := range order[lo:hi] {
			img, _, err := readImage(p.job.Rec.Path)
			var a, f []float32
			if err == nil {
				a, f, err = encode.Pixels(img, p.job.Assign, flip)
			}
			if err != nil {
				for _, i := range p.recs {
					if err := skipBad(i, fmt.Errorf("%s: %v", p.job.Rec.Path, err)); err != nil {
						return err
					}
				}
				continue
			}
			batch = append(batch, p)
			px = append(px, a...)
			fpx = append(fpx, f...)
		}
		lo = hi
		if len(batch) == 0 {
			continue
		}
		means, logvars := model.Encode(px, len(batch), bk.W, bk.H)
		var fm, fl [][]float32
		if flip {
			fm, fl = model.Encode(fpx, len(batch), bk.W, bk.H)
		}
		for i, p := range batch {
			j := p.job
			ent := &latentcache.Entry{
				Key: j.Key, Shape: model.LatentShape(bk.W, bk.H), SourceSHA256: j.SHA256,
				Bucket: [2]int{bk.W, bk.H}, Resized: [2]int{j.Assign.Resized.W, j.Assign.Resized.H}, Crop: j.Assign.Crop,
			}
			if err := ent.SetLatent(false, means[i], logvars[i]); err != nil {
				return err
			}
			if flip {
				if err := ent.SetLatent(true, fm[i], fl[i]); err != nil {
					return err
				}
			}
			if err := cache.Put(ent, model.Hash); err != nil {
				return err
			}
			encoded++
		}
		prog.Add(len(batch))
		if cache.Pending() >= flushEvery {
			if err := cache.Flush(); err != nil {
				return err
			}
		}
	}
	if err := cache.Flush(); err != nil {
		return err
	}
	prog.Finish()
	rep.Progress = nil

	out, err := cli.CreateOutput(c.String("output"), stdout)
	if err != nil {
		return err
	}
	defer out.Abort()
	w := manifest.NewWriter(out)
	for i, r := range recs {
		if skip[i] {
			continue
		}
		k, _ := json.Marshal(keys[i])
		if r.Extra == nil {
			r.Extra = map[string]json.RawMessage{}
		}
		r.Extra[KeyField] = k
		if err := w.Write(r); err != nil {
			return err
		}
	}
	if err := out.Commit(); err != nil {
		return err
	}
	if encoded == 0 && reused > 0 {
		rep.Notef("nothing to encode: all %d distinct image(s) already cached", reused)
	}
	rep.Notef("%s", summary(cache, len(recs), encoded, reused, bad, damaged, order, time.Since(start)))
	return nil
}

// checkReused checks the frame of a cached entry a run would reuse (its
// crc32c, without decoding it). A damaged entry is reported, counted, and
// encoded again (false).
func checkReused(cache *latentcache.Cache, key string, rep *cli.Reporter, damaged *int) bool {
	if err := cache.CheckFrame(key); err != nil {
		rep.Warnf("%v; encoding it again", err)
		*damaged++
		return false
	}
	return true
}

// summary is the last line of a run: the counts, the speed, and the bytes
// per image written by this run and held by the whole cache.
func summary(cache *latentcache.Cache, records, encoded, reused, bad, damaged int, order []*pending, el time.Duration) string {
	s := fmt.Sprintf("%d records: encoded %d, reused %d, skipped bad %d, replaced damaged %d", records, encoded, reused, bad, damaged)
	if encoded > 0 {
		var written int64
		for _, p := range order {
			if ie, ok := cache.Index().Entries[p.job.Key]; ok {
				written += ie.Length
			}
		}
		s += fmt.Sprintf("; %.2f images/s; wrote %d bytes, %.0f bytes per image", float64(encoded)/el.Seconds(), written, float64(written)/float64(encoded))
	}
	st := cache.Stats()
	if st.Entries > 0 {
		s += fmt.Sprintf("; cache %s: %d entries, %.0f bytes per entry", cache.Dir(), st.Entries, float64(st.ShardBytes)/float64(st.Entries))
	}
	return s
}

func displayName(n string) string {
	if n == "" || n == "-" {
		return "stdin"
	}
	return n
}
