// Package sample makes sample images from an SD 1.x model the way kohya
// sd-scripts does during training (spec/sample.md): the samplers (Euler
// ancestral and DDIM, in kohya's and SD 1.5's configurations), classifier-
// free guidance, seeded noise, the prompt-file format with kohya's inline
// options, and the VAE decode to a PNG that carries its settings in a
// "parameters" text chunk as AUTOMATIC1111 writes it.
//
// The samplers are pure functions over a Denoiser, the model seen as an
// ε-prediction callback on host float32 latents; guidance is done by the
// sampler (one model call on the batch [uncond, cond] per step). A Plan
// holds every schedule quantity of a run (timesteps, σ or ᾱ), computed in
// float64 from the float64 ᾱ of train.Schedule; latents are float32 and
// each step's arithmetic is done in float64 per element.
//
// Latents are [N, C, H, W] row-major (C = 4, H and W the image size / 8),
// in the UNet's scale: the decoder gets them divided by the VAE scale
// factor (0.18215).
//
// Sampler names (ByName): "euler_a" (kohya_ss's default), "ddim" (kohya's
// DDIM: leading spacing, offset 0, alpha-to-one, x̂₀ clamped to [−1, 1] in
// latent space; sd-scripts' default) and "ddim_sd15" (SD 1.5's config:
// offset 1, no alpha-to-one, no clamp). Names kohya accepts that loco does
// not implement are errors rather than kohya's silent fall-back to DDIM.
//
// Prompt files (LoadPrompts): .txt lines with inline options --n --w --h
// --s --l --d --ss, or .json; unlike kohya, unknown options, bad numbers
// and sizes that are not multiples of 8 are errors naming the line.
// Pipeline.Generate encodes the prompt and the negative prompt (A1111
// emphasis weights, up to 3 chunks of 75 tokens), samples from a seed,
// decodes with the VAE and returns 8-bit RGB; Result.WritePNG stores it
// with the "parameters" text AUTOMATIC1111 writes.
//
// Randomness goes through RNG. Torch is PyTorch's CPU generator
// (torch.manual_seed + torch.randn), so a seed gives the same start noise
// as torch.randn on the CPU.
package sample
