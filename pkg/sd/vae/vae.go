package vae

import (
	"math"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// Clamp bounds of the log-variance (LDM DiagonalGaussianDistribution).
const (
	LogVarMin = -30
	LogVarMax = 20
)

// VAE is the SD 1.x AutoencoderKL.
type VAE struct {
	Cfg           Config
	Encoder       *Encoder
	Decoder       *Decoder
	QuantConv     *nn.Conv2d // 1×1, 2·ZChannels → 2·EmbedDim
	PostQuantConv *nn.Conv2d // 1×1, EmbedDim → ZChannels
}

// New declares every VAE parameter on b, whose prefix the caller sets
// (Prefix for a single-file checkpoint), and loads them when b has a
// Source. Load errors are reported by b.Err(). cfg must be valid
// (Config.Validate); New panics otherwise.
func New(b *nn.Builder, cfg Config) *VAE {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	v := &VAE{Cfg: cfg}
	v.Encoder = newEncoder(b, cfg)
	v.Decoder = newDecoder(b, cfg)
	v.QuantConv = nn.NewConv2d(b, "quant_conv", 2*cfg.ZChannels, 2*cfg.EmbedDim, 1, 1, 0)
	v.PostQuantConv = nn.NewConv2d(b, "post_quant_conv", cfg.EmbedDim, cfg.ZChannels, 1, 1, 0)
	return v
}

// EncodeMoments runs the encoder on x [N, InChannels, H, W] and returns its
// output h [N, 2·ZChannels, H/f, W/f] (before quant_conv) and the moments
// quant_conv(h) [N, 2·EmbedDim, H/f, W/f].
func (v *VAE) EncodeMoments(x *tensor.Tensor) (h, moments *tensor.Tensor) {
	h = v.Encoder.Forward(x)
	return h, v.QuantConv.Forward(h)
}

// Split cuts the moments into the mean and the raw log-variance
// [N, EmbedDim, h, w] each, and returns the log-variance clamped to
// [LogVarMin, LogVarMax]. The clamp is done on the host and records no
// gradient (the VAE is inference-only).
func (v *VAE) Split(moments *tensor.Tensor) (mean, logvarRaw, logvar *tensor.Tensor) {
	ed := v.Cfg.EmbedDim
	mean = tensor.Slice(moments, 1, 0, ed)
	logvarRaw = tensor.Slice(moments, 1, ed, 2*ed)
	vals := logvarRaw.Float32s()
	for i, x := range vals {
		vals[i] = min(max(x, LogVarMin), LogVarMax)
	}
	logvar = moments.Engine().FromFloat32Of(moments.DType(), vals, logvarRaw.Shape()...)
	return mean, logvarRaw, logvar
}

// Encode maps an image x [N, InChannels, H, W] in [-1, 1] to the latent
// distribution: mean and clamped log-variance [N, EmbedDim, H/f, W/f],
// unscaled. x is left alone.
func (v *VAE) Encode(x *tensor.Tensor) (mean, logvar *tensor.Tensor) {
	h, m := v.EncodeMoments(x)
	release(m, h)
	mean, raw, logvar := v.Split(m)
	release(mean, m, raw)
	return mean, logvar
}

// PostQuant is post_quant_conv(z) for a latent already divided by the
// scale factor.
func (v *VAE) PostQuant(z *tensor.Tensor) *tensor.Tensor { return v.PostQuantConv.Forward(z) }

// Decode maps a latent z [N, EmbedDim, h, w], already divided by
// ScaleFactor, to an image [N, OutCh, h·f, w·f] (raw, not clamped). z is
// left alone.
func (v *VAE) Decode(z *tensor.Tensor) *tensor.Tensor {
	h := v.PostQuant(z)
	out := v.Decoder.Forward(h)
	release(out, h)
	return out
}

// Sample writes mean + exp(logvar/2)·noise into dst (all the same length):
// one draw of the latent distribution, unscaled, as
// DiagonalGaussianDistribution.sample computes it with the given noise.
func Sample(dst, mean, logvar, noise []float32) {
	if len(mean) != len(dst) || len(logvar) != len(dst) || len(noise) != len(dst) {
		panic("vae: Sample: slices of different lengths")
	}
	for i := range dst {
		dst[i] = mean[i] + float32(math.Exp(0.5*float64(logvar[i])))*noise[i]
	}
}
