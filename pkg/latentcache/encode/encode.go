// Package encode turns bucketed records into latent cache entries: it loads
// the VAE from a checkpoint (its configuration read from the tensor
// shapes), decodes each image with its EXIF orientation, resizes and crops
// it as the record says (pkg/bucket), scales it to [-1, 1] and runs the
// encoder over batches of one bucket.
package encode

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	"sort"
	"strconv"
	"strings"

	"loco/pkg/bucket"
	"loco/pkg/latentcache"
	"loco/pkg/manifest"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// DecodeSettings names how images are decoded (part of every key).
const DecodeSettings = "exif=1,rgb8"

// DType is the encoder dtype of the CPU engine (part of every key).
const DType = "f32"

// Model is a loaded VAE and the hash of its weights.
type Model struct {
	Path string
	Cfg  vae.Config
	VAE  *vae.VAE
	E    *tensor.Engine
	Hash string // hex sha256 over the VAE tensors (names, dtypes, shapes, bytes)
}

// LoadVAE reads the VAE (keys under first_stage_model.) from the
// safetensors file at path — a full SD 1.x checkpoint or a VAE-only file
// with the same keys. Missing or misshaped keys are an error naming them.
func LoadVAE(path string, e *tensor.Engine) (*Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := ConfigFromFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	b := nn.NewBuilder(vae.Prefix, sd.NewFileSource(f, e, tensor.F32))
	v := vae.New(b, cfg)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("%s: VAE: %v", path, err)
	}
	h, err := HashVAE(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &Model{Path: path, Cfg: cfg, VAE: v, E: e, Hash: h}, nil
}

// ConfigFromFile infers the VAE configuration from the tensor shapes under
// first_stage_model.: ch from encoder.conv_in, ch_mult from each level's
// first block, num_res_blocks from encoder.down.0, z_channels and embed_dim
// from encoder.conv_out and quant_conv.
func ConfigFromFile(f *safetensors.File) (vae.Config, error) {
	shape := func(k string) ([]int, error) {
		i, ok := f.Info(vae.Prefix + k)
		if !ok {
			return nil, fmt.Errorf("no VAE tensor %s%s (is this an SD 1.x checkpoint or VAE file?)", vae.Prefix, k)
		}
		return i.Shape, nil
	}
	cfg := vae.DefaultConfig()
	s, err := shape("encoder.conv_in.weight")
	if err != nil {
		return cfg, err
	}
	if len(s) != 4 {
		return cfg, fmt.Errorf("%sencoder.conv_in.weight has shape %v, want 4 dimensions", vae.Prefix, s)
	}
	cfg.Ch, cfg.InChannels = s[0], s[1]
	levels, blocks := 0, 0
	for _, n := range f.Names() {
		rest, ok := strings.CutPrefix(n, vae.Prefix+"encoder.down.")
		if !ok {
			continue
		}
		parts := strings.SplitN(rest, ".", 4)
		if l, err := strconv.Atoi(parts[0]); err == nil && l+1 > levels {
			levels = l + 1
		}
		if parts[0] == "0" && len(parts) > 2 && parts[1] == "block" {
			if j, err := strconv.Atoi(parts[2]); err == nil && j+1 > blocks {
				blocks = j + 1
			}
		}
	}
	if levels == 0 || blocks == 0 {
		return cfg, fmt.Errorf("no VAE encoder levels (%sencoder.down.*)", vae.Prefix)
	}
	cfg.NumResBlocks = blocks
	cfg.ChMult = make([]int, levels)
	for l := range cfg.ChMult {
		s, err := shape(fmt.Sprintf("encoder.down.%d.block.0.conv1.weight", l))
		if err != nil {
			return cfg, err
		}
		if s[0]%cfg.Ch != 0 {
			return cfg, fmt.Errorf("%sencoder.down.%d.block.0.conv1.weight: %d channels, not a multiple of ch %d", vae.Prefix, l, s[0], cfg.Ch)
		}
		cfg.ChMult[l] = s[0] / cfg.Ch
	}
	if s, err = shape("encoder.conv_out.weight"); err != nil {
		return cfg, err
	}
	cfg.ZChannels = s[0] / 2
	if s, err = shape("quant_conv.weight"); err != nil {
		return cfg, err
	}
	cfg.EmbedDim = s[0] / 2
	if s, err = shape("decoder.conv_out.weight"); err == nil {
		cfg.OutCh = s[0]
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// HashVAE is the sha256 over every first_stage_model.* tensor, sorted by
// name: name, dtype, shape and raw bytes. Two files with the same VAE
// weights (a full checkpoint and its extracted VAE) hash alike.
func HashVAE(f *safetensors.File) (string, error) {
	var names []string
	for _, n := range f.Names() {
		if strings.HasPrefix(n, vae.Prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	h := sha256.New()
	var buf [8]byte
	for _, n := range names {
		info, _ := f.Info(n)
		raw, err := f.ReadRaw(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%v\x00%v\x00", n, info.DType, info.Shape)
		binary.LittleEndian.PutUint64(buf[:], uint64(len(raw)))
		h.Write(buf[:])
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Job is one image to encode, with what the record says about it.
type Job struct {
	Rec    *manifest.Record
	SHA256 string // of the bytes actually read
	Assign bucket.Assignment
	Filter string
	Flip   bool
	Key    string
}

// Check checks the bucket fields of a record: present, the bucket a
// positive multiple of the VAE's factor, the crop cutting the bucket out of
// the resized image.
func Check(rec *manifest.Record, factor int) (bucket.Assignment, error) {
	if rec.Bucket == nil || rec.Resized == nil || rec.Crop == nil {
		return bucket.Assignment{}, fmt.Errorf("%s: record has no bucket/resized/crop (run loco-bucket first)", rec.Path)
	}
	a := bucket.Assignment{
		Bucket:  bucket.Size{W: rec.Bucket[0], H: rec.Bucket[1]},
		Resized: bucket.Size{W: rec.Resized[0], H: rec.Resized[1]},
		Crop:    *rec.Crop,
	}
	if a.Bucket.W <= 0 || a.Bucket.H <= 0 || a.Bucket.W%factor != 0 || a.Bucket.H%factor != 0 {
		return a, fmt.Errorf("%s: bucket %dx%d is not a positive multiple of %d (the VAE's down-sampling factor)", rec.Path, a.Bucket.W, a.Bucket.H, factor)
	}
	c := a.Crop
	if c[2]-c[0] != a.Bucket.W || c[3]-c[1] != a.Bucket.H || c[0] < 0 || c[1] < 0 || c[2] > a.Resized.W || c[3] > a.Resized.H {
		return a, fmt.Errorf("%s: crop %v does not cut bucket %dx%d out of resized %dx%d", rec.Path, c, a.Bucket.W, a.Bucket.H, a.Resized.W, a.Resized.H)
	}
	return a, nil
}

// Plan checks a bucketed record (Check) and computes its key from the
// image bytes. img is the file content; vaeHash the model's hash.
func Plan(rec *manifest.Record, img []byte, vaeHash string, flip bool, factor int) (*Job, error) {
	a, err := Check(rec, factor)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(img)
	j := &Job{Rec: rec, SHA256: hex.EncodeToString(sum[:]), Assign: a, Flip: flip}
	j.Filter = "none"
	if rec.OrientedWidth > 0 && rec.OrientedHeight > 0 {
		from := bucket.Size{W: rec.OrientedWidth, H: rec.OrientedHeight}
		if from != a.Resized {
			j.Filter = bucket.FilterName(from, a.Resized)
		}
	}
	j.Key = latentcache.Key(latentcache.KeyInput{
		ImageSHA256: j.SHA256, Decode: DecodeSettings, Bucket: *rec.Bucket, Resized: *rec.Resized,
		Crop: *rec.Crop, Filter: j.Filter, Flip: flip, VAEHash: vaeHash, DType: DType,
	})
	return j, nil
}

// Pixels resizes and crops img as the job says and returns it as CHW float32
// RGB in [-1, 1] (x/127.5 − 1), and its horizontal mirror when flip.
func Pixels(img *image.NRGBA, a bucket.Assignment, flip bool) (px, flipped []float32, err error) {
	out, err := bucket.ResizeAndCrop(img, a, nil)
	if err != nil {
		return nil, nil, err
	}
	w, h := a.Bucket.W, a.Bucket.H
	if b := out.Bounds(); b.Dx() != w || b.Dy() != h {
		return nil, nil, fmt.Errorf("resize and crop gave %dx%d, want bucket %dx%d", b.Dx(), b.Dy(), w, h)
	}
	px = make([]float32, 3*w*h)
	if flip {
		flipped = make([]float32, 3*w*h)
	}
	for y := 0; y < h; y++ {
		row := out.Pix[y*out.Stride : y*out.Stride+4*w]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(row[4*x+c])/127.5 - 1
				px[c*w*h+y*w+x] = v
				if flip {
					flipped[c*w*h+y*w+(w-1-x)] = v
				}
			}
		}
	}
	return px, flipped, nil
}

// Encode runs the encoder on n images of one bucket (w×h), given as one
// slice of n·3·h·w values, and returns mean and logvar per image.
func (m *Model) Encode(px []float32, n, w, h int) (means, logvars [][]float32) {
	x := m.E.FromFloat32(px, n, 3, h, w)
	var mv, lv []float32
	m.E.NoGrad(func() {
		mean, logvar := m.VAE.Encode(x)
		mv, lv = mean.Float32s(), logvar.Float32s()
	})
	m.E.EndStep()
	per := len(mv) / n
	for i := 0; i < n; i++ {
		means = append(means, mv[i*per:(i+1)*per:(i+1)*per])
		logvars = append(logvars, lv[i*per:(i+1)*per:(i+1)*per])
	}
	return means, logvars
}

// LatentShape is the [C, H, W] of the latent of a w×h image.
func (m *Model) LatentShape(w, h int) [3]int {
	f := m.Cfg.Factor()
	return [3]int{m.Cfg.EmbedDim, h / f, w / f}
}
