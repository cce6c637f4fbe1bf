//go:build !amd64 || noasm

package sgemm

// asmKernels: this build has no assembly micro-kernels.
func asmKernels() []*kernel { return nil }
