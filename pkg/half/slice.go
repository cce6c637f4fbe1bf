package half

import (
	"math"
	"sync"
)

// f16Table maps every float16 bit pattern to its float32 bit pattern
// (256 KiB, built on first use). A table lookup is faster than the branchy
// scalar code on data with mixed exponents and gives identical bits.
var (
	f16TableOnce sync.Once
	f16Table     *[1 << 16]uint32
)

func f16ToF32Table() *[1 << 16]uint32 {
	f16TableOnce.Do(func() {
		t := new([1 << 16]uint32)
		for i := range t {
			t[i] = f16Bits(uint16(i))
		}
		f16Table = t
	})
	return f16Table
}

// F16sToF32s converts float16 bit patterns in src to float32 values in dst,
// min(len(dst), len(src)) of them.
func F16sToF32s(dst []float32, src []uint16) {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	t := f16ToF32Table()
	for i, h := range src {
		dst[i] = math.Float32frombits(t[h])
	}
}

// F32sToF16s converts float32 values in src to float16 bit patterns in dst,
// min(len(dst), len(src)) of them, rounding as F32ToF16.
func F32sToF16s(dst []uint16, src []float32) {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, f := range src {
		dst[i] = F32ToF16(f)
	}
}

// BF16sToF32s converts bfloat16 bit patterns in src to float32 values in
// dst, min(len(dst), len(src)) of them.
func BF16sToF32s(dst []float32, src []uint16) {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, b := range src {
		dst[i] = math.Float32frombits(uint32(b) << 16)
	}
}

// F32sToBF16s converts float32 values in src to bfloat16 bit patterns in
// dst, min(len(dst), len(src)) of them, rounding as F32ToBF16.
func F32sToBF16s(dst []uint16, src []float32) {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, f := range src {
		dst[i] = F32ToBF16(f)
	}
}
