package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/dataset/datasettest"
	"loco/pkg/golden"
	"loco/pkg/imageio"
	"loco/pkg/latentcache"
	"loco/pkg/latentcache/encode"
	"loco/pkg/latentcache/encode/encodetest"
	"loco/pkg/manifest"
	"loco/pkg/tensor"
)

// reexecEnv makes the test binary run loco-encode's main instead of the
// tests (see TestMain), so a test can run the command as a real process and
// kill it.
const reexecEnv = "LOCO_ENCODE_TEST_MAIN"

// recLine is a bucketed record for an image file of size w×h cut to the
// bucket bw×bh by a centre crop of a same-size (unresized) image.
func recLine(path string, w, h, bw, bh int) string {
	l, t := (w-bw)/2, (h-bh)/2
	return fmt.Sprintf(`{"schema":1,"path":%q,"oriented_width":%d,"oriented_height":%d,"bucket":[%d,%d],"resized":[%d,%d],"crop":[%d,%d,%d,%d]}`,
		path, w, h, bw, bh, w, h, l, t, l+bw, t+bh)
}

// writeImages writes n test pictures under dir/img and their records to
// dir/recs.jsonl; sizes cycle through sizes (w, h, bucket w, bucket h).
func writeImages(t *testing.T, dir string, n int, sizes [][4]int) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	var recs strings.Builder
	for i := 0; i < n; i++ {
		s := sizes[i%len(sizes)]
		ext := []string{".png", ".jpg"}[i%2]
		p := filepath.Join(dir, "img", fmt.Sprintf("%03d%s", i, ext))
		b, err := datasettest.Encode(ext, datasettest.Pattern(s[0], s[1], uint64(100+i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		recs.WriteString(recLine(p, s[0], s[1], s[2], s[3]) + "\n")
	}
	rp := filepath.Join(dir, "recs.jsonl")
	if err := os.WriteFile(rp, []byte(recs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return rp
}

// runEncode runs loco-encode in-process and returns stdout and stderr.
func runEncode(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := run(args, strings.NewReader(""), &out, &errb); rc != 0 {
		t.Fatalf("loco-encode %s: exit %d\n%s", strings.Join(args, " "), rc, errb.String())
	}
	return out.String(), errb.String()
}

// outputKeys reads the latent_key of every output record, by path.
func outputKeys(t *testing.T, out string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r struct {
			Path string `json:"path"`
			Key  string `json:"latent_key"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output record %q: %v", sc.Text(), err)
		}
		keys[r.Path] = r.Key
	}
	return keys
}

// TestRoundTripGoldenVAE runs loco-encode with the tiny golden VAE over
// pictures of two buckets (batches of 2, with flip), then reads every entry
// back from the cache and compares it with a direct vae.Encode of the same
// pixels, one image at a time.
func TestRoundTripGoldenVAE(t *testing.T) {
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found (../shared/golden or $LOCO_GOLDEN)")
	}
	model := filepath.Join(root, "vae_tiny", "model.safetensors")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("golden tiny VAE not available: %v", err)
	}
	dir := t.TempDir()
	recs := writeImages(t, dir, 5, [][4]int{{80, 64, 64, 64}, {64, 80, 64, 72}, {64, 64, 64, 64}})
	cache := filepath.Join(dir, "cache")
	out, errs := runEncode(t, "--vae", model, "-o", cache, "-i", recs, "--flip", "--batch-size", "2", "--progress=never")
	if !strings.Contains(errs, "encoded 5, reused 0, skipped bad 0") {
		t.Fatalf("summary: %s", errs)
	}
	keys := outputKeys(t, out)
	if len(keys) != 5 {
		t.Fatalf("%d output records, want 5", len(keys))
	}

	e := tensor.NewEngine(cpu.New())
	m, err := encode.LoadVAE(model, e)
	if err != nil {
		t.Fatal(err)
	}
	c, err := latentcache.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Index().VAEs[m.Hash].File != model {
		t.Fatalf("index VAEs %v lack %s (%s)", c.Index().VAEs, m.Hash, model)
	}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, recs)))
	for sc.Scan() {
		var r struct {
			Path   string `json:"path"`
			Bucket [2]int `json:"bucket"`
		}
		json.Unmarshal(sc.Bytes(), &r)
		ent, err := c.Get(keys[r.Path])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := imageio.Decode(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		j, err := encode.Plan(mustRecord(t, sc.Bytes()), b, m.Hash, true, 8)
		if err != nil {
			t.Fatal(err)
		}
		if j.Key != keys[r.Path] {
			t.Fatalf("%s: key %s, loco-encode wrote %s", r.Path, j.Key, keys[r.Path])
		}
		px, fpx, err := encode.Pixels(img, j.Assign, true)
		if err != nil {
			t.Fatal(err)
		}
		w, h := r.Bucket[0], r.Bucket[1]
		if ent.Shape != [3]int{4, h / 8, w / 8} || ent.Bucket != r.Bucket {
			t.Fatalf("%s: entry shape %v bucket %v", r.Path, ent.Shape, ent.Bucket)
		}
		for _, flip := range []bool{false, true} {
			src := px
			if flip {
				src = fpx
			}
			var wm, wl []float32
			x := e.FromFloat32(src, 1, 3, h, w)
			e.NoGrad(func() {
				mt, lt := m.VAE.Encode(x)
				wm, wl = mt.Float32s(), lt.Float32s()
			})
			e.EndStep()
			gm, gl, err := ent.Latent(flip)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s flip=%t", r.Path, flip)
			encodetest.CloseF16(t, what+" mean", gm, wm)
			encodetest.CloseF16(t, what+" logvar", gl, wl)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKillAndRerun runs loco-encode as a separate process over enough
// images that it is still encoding when the index first shows entries,
// kills it with SIGKILL, checks that the cache it left is consistent (every
// indexed entry verifies, no shard under a final name that the index does
// not list), reruns it, and checks that the rerun encodes exactly the
// entries the killed run did not complete and that the result equals an
// uninterrupted run's.
func TestKillAndRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs loco-encode three times over 48 images")
	}
	dir := t.TempDir()
	const n = 48
	recs := writeImages(t, dir, n, [][4]int{{128, 128, 128, 128}, {144, 128, 128, 128}, {128, 160, 128, 152}})
	vaePath := filepath.Join(dir, "vae.safetensors")
	if err := encodetest.WriteVAE(vaePath, encodetest.TinyVAE(), 1, encodetest.Faults{}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	args := []string{"--vae", vaePath, "-o", cache, "-i", recs, "--batch-size", "1", "--flush-every", "2", "--progress=never", "--device", "cpu"}

	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), reexecEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until shards have been committed and the next one is half
	// written (its temporary file holds a frame), then kill.
	deadline := time.Now().Add(60 * time.Second)
	indexed, partial := 0, false
	for time.Now().Before(deadline) && !(indexed >= 4 && partial) {
		time.Sleep(time.Millisecond)
		c, err := latentcache.Open(cache)
		if err == nil {
			indexed = c.Len()
			c.Close()
		}
		tmp, _ := filepath.Glob(filepath.Join(cache, ".shard-*.tmp-*"))
		partial = false
		for _, p := range tmp {
			if st, err := os.Stat(p); err == nil && st.Size() > 0 {
				partial = true
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("loco-encode was not killed mid-way (it ended with %v after %d entries were indexed; stderr %s)", err, indexed, stderr.String())
	}

	// What the killed run left.
	c, err := latentcache.Open(cache)
	if err != nil {
		t.Fatalf("cache after the kill: %v", err)
	}
	done := c.Len()
	if done < 4 || done >= n {
		t.Fatalf("after the kill %d entries are indexed, want between 4 and %d", done, n-1)
	}
	if errs := c.Verify(); len(errs) > 0 {
		t.Fatalf("cache after the kill does not verify: %v", errs)
	}
	listed := map[string]bool{}
	for _, s := range c.Index().Shards {
		listed[s] = true
	}
	shards, _ := filepath.Glob(filepath.Join(cache, "shard-*.zst"))
	for _, s := range shards {
		if !listed[filepath.Base(s)] {
			t.Errorf("shard %s exists under its final name but is not in the index", s)
		}
	}
	c.Close()
	t.Logf("killed after %d of %d entries (a half-written shard: %t)", done, n, partial)

	// The rerun encodes only the rest.
	out, errs := runEncode(t, args...)
	want := fmt.Sprintf("encoded %d, reused %d, skipped bad 0", n-done, done)
	if !strings.Contains(errs, want) {
		t.Fatalf("rerun summary %q, want %q", lastLine(errs), want)
	}
	// Temporary files of the killed run are gone after the rerun.
	if tmp, _ := filepath.Glob(filepath.Join(cache, ".*")); len(tmp) > 0 {
		t.Errorf("temporary files left after the rerun: %v", tmp)
	}

	// Same keys and latents as one uninterrupted run.
	clean := filepath.Join(dir, "clean")
	args[3] = clean
	out2, _ := runEncode(t, args...)
	if out != out2 {
		t.Fatalf("records of the resumed run differ from an uninterrupted run's")
	}
	a, err := latentcache.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := latentcache.Open(clean)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if errs := a.Verify(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if a.Len() != n || b.Len() != n {
		t.Fatalf("%d and %d entries, want %d", a.Len(), b.Len(), n)
	}
	for _, k := range b.Keys() {
		ea, err := a.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		eb, err := b.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ea.Mean, eb.Mean) || !bytes.Equal(ea.LogVar, eb.LogVar) {
			t.Fatalf("entry %s differs between the resumed and the uninterrupted run", k)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

var summaryRE = regexp.MustCompile(`encoded (\d+), reused (\d+), skipped bad (\d+)`)

// parseSummary parses the counts of loco-encode's last line.
func parseSummary(t *testing.T, stderr string) (encoded, reused, bad int) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in %q", stderr)
	}
	encoded, _ = strconv.Atoi(m[1])
	reused, _ = strconv.Atoi(m[2])
	bad, _ = strconv.Atoi(m[3])
	return
}

func mustRecord(t *testing.T, line []byte) *manifest.Record {
	t.Helper()
	var r manifest.Record
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}
