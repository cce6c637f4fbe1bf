// Package lycoris is the trained network: LyCORIS LoCon (LoRA for Linear
// and convolution layers), LoHa, and kohya's plain LoRA, for SD 1.x
// (spec/locon.md).
//
// Modules and names. A Network wraps chosen layers of the UNet and the text
// encoder (SelectUNet and SelectTE by Preset: LyCORIS' full, 2023,
// attn-mlp, attn-only, full-lin, unet-only, unet-transformer-only,
// unet-convblock-only, and kohya's plain LoRA) with one Module each, named
// as kohya and LyCORIS name them (lora_unet_…, lora_te_…; KohyaName), so
// that files load unchanged in AUTOMATIC1111, ComfyUI and kohya's scripts.
// A LoCon module is ΔW = scale·up·down (Tucker: up·mid·down for k×k
// convolutions), a LoHa module ΔW = scale·(W1a·W1b) ⊙ (W2a·W2b), with
// scale = multiplier·alpha/rank.
//
// Parameters. Every factor of every module is a view into one flat
// float32 buffer (Network.Params) with one flat gradient buffer (Grads), so
// that zeroing, clipping, AdamW and checkpoints are single passes. When the
// engine computes in F16 or BF16, modules compute with a low-precision
// mirror of that buffer (mirror.go): one cast per step, the factors'
// gradients gathered in the mirror and added into Grads at the end of each
// Backward.
//
// Hooking. New appends one nn.Adapter per module to its layer: a LoCon
// module gives the layer a low-rank branch (down projection, up factor,
// scale), which the layer folds into its own GEMMs (tensor.LinearLowRank,
// tensor.Conv2DLowRank); a LoHa module gives a weight delta, and the layer
// runs once with W + ΔW. Several networks stack on a layer (sampling with
// several files) and Network.Detach removes exactly one.
//
// Files. Save writes the kohya/LyCORIS tensor layout with alphas and the
// metadata given; ReadFile and Load read it back (every factor's shape
// checked against the network's, alphas taken from the file). Dropouts (network, rank, module) follow kohya's networks.lora
// semantics in training mode (dropout.go).
package lycoris
