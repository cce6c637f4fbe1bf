package cuda

import (
	"unsafe"

	"github.com/ebitengine/purego"
)

// callManyABI0 is the address of loco_cuda_callmany (callmany_amd64.s).
var callManyABI0 uintptr

const callManySupported = true

// manyCall is the block loco_cuda_callmany reads: the function, its return
// value, and up to 24 arguments. Its layout is fixed by the assembly.
type manyCall struct {
	fn   uintptr
	ret  uintptr
	args [24]uintptr
}

// callMany calls the C function fn with more arguments than purego.SyscallN
// takes (cuBLAS's GemmStridedBatchedEx has 23). Only integer and pointer
// arguments; the caller keeps pointed-to memory alive.
func callMany(fn uintptr, args ...uintptr) uintptr {
	if len(args) > 24 {
		panic("cuda: callMany: more than 24 arguments")
	}
	c := &manyCall{fn: fn}
	copy(c.args[:], args)
	purego.SyscallN(callManyABI0, uintptr(unsafe.Pointer(c)))
	return c.ret
}
