// Package sd opens SD 1.x base models and maps them onto loco's one
// internal key space, the names of a single-file checkpoint:
//
//	model.diffusion_model.…                   UNet       (UNetPrefix)
//	first_stage_model.…                       VAE        (VAEPrefix)
//	cond_stage_model.transformer.text_model.… CLIP text  (TEPrefix)
//
// Two kinds of base model are read, both through Open:
//
//   - single-file .safetensors checkpoints (OpenCheckpoint): fp16, bf16 or
//     fp32, with or without EMA copies (Checkpoint.UseEMA);
//   - diffusers folders (OpenDiffusers): unet/, vae/ and text_encoder/, each
//     with its own key names, mapped by the data tables UNetTable, VAETable
//     and CLIPTable. The tables are generated from the block layout (from
//     each sub-folder's config.json, SD 1.x by default) with LDM's loops and
//     are checked one-to-one over the SD 1.5 key lists. The only value
//     change is a reshape: diffusers' VAE attention holds Linear weights
//     [C, C] where LDM holds 1×1 convolutions [C, C, 1, 1].
//
// Either way the model packages (unet, vae, clip) load unchanged from a
// WeightSource, which converts each tensor to the engine's dtype as it is
// read (peak memory is the converted model plus one tensor, never the file
// plus a copy), checks every shape, and afterwards lists the tensors nobody
// loaded (Unexpected) minus a documented ignore list: CLIP's position_ids,
// the LDM schedule buffers (betas, alphas_cumprod, …), EMA copies.
//
// SD 2.x, SDXL, inpainting/instruct and v-prediction models are recognised
// by keys, shapes, configs or metadata and refused with what was found;
// pickle files (.ckpt, .pt, .bin) get a message on how to convert them.
//
// RandomSource and WriteRandomCheckpoint make seeded random weights with
// the real key names (scripts/mkcheckpoint writes whole checkpoints), for
// benchmarks and end-to-end tests without a real model.
package sd
