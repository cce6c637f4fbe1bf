//go:build !amd64 || noasm

package sgemm

// asmKernels: this build has no assembly micro-kernels.
func asmKernels() []*kernel { return nil }

var gatherPack = false

func packStridedAsm(dst []float32, stride int, src []float32, ld, rows, kc int) bool { return false }
