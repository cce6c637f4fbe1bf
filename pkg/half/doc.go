// Package half converts between IEEE 754 binary16 ("float16", "F16"),
// bfloat16 ("BF16") and float32.
//
// Values travel as their bit patterns in a uint16, exactly as they are stored
// in a safetensors file or a GPU buffer (little-endian on disk, but that is
// the caller's business).
//
// Every conversion is exact where the value is representable:
//
//   - F16ToF32 and BF16ToF32 are exact for every input (float32 holds every
//     float16 and bfloat16 value, subnormals included).
//   - F32ToF16 and F32ToBF16 round to nearest, ties to even; values too large
//     for the target become ±Inf, values too small become ±0 or a subnormal,
//     and the sign of zero is kept.
//   - NaN stays NaN in both directions, with its sign and the top bits of its
//     payload; a NaN narrowed to 16 bits is made quiet so that it can never
//     turn into an infinity.
//
// The slice forms (F16sToF32s and friends) convert min(len(dst), len(src))
// elements and are written for throughput; they give bit-identical results
// to the scalar forms.
package half
