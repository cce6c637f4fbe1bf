package latentcache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// KeyInput is everything an entry's latent depends on (spec/latents.md
// §6.1). Captions, repeats and regularization flags are deliberately absent.
type KeyInput struct {
	ImageSHA256 string // hex sha256 of the image file bytes
	Decode      string // decode settings, e.g. "exif=1,rgb8"
	Bucket      [2]int // w, h
	Resized     [2]int // w, h before the crop
	Crop        [4]int // left, top, right, bottom in the resized image
	Filter      string // resize filter ("area", "lanczos", or "none")
	Flip        bool   // whether the entry also holds the mirrored image
	VAEHash     string // hash of the VAE weights (HashTensors)
	DType       string // encoder dtype, e.g. "f32"
}

// Key is the cache key of in: the first 128 bits of a sha256 over a
// canonical text of every field and FormatVersion, in hex.
func Key(in KeyInput) string {
	s := fmt.Sprintf("loco-latent\x00v=%d\x00img=%s\x00dec=%s\x00bucket=%dx%d\x00resized=%dx%d\x00crop=%d,%d,%d,%d\x00filter=%s\x00flip=%t\x00vae=%s\x00dtype=%s",
		FormatVersion, in.ImageSHA256, in.Decode, in.Bucket[0], in.Bucket[1], in.Resized[0], in.Resized[1],
		in.Crop[0], in.Crop[1], in.Crop[2], in.Crop[3], in.Filter, in.Flip, in.VAEHash, in.DType)
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}
