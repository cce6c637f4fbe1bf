package half

import "math"

// F16ToF32 returns the float32 value of the float16 bit pattern h. It is exact.
func F16ToF32(h uint16) float32 {
	return math.Float32frombits(f16Bits(h))
}

// f16Bits widens a float16 bit pattern to a float32 bit pattern.
func f16Bits(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch exp {
	case 0:
		if man == 0 {
			return sign // ±0
		}
		// Subnormal: man × 2⁻²⁴, a normal float32. Both factors and the
		// product are exact in float32.
		return sign | math.Float32bits(float32(man)*0x1p-24)
	case 0x1f:
		// Inf (man == 0) or NaN; the payload keeps its position, so a quiet
		// NaN stays quiet and a signalling one stays signalling.
		return sign | 0x7f800000 | man<<13
	default:
		// Rebias the exponent from 15 to 127.
		return sign | (exp+127-15)<<23 | man<<13
	}
}

// F32ToF16 returns the float16 bit pattern nearest to f, ties to even.
// Magnitudes of 65520 and above become ±Inf; NaN becomes a quiet NaN with
// f's sign and the top 9 bits of its payload.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff // |f|
	var h uint32
	switch {
	case a > 0x7f800000: // NaN
		return sign | 0x7e00 | uint16(a>>13)&0x1ff
	case a < (127-14)<<23:
		// |f| < 2⁻¹⁴: the result is a subnormal (or ±0, or rounds up to
		// the smallest normal). Adding 0.5, whose float32 ulp is exactly the
		// float16 subnormal step 2⁻²⁴, lets the FPU round to nearest even;
		// the low bits of the sum are then the float16 mantissa.
		h = math.Float32bits(math.Float32frombits(a)+0.5) - math.Float32bits(0.5)
	default:
		// Rebias the exponent from 127 to 15, then round the 13 dropped
		// bits half to even: adding 0xfff plus the lowest kept bit carries
		// exactly when the dropped part is over half, or half and the kept
		// part odd. A carry into the exponent is right; anything at or past
		// the float16 infinity (including a float32 Inf) clamps to it.
		a -= (127 - 15) << 23
		a += 0xfff + (a>>13)&1
		h = min(a>>13, 0x7c00)
	}
	return sign | uint16(h)
}

// BF16ToF32 returns the float32 value of the bfloat16 bit pattern b. It is exact.
func BF16ToF32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// F32ToBF16 returns the bfloat16 bit pattern nearest to f, ties to even.
// Values beyond the largest bfloat16 round to ±Inf; NaN becomes a quiet NaN
// with f's sign and the top 7 bits of its payload.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	// Adding 0x7fff plus the lowest kept bit rounds half to even; a carry
	// runs into the exponent as it should, up to Inf.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
