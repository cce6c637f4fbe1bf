package encode

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/bucket"
	"loco/pkg/dataset/datasettest"
	"loco/pkg/golden"
	"loco/pkg/imageio"
	"loco/pkg/latentcache"
	"loco/pkg/tensor"
)

// benchVAE is $LOCO_BENCH_VAE (for example a random real-size checkpoint
// from `go run ./scripts/mkcheckpoint -size sd15`), else the golden tiny
// VAE (ch 32, ch_mult 1,2,4,4, two blocks per level).
func benchVAE(b *testing.B) string {
	if p := os.Getenv("LOCO_BENCH_VAE"); p != "" {
		return p
	}
	root, ok := golden.Root()
	if !ok {
		b.Skip("no VAE: set LOCO_BENCH_VAE or provide ../shared/golden/vae_tiny")
	}
	return filepath.Join(root, "vae_tiny", "model.safetensors")
}

// BenchmarkEncode512 is loco-encode's work per 512×512 image after the
// image is decoded: crop and scale (Pixels), the VAE encoder (batch 1), the
// fp16 entry, and its zstd frame in a shard (flushed at the end). It
// reports images/s and the bytes of a 512×512 entry on disk, against
// kohya's fp32 .npz latent (65,536 bytes plus the npz overhead).
func BenchmarkEncode512(b *testing.B) {
	m, err := LoadVAE(benchVAE(b), tensor.NewEngine(cpu.New()))
	if err != nil {
		b.Fatal(err)
	}
	img := datasettest.Pattern(640, 512, 5)
	a := bucket.Assignment{Bucket: bucket.Size{W: 512, H: 512}, Resized: bucket.Size{W: 640, H: 512}, Crop: [4]int{64, 0, 576, 512}}
	c, err := latentcache.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	i := 0
	for b.Loop() {
		px, _, err := Pixels(img, a, false)
		if err != nil {
			b.Fatal(err)
		}
		mean, logvar := m.Encode(px, 1, 512, 512)
		e := &latentcache.Entry{Key: fmt.Sprintf("%032x", i), Shape: m.LatentShape(512, 512), Bucket: [2]int{512, 512}}
		if err := e.SetLatent(false, mean[0], logvar[0]); err != nil {
			b.Fatal(err)
		}
		if err := c.Put(e, m.Hash); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
	st := c.Stats()
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(st.ShardBytes)/float64(st.Entries), "bytes/entry")
	b.ReportMetric(float64(st.ShardBytes)/float64(st.Entries)/65536, "vs-kohya-npz")
}

// BenchmarkDecodeResize512 is loco-encode's work per image before the VAE:
// decode a 1024×768 JPEG, resize it to cover 512×512 (area filter), crop,
// and scale to [-1, 1].
func BenchmarkDecodeResize512(b *testing.B) {
	jpg, err := datasettest.Encode(".jpg", datasettest.Pattern(1024, 768, 3), 0)
	if err != nil {
		b.Fatal(err)
	}
	a := bucket.Assignment{Bucket: bucket.Size{W: 512, H: 512}, Resized: bucket.Size{W: 683, H: 512}, Crop: [4]int{85, 0, 597, 512}}
	for b.Loop() {
		img, _, err := imageio.Decode(jpg, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Pixels(img, a, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}
