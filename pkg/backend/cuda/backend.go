package cuda

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"loco/pkg/half"
	"loco/pkg/tensor"
)

// buffer is the Storage of this backend: n elements of dt at device
// address ptr. A view has owner == false and is never freed.
type buffer struct {
	ptr   uintptr
	dt    tensor.DType
	n     int
	owner bool
	freed bool
}

func (b *buffer) DType() tensor.DType { return b.dt }
func (b *buffer) Len() int            { return b.n }

// Backend is the CUDA implementation of tensor.Backend. It must be used
// only from the goroutine that called New: New locks that goroutine to its
// OS thread and makes the device's primary context current there.
type Backend struct {
	drv    driverAPI
	blas   cublasAPI
	nvrtc  *compiler
	dev    int32
	arch   int // compute capability as major*10+minor
	name   string
	ctx    uintptr
	stream uintptr
	handle uintptr // cuBLAS
	mem    *allocator
	mods   map[string]uintptr // module name -> CUmodule
	funcs  map[string]uintptr // kernel name -> CUfunction
	sms    int                // multiprocessors
	args   *argPack
	paths  []string   // libraries loaded, for Describe
	err    error      // first deferred device error, reported by Sync
	graph  graphState // CUDA graph capture (graph.go)
}

var _ tensor.Backend = (*Backend)(nil)

// driverMemory is rawMemory over cuMemAlloc/cuMemFree.
type driverMemory struct{ b *Backend }

func (m driverMemory) alloc(bytes uint64) (uintptr, error) {
	m.b.enter()
	defer m.b.leave()
	var p uintptr
	if r := call(m.b.drv.cuMemAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes)); r != 0 {
		return 0, fmt.Errorf("cuMemAlloc: %s", m.b.drv.errText(r))
	}
	return p, nil
}

func (m driverMemory) free(p uintptr) {
	m.b.enter()
	defer m.b.leave()
	call(m.b.drv.cuMemFree, p)
}

// New loads the CUDA driver, cuBLAS and NVRTC, and opens device ordinal
// dev (LOCO_CUDA_DEVICE is not consulted; callers pass it). The calling
// goroutine is locked to its OS thread and must be the only one using the
// returned Backend.
func New(dev int) (*Backend, error) {
	runtime.LockOSThread()
	b, err := open(dev)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return b, nil
}

func open(dev int) (b *Backend, err error) {
	b = &Backend{dev: int32(dev), mods: map[string]uintptr{}, funcs: map[string]uintptr{}, args: &argPack{}}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			b, err = nil, e
		}
	}()
	extra := searchDirs()
	h, path, err := libDriver.open(extra)
	if err != nil {
		return nil, err
	}
	b.paths = append(b.paths, path)
	if err := bind("the CUDA driver "+path, h, b.drv.syms()); err != nil {
		return nil, err
	}
	bindOptional(h, b.drv.graphSyms(), dlsymOptional)
	const op = "cuda.New"
	d := &b.drv
	if r := call(d.cuInit, 0); r != 0 {
		return nil, fmt.Errorf("cuda: cuInit: %s (no usable GPU or driver?)", d.errText(r))
	}
	var count int32
	d.check(op, "cuDeviceGetCount", call(d.cuDeviceGetCount, uintptr(unsafe.Pointer(&count))))
	if dev < 0 || int32(dev) >= count {
		return nil, fmt.Errorf("cuda: device %d requested, %d present", dev, count)
	}
	var cudev int32
	d.check(op, "cuDeviceGet", call(d.cuDeviceGet, uintptr(unsafe.Pointer(&cudev)), uintptr(dev)))
	attr := func(a int) int {
		var v int32
		d.check(op, "cuDeviceGetAttribute", call(d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(cudev)))
		return int(v)
	}
	b.arch = attr(75)*10 + attr(76) // COMPUTE_CAPABILITY_MAJOR, _MINOR
	b.sms = attr(16)                // MULTIPROCESSOR_COUNT
	name := make([]byte, 256)
	d.check(op, "cuDeviceGetName", call(d.cuDeviceGetName, uintptr(unsafe.Pointer(&name[0])), 256, uintptr(cudev)))
	b.name = strings.TrimRight(string(name), "\x00")
	d.check(op, "cuDevicePrimaryCtxRetain", call(d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&b.ctx)), uintptr(cudev)))
	d.check(op, "cuCtxSetCurrent", call(d.cuCtxSetCurrent, b.ctx))
	d.check(op, "cuStreamCreate", call(d.cuStreamCreate, uintptr(unsafe.Pointer(&b.stream)), 0))
	b.mem = newAllocator(driverMemory{b})

	if b.nvrtc, err = loadCompiler(); err != nil {
		return nil, err
	}
	b.paths = append(b.paths, b.nvrtc.path)
	hb, path, err := libCublas.open(extra)
	if err != nil {
		return nil, err
	}
	b.paths = append(b.paths, path)
	if err := bind("cuBLAS "+path, hb, b.blas.syms()); err != nil {
		return nil, err
	}
	bindOptional(hb, b.blas.optionalSyms(), dlsymOptional)
	b.blasCheck(op, "cublasCreate", call(b.blas.cublasCreate, uintptr(unsafe.Pointer(&b.handle))))
	b.blasCheck(op, "cublasSetStream", call(b.blas.cublasSetStream, b.handle, b.stream))
	b.blasCheck(op, "cublasSetMathMode", call(b.blas.cublasSetMathMode, b.handle, 0)) // CUBLAS_DEFAULT_MATH
	return b, nil
}

func (b *Backend) blasCheck(op, fn string, r int32) {
	if r != 0 {
		panic(&tensor.OpError{Op: op, Msg: fn + ": " + cublasStatusText(r)})
	}
}

// enter makes the context current on this goroutine's OS thread and pins
// the goroutine there until leave, so that every sequence of driver calls
// runs with the context current even when the caller is not the goroutine
// that called New (test subtests, for one). Calls nest.
func (b *Backend) enter() {
	runtime.LockOSThread()
	if r := call(b.drv.cuCtxSetCurrent, b.ctx); r != 0 {
		runtime.UnlockOSThread()
		panic(&tensor.OpError{Op: "cuda", Msg: "cuCtxSetCurrent: " + b.drv.errText(r)})
	}
}

func (b *Backend) leave() { runtime.UnlockOSThread() }

// Name is "cuda".
func (b *Backend) Name() string { return "cuda" }

// Describe names the device, its architecture and the libraries in use.
func (b *Backend) Describe() string {
	return fmt.Sprintf("%s (sm_%d, %d SMs), NVRTC %d.%d; libraries: %s", b.name, b.arch, b.sms,
		b.nvrtc.major, b.nvrtc.minor, strings.Join(b.paths, ", "))
}

// MemStats reports the allocator's bytes in use, cached and peak in use.
func (b *Backend) MemStats() (inUse, cached, peak uint64) {
	return b.mem.inUse, b.mem.cached, b.mem.peak
}

// buf asserts s is this backend's storage (nil stays nil).
func buf(op string, s tensor.Storage) *buffer {
	if s == nil {
		return nil
	}
	x, ok := s.(*buffer)
	if !ok {
		tensor.Errorf(op, "storage of type %T is not CUDA storage", s)
	}
	if x == nil {
		return nil
	}
	if x.freed {
		tensor.Errorf(op, "storage used after Free")
	}
	return x
}

func (b *Backend) Alloc(dt tensor.DType, n int) tensor.Storage {
	if n < 0 {
		tensor.Errorf("cuda.Alloc", "negative length %d", n)
	}
	bytes := uint64(n * dt.Size())
	p, err := b.mem.alloc(max(bytes, 1))
	if err != nil {
		tensor.Errorf("cuda.Alloc", "%d x %v: %v", n, dt, err)
	}
	return &buffer{ptr: p, dt: dt, n: n, owner: true}
}

// Free returns s to the allocator's cache. Freeing a view, nil, or
// storage already freed is a no-op (as on the CPU backend).
func (b *Backend) Free(s tensor.Storage) {
	if s == nil {
		return
	}
	x, ok := s.(*buffer)
	if !ok {
		tensor.Errorf("cuda.Free", "storage of type %T is not CUDA storage", s)
	}
	if x == nil || !x.owner || x.freed {
		return
	}
	if err := b.mem.release(x.ptr); err != nil {
		tensor.Errorf("cuda.Free", "%v", err)
	}
	x.freed = true
}

func (b *Backend) View(s tensor.Storage, off, n int) tensor.Storage {
	x := buf("cuda.View", s)
	if off < 0 || n < 0 || off+n > x.n {
		tensor.Errorf("cuda.View", "elements [%d, %d) of a storage of %d", off, off+n, x.n)
	}
	return &buffer{ptr: x.ptr + uintptr(off*x.dt.Size()), dt: x.dt, n: n}
}

// scratch allocates a temporary device block of bytes; release it with
// b.mem.release (stream order makes immediate reuse safe).
func (b *Backend) scratch(op string, bytes int) uintptr {
	p, err := b.mem.alloc(uint64(max(bytes, 1)))
	if err != nil {
		tensor.Errorf(op, "scratch: %v", err)
	}
	return p
}

func (b *Backend) unscratch(p uintptr) {
	if err := b.mem.release(p); err != nil {
		panic(err)
	}
}

// hostToDevice copies len bytes from host memory at src (kept alive by the
// caller) to dst on the stream. Pageable memory is staged by the driver
// before the call returns, so src may be reused at once. During a graph
// capture the bytes are staged instead (stageUpload, graph.go).
func (b *Backend) hostToDevice(op string, dst uintptr, src unsafe.Pointer, bytes int) {
	if bytes == 0 {
		return
	}
	if b.graph.capturing {
		b.stageUpload(op, dst, src, bytes)
		return
	}
	b.enter()
	defer b.leave()
	b.drv.check(op, "cuMemcpyHtoDAsync", call(b.drv.cuMemcpyHtoDAsync, dst, uintptr(src), uintptr(bytes), b.stream))
}

// deviceToHost copies to host memory and waits for it. It panics while a
// CUDA graph is being captured (Download, SumSquares).
func (b *Backend) deviceToHost(op string, dst unsafe.Pointer, src uintptr, bytes int) {
	b.refuseWhileCapturing(op)
	if bytes == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.drv.check(op, "cuMemcpyDtoHAsync", call(b.drv.cuMemcpyDtoHAsync, uintptr(dst), src, uintptr(bytes), b.stream))
	b.drv.check(op, "cuStreamSynchronize", call(b.drv.cuStreamSynchronize, b.stream))
}

func (b *Backend) Upload(dst tensor.Storage, src []float32) {
	const op = "cuda.Upload"
	x := buf(op, dst)
	if len(src) != x.n {
		tensor.Errorf(op, "%d host values into a storage of %d", len(src), x.n)
	}
	if x.n == 0 {
		return
	}
	switch x.dt {
	case tensor.F32:
		b.hostToDevice(op, x.ptr, unsafe.Pointer(&src[0]), 4*x.n)
	case tensor.F16, tensor.BF16:
		h := make([]uint16, x.n)
		if x.dt == tensor.F16 {
			half.F32sToF16s(h, src)
		} else {
			half.F32sToBF16s(h, src)
		}
		b.hostToDevice(op, x.ptr, unsafe.Pointer(&h[0]), 2*x.n)
		runtime.KeepAlive(h)
	}
	runtime.KeepAlive(src)
}

func (b *Backend) Download(dst []float32, src tensor.Storage) {
	const op = "cuda.Download"
	x := buf(op, src)
	if len(dst) != x.n {
		tensor.Errorf(op, "storage of %d into %d host values", x.n, len(dst))
	}
	if x.n == 0 {
		return
	}
	switch x.dt {
	case tensor.F32:
		b.deviceToHost(op, unsafe.Pointer(&dst[0]), x.ptr, 4*x.n)
	case tensor.F16, tensor.BF16:
		h := make([]uint16, x.n)
		b.deviceToHost(op, unsafe.Pointer(&h[0]), x.ptr, 2*x.n)
		if x.dt == tensor.F16 {
			half.F16sToF32s(dst, h)
		} else {
			half.BF16sToF32s(dst, h)
		}
	}
	runtime.KeepAlive(dst)
}

func (b *Backend) Sync() error {
	if err := b.captureError("cuda.Sync"); err != nil {
		return err
	}
	if b.err != nil {
		err := b.err
		b.err = nil
		return err
	}
	b.enter()
	defer b.leave()
	if r := call(b.drv.cuStreamSynchronize, b.stream); r != 0 {
		return &tensor.OpError{Op: "cuda.Sync", Msg: "cuStreamSynchronize: " + b.drv.errText(r)}
	}
	return nil
}

// module returns the loaded module of a kernel source, compiling it (or
// taking it from the disk cache) at first use.
func (b *Backend) module(name string) uintptr {
	if m, ok := b.mods[name]; ok {
		return m
	}
	src, ok := kernelSources()[name]
	if !ok {
		panic(fmt.Sprintf("cuda: no kernel source %q", name))
	}
	b.enter()
	defer b.leave()
	img, err := b.nvrtc.build(name+".cu", src, b.arch)
	if err != nil {
		panic(&tensor.OpError{Op: "cuda.module", Msg: err.Error()})
	}
	var m uintptr
	b.drv.check("cuda.module "+name, "cuModuleLoadData", call(b.drv.cuModuleLoadData, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&img[0]))))
	runtime.KeepAlive(img)
	b.mods[name] = m
	return m
}

// function returns a kernel of a module.
func (b *Backend) function(mod, kernel string) uintptr {
	if f, ok := b.funcs[kernel]; ok {
		return f
	}
	m := b.module(mod)
	b.enter()
	defer b.leave()
	var f uintptr
	cname := cString(kernel)
	b.drv.check("cuda."+kernel, "cuModuleGetFunction", call(b.drv.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), m, uintptr(unsafe.Pointer(&cname[0]))))
	b.funcs[kernel] = f
	return f
}

// launchCfg is a kernel's grid, block and dynamic shared memory.
type launchCfg struct {
	grid  [3]int
	block [3]int
	shmem int
}

// grid1 is the configuration for a grid-stride loop over n elements.
func (b *Backend) grid1(n int) launchCfg {
	const threads = 256
	blocks := (n + threads - 1) / threads
	blocks = max(1, min(blocks, 32*max(b.sms, 1)))
	return launchCfg{grid: [3]int{blocks, 1, 1}, block: [3]int{threads, 1, 1}}
}

// launch runs kernel of module mod with cfg and args on the stream.
func (b *Backend) launch(op, mod, kernel string, cfg launchCfg, args ...any) {
	f := b.function(mod, kernel)
	b.enter()
	defer b.leave()
	if err := b.args.pack(args...); err != nil {
		panic(&tensor.OpError{Op: op, Msg: kernel + ": " + err.Error()})
	}
	if cfg.shmem > 48*1024 {
		b.drv.check(op, "cuFuncSetAttribute", call(b.drv.cuFuncSetAttribute, f, 8, uintptr(cfg.shmem))) // MAX_DYNAMIC_SHARED_SIZE_BYTES
	}
	for i := range 3 {
		cfg.grid[i] = max(cfg.grid[i], 1)
		cfg.block[i] = max(cfg.block[i], 1)
	}
	r := call(b.drv.cuLaunchKernel, f,
		uintptr(cfg.grid[0]), uintptr(cfg.grid[1]), uintptr(cfg.grid[2]),
		uintptr(cfg.block[0]), uintptr(cfg.block[1]), uintptr(cfg.block[2]),
		uintptr(cfg.shmem), b.stream, b.args.pointers(), 0)
	b.drv.check(op, "cuLaunchKernel("+kernel+")", r)
	if debugSync {
		if r := call(b.drv.cuStreamSynchronize, b.stream); r != 0 {
			panic(&tensor.OpError{Op: op, Msg: kernel + ": " + b.drv.errText(r)})
		}
	}
}

// debugSync (LOCO_CUDA_SYNC=1) synchronises after every launch, so a
// device fault is reported by the op that caused it.
var debugSync = os.Getenv("LOCO_CUDA_SYNC") == "1"

// sfx is the kernel-name suffix of a dtype.
func sfx(dt tensor.DType) string {
	switch dt {
	case tensor.F32:
		return "f32"
	case tensor.F16:
		return "f16"
	case tensor.BF16:
		return "bf16"
	}
	panic(fmt.Sprintf("cuda: unknown dtype %v", dt))
}
