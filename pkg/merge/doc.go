// Package merge post-processes LoCon networks for SD 1.x (spec/merge.md):
//
//   - Apply bakes networks into a single-file checkpoint:
//     W' = W + ratio·(α/r)·ΔW, ΔW = up·down (Linear, 1×1, k×k) or
//     up·mid·down (Tucker). Each element of ΔW is accumulated in float64,
//     scaled, rounded to float32 and added in float32; the result is rounded
//     to the tensor's own dtype or the requested one. The output is streamed
//     tensor by tensor; every tensor that is not a LoCon target is copied
//     unchanged.
//   - Resize shrinks a network by SVD with kohya's rank rule (RankFor) and
//     alpha rule (α' = (α/r)·k), folding Tucker modules and giving 1×1 convs
//     the Linear rank (kohya gives them the conv rank).
//   - Combine sums networks with ratios and re-factors each sum at a chosen
//     rank; Extract factors the difference of two checkpoints.
//   - Inspect summarises a network or checkpoint.
//
// Which checkpoint weight a module changes comes from a Table built forward
// from the models' own layer lists (pkg/sd/unet and pkg/sd/clip built
// shape-only, with the sizes read from the checkpoint) and
// lycoris.KohyaName; module names are never parsed back.
//
// Shapes: a Linear weight is [out, in], a conv weight [out, in, k, k]; its
// 2-D view is [out, in·k·k]. Factors (FactorsFor) hold up [out, r] and down
// [r, in·k·k] row-major, a Tucker module already folded. SVDs run in
// float64 with gonum; products are compared in tests, never factors
// (singular vectors have arbitrary signs).
package merge
