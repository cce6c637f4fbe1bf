package encode

import (
	"image"
	"image/color"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/bucket"
	"loco/pkg/dataset/datasettest"
	"loco/pkg/golden"
	"loco/pkg/latentcache"
	"loco/pkg/latentcache/encode/encodetest"
	"loco/pkg/manifest"
	"loco/pkg/safetensors"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

func TestConfigAndHash(t *testing.T) {
	dir := t.TempDir()
	cfg := encodetest.TinyVAE()
	cfg.ChMult = []int{1, 2, 2, 4}
	cfg.NumResBlocks = 2
	a, b, c := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "c.safetensors")
	if err := encodetest.WriteVAE(a, cfg, 1, encodetest.Faults{}); err != nil {
		t.Fatal(err)
	}
	// The same VAE weights inside a "checkpoint" with another model's key.
	other, _ := safetensors.FromFloat32("model.diffusion_model.out.0.weight", safetensors.F32, []int{3}, []float32{1, 2, 3})
	if err := encodetest.WriteVAE(b, cfg, 1, encodetest.Faults{Extra: []safetensors.Tensor{other}}); err != nil {
		t.Fatal(err)
	}
	if err := encodetest.WriteVAE(c, cfg, 2, encodetest.Faults{}); err != nil {
		t.Fatal(err)
	}

	hash := func(p string) (string, vae.Config) {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, err := ConfigFromFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := HashVAE(f)
		if err != nil {
			t.Fatal(err)
		}
		return h, got
	}
	ha, ca := hash(a)
	hb, _ := hash(b)
	hc, _ := hash(c)
	if ca.Ch != 32 || ca.NumResBlocks != 2 || len(ca.ChMult) != 4 || ca.ChMult[1] != 2 || ca.ChMult[3] != 4 || ca.EmbedDim != 4 || ca.ZChannels != 4 {
		t.Fatalf("ConfigFromFile: %+v, want ch 32, ch_mult [1 2 2 4], 2 blocks, z 4, embed 4", ca)
	}
	if ha != hb {
		t.Errorf("same VAE weights in two files hash differently: %s vs %s", ha, hb)
	}
	if ha == hc {
		t.Errorf("different VAE weights hash alike: %s", ha)
	}

	// A missing key is an error naming it, before anything is encoded.
	d := filepath.Join(dir, "d.safetensors")
	if err := encodetest.WriteVAE(d, cfg, 1, encodetest.Faults{Drop: vae.Prefix + "encoder.mid.attn_1.q.weight"}); err != nil {
		t.Fatal(err)
	}
	_, err := LoadVAE(d, tensor.NewEngine(cpu.New()))
	if err == nil || !strings.Contains(err.Error(), "encoder.mid.attn_1.q.weight") || !strings.Contains(err.Error(), d) {
		t.Fatalf("LoadVAE without a key: %v, want an error naming the file and the key", err)
	}
}

func TestCheckAndPlan(t *testing.T) {
	rec := func(b [2]int, r [2]int, c [4]int) *manifest.Record {
		return &manifest.Record{Path: "x.png", OrientedWidth: 80, OrientedHeight: 64, Bucket: &b, Resized: &r, Crop: &c}
	}
	for _, tc := range []struct {
		name string
		rec  *manifest.Record
		want string
	}{
		{"no bucket", &manifest.Record{Path: "x.png"}, "run loco-bucket first"},
		{"bucket not a multiple of 8", rec([2]int{60, 64}, [2]int{80, 64}, [4]int{10, 0, 70, 64}), "not a positive multiple of 8"},
		{"crop outside", rec([2]int{64, 64}, [2]int{80, 64}, [4]int{20, 0, 84, 64}), "does not cut bucket"},
		{"crop of the wrong size", rec([2]int{64, 64}, [2]int{80, 64}, [4]int{8, 0, 80, 64}), "does not cut bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Check(tc.rec, 8); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.png") {
				t.Fatalf("Check: %v, want an error naming x.png with %q", err, tc.want)
			}
		})
	}
	good := rec([2]int{64, 64}, [2]int{80, 64}, [4]int{8, 0, 72, 64})
	img := []byte("image bytes")
	j, err := Plan(good, img, "vae1", false, 8)
	if err != nil {
		t.Fatal(err)
	}
	if j.Filter != "none" || len(j.Key) != 32 {
		t.Fatalf("plan: filter %q key %q", j.Filter, j.Key)
	}
	// The key moves with the image bytes, flip, the VAE and the crop; the
	// caption does not enter it.
	keys := map[string]string{j.Key: "base"}
	for name, f := range map[string]func() (*Job, error){
		"image": func() (*Job, error) { return Plan(good, []byte("image bytez"), "vae1", false, 8) },
		"flip":  func() (*Job, error) { return Plan(good, img, "vae1", true, 8) },
		"vae":   func() (*Job, error) { return Plan(good, img, "vae2", false, 8) },
		"crop": func() (*Job, error) {
			return Plan(rec([2]int{64, 64}, [2]int{80, 64}, [4]int{0, 0, 64, 64}), img, "vae1", false, 8)
		},
		"resize": func() (*Job, error) {
			r := rec([2]int{64, 64}, [2]int{80, 64}, [4]int{8, 0, 72, 64})
			r.OrientedWidth, r.OrientedHeight = 160, 128 // now downscaled: filter "area"
			return Plan(r, img, "vae1", false, 8)
		},
	} {
		j2, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := keys[j2.Key]; ok {
			t.Errorf("changing %s gives the key of %s", name, prev)
		}
		keys[j2.Key] = name
	}
	capt := *good
	capt.Caption, capt.Repeats = "another caption", 7
	if j2, _ := Plan(&capt, img, "vae1", false, 8); j2.Key != j.Key {
		t.Errorf("the caption changed the key")
	}
}

// TestPixels checks the crop, the [-1, 1] scaling, the CHW layout and the
// mirror on a picture whose every pixel is distinct.
func TestPixels(t *testing.T) {
	const W, H = 12, 8
	img := image.NewNRGBA(image.Rect(0, 0, W, H))
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(10 * x), uint8(20 * y), uint8(x + y), 255})
		}
	}
	a := bucket.Assignment{Bucket: bucket.Size{W: 8, H: 8}, Resized: bucket.Size{W: W, H: H}, Crop: [4]int{2, 0, 10, 8}}
	px, fl, err := Pixels(img, a, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(px) != 3*8*8 || len(fl) != 3*8*8 {
		t.Fatalf("%d/%d values, want %d", len(px), len(fl), 3*8*8)
	}
	for c := 0; c < 3; c++ {
		for y := 0; y < 8; y++ {
			for x := 0; x < 8; x++ {
				p := img.NRGBAAt(x+2, y)
				v := [3]uint8{p.R, p.G, p.B}[c]
				want := float32(v)/127.5 - 1
				if got := px[c*64+y*8+x]; got != want {
					t.Fatalf("px[c=%d,y=%d,x=%d] = %g, want %g", c, y, x, got, want)
				}
				if got := fl[c*64+y*8+(7-x)]; got != want {
					t.Fatalf("flipped[c=%d,y=%d,x=%d] = %g, want %g", c, y, 7-x, got, want)
				}
			}
		}
	}
	if _, f2, _ := Pixels(img, a, false); f2 != nil {
		t.Fatal("flipped pixels without flip")
	}
	// Extremes map to exactly -1 and 1.
	img.SetNRGBA(2, 0, color.NRGBA{0, 255, 0, 255})
	px, _, _ = Pixels(img, a, false)
	if px[0] != -1 || px[64] != 1 {
		t.Fatalf("0 → %g, 255 → %g, want -1 and 1", px[0], px[64])
	}
}

// goldenVAE is the tiny golden VAE case, or a skip when ../shared is absent.
func goldenVAE(t *testing.T) *golden.Case {
	t.Helper()
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found (../shared/golden or $LOCO_GOLDEN); skipping the golden VAE test")
	}
	c, err := golden.Load(filepath.Join(root, "vae_tiny"))
	if err != nil {
		t.Skipf("golden vae_tiny case not available: %v", err)
	}
	return c
}

// TestGoldenRoundTrip encodes pictures with the tiny golden VAE (the
// weights PyTorch's reference outputs came from), stores them in a cache,
// reads them back from a fresh Open and compares with a direct vae.Encode
// of the same pixels, one image at a time (so the batching is checked too).
// The golden image itself must give the golden mean and log-variance.
func TestGoldenRoundTrip(t *testing.T) {
	c := goldenVAE(t)
	e := tensor.NewEngine(cpu.New())
	m, err := LoadVAE(c.Path("model.safetensors"), e)
	if err != nil {
		t.Fatal(err)
	}
	want, err := vae.ConfigFromLDM(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cfg.Ch != want.Ch || m.Cfg.NumResBlocks != want.NumResBlocks || len(m.Cfg.ChMult) != len(want.ChMult) || m.Cfg.EmbedDim != want.EmbedDim {
		t.Fatalf("config from shapes %+v, case.json says %+v", m.Cfg, want)
	}
	for i := range want.ChMult {
		if m.Cfg.ChMult[i] != want.ChMult[i] {
			t.Fatalf("ch_mult from shapes %v, case.json says %v", m.Cfg.ChMult, want.ChMult)
		}
	}

	// The golden image (48×64) through Model.Encode equals PyTorch's.
	gimg := c.Float32(t, "image")
	sh := c.Shape("image")
	gm, gl := m.Encode(gimg, 1, sh[3], sh[2])
	golden.CheckRel(t, "vae_tiny mean via encode.Model", gm[0], c.Float32(t, "mean"), c.Tol("mean"))
	golden.CheckRel(t, "vae_tiny logvar via encode.Model", gl[0], c.Float32(t, "logvar"), c.Tol("logvar"))

	// Three pictures in one 64×48 bucket, one batch, with flip.
	a := bucket.Assignment{Bucket: bucket.Size{W: 64, H: 48}, Resized: bucket.Size{W: 64, H: 56}, Crop: [4]int{0, 4, 64, 52}}
	const n = 3
	var px, fpx []float32
	var single, singleFlip [][]float32
	for i := 0; i < n; i++ {
		p, f, err := Pixels(datasettest.Pattern(64, 56, uint64(10+i)), a, true)
		if err != nil {
			t.Fatal(err)
		}
		px, fpx = append(px, p...), append(fpx, f...)
		single, singleFlip = append(single, p), append(singleFlip, f)
	}
	means, logvars := m.Encode(px, n, 64, 48)
	fm, fl := m.Encode(fpx, n, 64, 48)

	dir := t.TempDir()
	cache, err := latentcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < n; i++ {
		ent := &latentcache.Entry{
			Key:   latentcache.Key(latentcache.KeyInput{ImageSHA256: strings.Repeat("0", 63) + string(rune('1'+i)), VAEHash: m.Hash, Bucket: [2]int{64, 48}, Flip: true}),
			Shape: m.LatentShape(64, 48), Bucket: [2]int{64, 48}, Resized: [2]int{64, 56}, Crop: a.Crop,
		}
		if ent.Shape != [3]int{4, 6, 8} {
			t.Fatalf("latent shape %v, want [4 6 8]", ent.Shape)
		}
		if err := ent.SetLatent(false, means[i], logvars[i]); err != nil {
			t.Fatal(err)
		}
		if err := ent.SetLatent(true, fm[i], fl[i]); err != nil {
			t.Fatal(err)
		}
		if err := cache.Put(ent, m.Hash); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, ent.Key)
	}
	cache.AddVAE(m.Hash, latentcache.VAEInfo{File: c.Path("model.safetensors"), DType: DType})
	if err := cache.Flush(); err != nil {
		t.Fatal(err)
	}
	cache.Close()

	r, err := latentcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if errs := r.Verify(); len(errs) > 0 {
		t.Fatal(errs)
	}
	direct := func(p []float32) (mean, logvar []float32) {
		x := e.FromFloat32(p, 1, 3, 48, 64)
		e.NoGrad(func() {
			mt, lt := m.VAE.Encode(x)
			mean, logvar = mt.Float32s(), lt.Float32s()
		})
		e.EndStep()
		return mean, logvar
	}
	for i, k := range keys {
		ent, err := r.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		for _, flip := range []bool{false, true} {
			gotM, gotL, err := ent.Latent(flip)
			if err != nil {
				t.Fatal(err)
			}
			src := single[i]
			if flip {
				src = singleFlip[i]
			}
			wm, wl := direct(src)
			what := map[bool]string{false: "", true: " (flipped)"}[flip]
			encodetest.CloseF16(t, "image "+string(rune('0'+i))+" mean"+what, gotM, wm)
			encodetest.CloseF16(t, "image "+string(rune('0'+i))+" logvar"+what, gotL, wl)
		}
		// The mirrored image is a different latent, not a copy.
		m0, _, _ := ent.Latent(false)
		m1, _, _ := ent.Latent(true)
		if golden.RelL2(m1, m0) < 0.01 {
			t.Fatalf("image %d: flipped mean equals the unflipped one", i)
		}
	}
}
