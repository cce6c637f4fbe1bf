//go:build !amd64

package cuda

const callManySupported = false

// callMany is only implemented for amd64 (callmany_amd64.s).
func callMany(fn uintptr, args ...uintptr) uintptr {
	panic("cuda: calls with more than 15 arguments (cuBLAS GEMM) are only implemented on amd64")
}
