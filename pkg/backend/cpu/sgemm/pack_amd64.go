//go:build amd64 && !noasm

package sgemm

import (
	"math"

	"golang.org/x/sys/cpu"
)

// interleaveAVX512: for p in [0, kc) and each lane r set in mask,
// dst[p*dstStride + r] = src[idx[r] + p].
//
//go:noescape
func interleaveAVX512(dst *float32, dstStride int, src *float32, idx *[16]int32, mask int, kc int)

// gatherPack enables packStridedAsm; it needs AVX-512F.
var gatherPack = cpu.X86.HasAVX512F

// packStridedAsm does the work of packStrided with AVX-512 gathers. It
// reports false, doing nothing, when it cannot (no AVX-512, or offsets
// beyond int32).
func packStridedAsm(dst []float32, stride int, src []float32, ld, rows, kc int) bool {
	if !gatherPack || rows == 0 || kc == 0 || int64(ld)*int64(rows) > math.MaxInt32 {
		return false
	}
	// Bounds: the last element read and written must lie inside the slices.
	_ = src[(rows-1)*ld+kc-1]
	_ = dst[(kc-1)*stride+rows-1]
	for g := 0; g < rows; g += 16 {
		lanes := min(16, rows-g)
		var idx [16]int32
		for r := 0; r < lanes; r++ {
			idx[r] = int32(r * ld)
		}
		interleaveAVX512(&dst[g], stride, &src[g*ld], &idx, 1<<lanes-1, kc)
	}
	return true
}
