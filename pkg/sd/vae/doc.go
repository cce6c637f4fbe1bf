// Package vae is the SD 1.x first-stage model: the AutoencoderKL of
// CompVis latent-diffusion (ldm/modules/diffusionmodules/model.py Encoder
// and Decoder, with quant_conv and post_quant_conv), written over the
// tensor engine.
//
// Keys are those of a single-file SD 1.x checkpoint under
// "first_stage_model." (the caller's builder carries that prefix, see
// Prefix): encoder.conv_in, encoder.down.{i}.block.{j}, encoder.down.{i}.downsample.conv,
// encoder.mid.{block_1,attn_1,block_2}, encoder.norm_out, encoder.conv_out,
// quant_conv, post_quant_conv, and the decoder mirror with up.{i} (up.3 is
// the lowest resolution) holding num_res_blocks+1 blocks and an upsample.
//
// Shapes: images are NCHW float32 RGB in [-1, 1]; latents are
// [N, EmbedDim, H/f, W/f] with f = 2^(len(ChMult)-1) (8 for SD 1.x). The
// model is resolution-free: H and W only need to be multiples of f.
//
// Conventions (as LDM and kohya use them):
//   - Encode gives the moments of a diagonal Gaussian: mean and the
//     log-variance clamped to [-30, 20]. The latent the UNet sees is
//     ScaleFactor·mean (or ScaleFactor·sample); Sample draws
//     mean + exp(logvar/2)·noise, unscaled.
//   - Decode takes a latent already divided by ScaleFactor; post_quant_conv
//     runs first. Its output is raw (not clamped to [-1, 1]).
//   - GroupNorm has 32 groups and eps 1e-6; the encoder's downsampler pads
//     right and bottom by one, then convolves 3×3 with stride 2, padding 0;
//     the decoder's upsampler is nearest-neighbour ×2 then a 3×3 conv; the
//     mid attention is single-head over the H·W positions.
//
// The VAE is inference-only: its weights are never trained. When the input
// needs no gradient, Encode and Decode free each block's intermediates as
// soon as they are consumed (tensor.Engine.Free), so a 512×512 encode holds
// only a few full-resolution activations at a time.
package vae
