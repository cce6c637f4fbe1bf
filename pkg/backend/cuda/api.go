package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"

	"loco/pkg/tensor"
)

// sym binds the address of one C function to a field.
type sym struct {
	name string
	addr *uintptr
}

// bind resolves every symbol of syms in the library handle h.
func bind(what string, h uintptr, syms []sym) error {
	for _, s := range syms {
		p, err := purego.Dlsym(h, s.name)
		if err != nil || p == 0 {
			return fmt.Errorf("cuda: %s has no symbol %s (library too old?): %v", what, s.name, err)
		}
		*s.addr = p
	}
	return nil
}

// call invokes a C function through purego with integer/pointer arguments
// and returns its int result.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) int32 {
	var r uintptr
	if len(args) > 15 {
		r = callMany(fn, args...)
	} else {
		r, _, _ = purego.SyscallN(fn, args...)
	}
	return int32(r)
}

// cString returns a NUL-terminated copy of s in heap memory.
//
//go:noinline
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// goString reads a NUL-terminated C string.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	base := *(*unsafe.Pointer)(unsafe.Pointer(&p)) // C memory, never moved by Go
	n := 0
	for *(*byte)(unsafe.Add(base, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(base), n))
}

// driverAPI holds the CUDA driver entry points.
type driverAPI struct {
	cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetName uintptr
	cuDevicePrimaryCtxRetain, cuCtxSetCurrent, cuCtxSynchronize                                      uintptr
	cuMemAlloc, cuMemFree, cuMemGetInfo                                                              uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync, cuMemsetD32Async                        uintptr
	cuModuleLoadData, cuModuleGetFunction, cuFuncSetAttribute, cuLaunchKernel                        uintptr
	cuStreamCreate, cuStreamSynchronize                                                              uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy             uintptr
	cuGetErrorName, cuGetErrorString                                                                 uintptr

	// CUDA graph capture (graph.go). Optional: bound by bindOptional, so a
	// driver without them still loads the backend and only capture fails.
	cuStreamBeginCapture, cuStreamEndCapture, cuStreamIsCapturing                  uintptr
	cuGraphInstantiateWithFlags, cuGraphLaunch, cuGraphExecDestroy, cuGraphDestroy uintptr
	cuGraphGetNodes                                                                uintptr
}

func (d *driverAPI) syms() []sym {
	return []sym{
		{"cuInit", &d.cuInit}, {"cuDriverGetVersion", &d.cuDriverGetVersion},
		{"cuDeviceGetCount", &d.cuDeviceGetCount}, {"cuDeviceGet", &d.cuDeviceGet},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute}, {"cuDeviceGetName", &d.cuDeviceGetName},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain}, {"cuCtxSetCurrent", &d.cuCtxSetCurrent},
		{"cuCtxSynchronize", &d.cuCtxSynchronize},
		{"cuMemAlloc_v2", &d.cuMemAlloc}, {"cuMemFree_v2", &d.cuMemFree}, {"cuMemGetInfo_v2", &d.cuMemGetInfo},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync}, {"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync},
		{"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync}, {"cuMemsetD32Async", &d.cuMemsetD32Async},
		{"cuModuleLoadData", &d.cuModuleLoadData}, {"cuModuleGetFunction", &d.cuModuleGetFunction},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute}, {"cuLaunchKernel", &d.cuLaunchKernel},
		{"cuStreamCreate", &d.cuStreamCreate}, {"cuStreamSynchronize", &d.cuStreamSynchronize},
		{"cuEventCreate", &d.cuEventCreate}, {"cuEventRecord", &d.cuEventRecord},
		{"cuEventSynchronize", &d.cuEventSynchronize}, {"cuEventElapsedTime", &d.cuEventElapsedTime},
		{"cuEventDestroy_v2", &d.cuEventDestroy},
		{"cuGetErrorName", &d.cuGetErrorName}, {"cuGetErrorString", &d.cuGetErrorString},
	}
}

// graphSyms are the graph-capture entry points, all optional. cuda.h maps
// cuStreamBeginCapture to cuStreamBeginCapture_v2 (stream, mode) since
// CUDA 10.1; the unsuffixed export is the 10.0 one-argument form.
// cuGraphInstantiateWithFlags (exec*, graph, unsigned long long flags) is
// CUDA 11.4+ (12.x maps cuGraphInstantiate to it). cuStreamEndCapture,
// cuStreamIsCapturing and cuGraphLaunch are the plain (not _ptsz) exports,
// which take an explicit stream.
func (d *driverAPI) graphSyms() []sym {
	return []sym{
		{"cuStreamBeginCapture_v2", &d.cuStreamBeginCapture}, {"cuStreamEndCapture", &d.cuStreamEndCapture},
		{"cuStreamIsCapturing", &d.cuStreamIsCapturing},
		{"cuGraphInstantiateWithFlags", &d.cuGraphInstantiateWithFlags}, {"cuGraphLaunch", &d.cuGraphLaunch},
		{"cuGraphExecDestroy", &d.cuGraphExecDestroy}, {"cuGraphDestroy", &d.cuGraphDestroy},
		{"cuGraphGetNodes", &d.cuGraphGetNodes},
	}
}

// bindOptional resolves what lookup finds of syms in h and leaves the
// others 0 (absent from an older library).
func bindOptional(h uintptr, syms []sym, lookup func(h uintptr, name string) (uintptr, error)) {
	for _, s := range syms {
		if p, err := lookup(h, s.name); err == nil && p != 0 {
			*s.addr = p
		}
	}
}

// errText is the driver's name and description of status r.
func (d *driverAPI) errText(r int32) string {
	if d.cuGetErrorName == 0 {
		return fmt.Sprintf("CUresult %d", r)
	}
	var name, desc uintptr
	call(d.cuGetErrorName, uintptr(r), uintptr(unsafe.Pointer(&name)))
	call(d.cuGetErrorString, uintptr(r), uintptr(unsafe.Pointer(&desc)))
	return fmt.Sprintf("%s (%d): %s", goString(name), r, goString(desc))
}

// check panics with an *tensor.OpError naming op and the driver call when r
// is not CUDA_SUCCESS.
func (d *driverAPI) check(op, fn string, r int32) {
	if r != 0 {
		panic(&tensor.OpError{Op: op, Msg: fn + ": " + d.errText(r)})
	}
}

// nvrtcAPI holds the NVRTC entry points.
type nvrtcAPI struct {
	nvrtcVersion, nvrtcGetErrorString, nvrtcCreateProgram, nvrtcCompileProgram, nvrtcDestroyProgram uintptr
	nvrtcGetPTXSize, nvrtcGetPTX, nvrtcGetProgramLogSize, nvrtcGetProgramLog                        uintptr
	// optional (absent from old NVRTCs)
	nvrtcGetCUBINSize, nvrtcGetCUBIN, nvrtcGetNumSupportedArchs, nvrtcGetSupportedArchs uintptr
}

func (n *nvrtcAPI) syms() []sym {
	return []sym{
		{"nvrtcVersion", &n.nvrtcVersion}, {"nvrtcGetErrorString", &n.nvrtcGetErrorString},
		{"nvrtcCreateProgram", &n.nvrtcCreateProgram}, {"nvrtcCompileProgram", &n.nvrtcCompileProgram},
		{"nvrtcDestroyProgram", &n.nvrtcDestroyProgram},
		{"nvrtcGetPTXSize", &n.nvrtcGetPTXSize}, {"nvrtcGetPTX", &n.nvrtcGetPTX},
		{"nvrtcGetProgramLogSize", &n.nvrtcGetProgramLogSize}, {"nvrtcGetProgramLog", &n.nvrtcGetProgramLog},
	}
}

func (n *nvrtcAPI) optionalSyms() []sym {
	return []sym{
		{"nvrtcGetCUBINSize", &n.nvrtcGetCUBINSize}, {"nvrtcGetCUBIN", &n.nvrtcGetCUBIN},
		{"nvrtcGetNumSupportedArchs", &n.nvrtcGetNumSupportedArchs}, {"nvrtcGetSupportedArchs", &n.nvrtcGetSupportedArchs},
	}
}

// cublasAPI holds the cuBLAS entry points.
type cublasAPI struct {
	cublasCreate, cublasSetStream, cublasSetMathMode, cublasGetVersion, cublasSetWorkspace uintptr
	cublasGemmStridedBatchedEx                                                             uintptr
}

func (c *cublasAPI) syms() []sym {
	return []sym{
		{"cublasCreate_v2", &c.cublasCreate}, {"cublasSetStream_v2", &c.cublasSetStream},
		{"cublasSetMathMode", &c.cublasSetMathMode},
		{"cublasGemmStridedBatchedEx", &c.cublasGemmStridedBatchedEx},
	}
}

// optionalSyms are cuBLAS entry points an older cuBLAS may lack.
// cublas_v2.h maps cublasSetWorkspace to cublasSetWorkspace_v2 (handle,
// void *workspace, size_t bytes).
func (c *cublasAPI) optionalSyms() []sym {
	return []sym{{"cublasSetWorkspace_v2", &c.cublasSetWorkspace}}
}

// cublasStatusText names a cublasStatus_t.
func cublasStatusText(r int32) string {
	names := map[int32]string{
		1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
		8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
		14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
	}
	if s, ok := names[r]; ok {
		return fmt.Sprintf("%s (%d)", s, r)
	}
	return fmt.Sprintf("cublasStatus %d", r)
}
