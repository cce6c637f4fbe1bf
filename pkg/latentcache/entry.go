package latentcache

import (
	"encoding/binary"
	"fmt"

	"loco/pkg/half"
)

// FormatVersion is the cache format written by this version; it is part of
// every key, so a format change never reuses old entries.
const FormatVersion = 1

// Entry is one cached image: the latent distribution of the image as
// bucketed and cropped, optionally that of its horizontal mirror, and where
// it came from. Mean, LogVar, FlipMean and FlipLogVar are fp16,
// little-endian, C·H·W values each.
type Entry struct {
	Key    string `msgpack:"key"`
	Shape  [3]int `msgpack:"shape"` // C, H, W of the latent
	Mean   []byte `msgpack:"mean"`
	LogVar []byte `msgpack:"logvar"`
	// The mirrored image's latent distribution; empty without flip.
	FlipMean   []byte `msgpack:"flip_mean,omitempty"`
	FlipLogVar []byte `msgpack:"flip_logvar,omitempty"`

	// Provenance.
	SourceSHA256 string `msgpack:"source_sha256"`
	Bucket       [2]int `msgpack:"bucket"`  // w, h in pixels
	Resized      [2]int `msgpack:"resized"` // w, h before the crop
	Crop         [4]int `msgpack:"crop"`    // left, top, right, bottom
}

// Numel is the number of values of one latent.
func (e *Entry) Numel() int { return e.Shape[0] * e.Shape[1] * e.Shape[2] }

// HasFlip reports whether the entry holds the mirrored image's latent.
func (e *Entry) HasFlip() bool { return len(e.FlipMean) > 0 }

// SetLatent stores mean and logvar (float32, C·H·W each) as fp16; flip
// selects the mirrored twin.
func (e *Entry) SetLatent(flip bool, mean, logvar []float32) error {
	if len(mean) != e.Numel() || len(logvar) != e.Numel() {
		return fmt.Errorf("latentcache: entry %s: latent of %d/%d values, shape %v needs %d", e.Key, len(mean), len(logvar), e.Shape, e.Numel())
	}
	m, l := toF16(mean), toF16(logvar)
	if flip {
		e.FlipMean, e.FlipLogVar = m, l
	} else {
		e.Mean, e.LogVar = m, l
	}
	return nil
}

// Latent returns mean and logvar as float32; flip selects the mirrored twin.
func (e *Entry) Latent(flip bool) (mean, logvar []float32, err error) {
	m, l := e.Mean, e.LogVar
	if flip {
		if !e.HasFlip() {
			return nil, nil, fmt.Errorf("latentcache: entry %s has no flipped latent (encode with --flip)", e.Key)
		}
		m, l = e.FlipMean, e.FlipLogVar
	}
	n := e.Numel()
	if len(m) != 2*n || len(l) != 2*n {
		return nil, nil, fmt.Errorf("latentcache: entry %s: %d/%d bytes of fp16, shape %v needs %d", e.Key, len(m), len(l), e.Shape, 2*n)
	}
	return fromF16(m), fromF16(l), nil
}

func (e *Entry) check() error {
	n := e.Numel()
	if e.Shape[0] <= 0 || e.Shape[1] <= 0 || e.Shape[2] <= 0 {
		return fmt.Errorf("bad latent shape %v", e.Shape)
	}
	if len(e.Mean) != 2*n || len(e.LogVar) != 2*n {
		return fmt.Errorf("mean/logvar of %d/%d bytes, shape %v needs %d", len(e.Mean), len(e.LogVar), e.Shape, 2*n)
	}
	if len(e.FlipMean) != len(e.FlipLogVar) || (len(e.FlipMean) != 0 && len(e.FlipMean) != 2*n) {
		return fmt.Errorf("flipped mean/logvar of %d/%d bytes, shape %v needs %d", len(e.FlipMean), len(e.FlipLogVar), e.Shape, 2*n)
	}
	return nil
}

func toF16(v []float32) []byte {
	h := make([]uint16, len(v))
	half.F32sToF16s(h, v)
	b := make([]byte, 2*len(v))
	for i, x := range h {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func fromF16(b []byte) []float32 {
	h := make([]uint16, len(b)/2)
	for i := range h {
		h[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	v := make([]float32, len(h))
	half.F16sToF32s(v, h)
	return v
}
