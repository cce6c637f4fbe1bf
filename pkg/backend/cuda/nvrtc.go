package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"
)

// compiler is a loaded NVRTC.
type compiler struct {
	api          nvrtcAPI
	path         string
	major, minor int
	archs        []int // supported sm_XY values as XY, ascending; nil if unknown
}

// loadCompiler loads NVRTC (see library.open).
func loadCompiler() (*compiler, error) {
	h, path, err := libNvrtc.open(searchDirs())
	if err != nil {
		return nil, err
	}
	c := &compiler{path: path}
	if err := bind("NVRTC "+path, h, c.api.syms()); err != nil {
		return nil, err
	}
	for _, s := range c.api.optionalSyms() {
		if p, err := dlsymOptional(h, s.name); err == nil {
			*s.addr = p
		}
	}
	var major, minor int32
	if r := call(c.api.nvrtcVersion, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor))); r != 0 {
		return nil, fmt.Errorf("cuda: nvrtcVersion: %s", c.errText(r))
	}
	c.major, c.minor = int(major), int(minor)
	if c.api.nvrtcGetNumSupportedArchs != 0 && c.api.nvrtcGetSupportedArchs != 0 {
		var n int32
		if call(c.api.nvrtcGetNumSupportedArchs, uintptr(unsafe.Pointer(&n))) == 0 && n > 0 {
			archs := make([]int32, n)
			if call(c.api.nvrtcGetSupportedArchs, uintptr(unsafe.Pointer(&archs[0]))) == 0 {
				for _, a := range archs {
					c.archs = append(c.archs, int(a))
				}
			}
		}
	}
	return c, nil
}

func (c *compiler) errText(r int32) string {
	if c.api.nvrtcGetErrorString == 0 {
		return fmt.Sprintf("nvrtcResult %d", r)
	}
	p, _ := syscallPtr(c.api.nvrtcGetErrorString, uintptr(r))
	return fmt.Sprintf("%s (%d)", goString(p), r)
}

// target chooses the NVRTC target for a device of compute capability arch
// (e.g. 90): real code (sm_XY, a CUBIN) when this NVRTC knows the
// architecture, else PTX for the newest virtual architecture it knows that
// is not newer than the device, which the driver then compiles.
func (c *compiler) target(arch int) (option string, cubin bool) {
	if c.api.nvrtcGetCUBIN != 0 {
		for _, a := range c.archs {
			if a == arch {
				return fmt.Sprintf("--gpu-architecture=sm_%d", arch), true
			}
		}
	}
	best := arch
	if len(c.archs) > 0 {
		best = 0
		for _, a := range c.archs {
			if a <= arch && a > best {
				best = a
			}
		}
		if best == 0 {
			best = c.archs[0]
		}
	}
	return fmt.Sprintf("--gpu-architecture=compute_%d", best), false
}

// kernelOptions are the NVRTC options every kernel source is compiled with.
var kernelOptions = []string{"--std=c++17", "-default-device", "--restrict"}

// compile compiles src with NVRTC; it returns a CUBIN when cubin is set, else PTX.
func (c *compiler) compile(name, src string, options []string, cubin bool) ([]byte, error) {
	var prog uintptr
	csrc, cname := cString(src), cString(name)
	if r := call(c.api.nvrtcCreateProgram, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&csrc[0])),
		uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); r != 0 {
		return nil, fmt.Errorf("cuda: nvrtcCreateProgram(%s): %s", name, c.errText(r))
	}
	defer call(c.api.nvrtcDestroyProgram, uintptr(unsafe.Pointer(&prog)))
	copts := make([][]byte, len(options))
	ptrs := make([]uintptr, len(options)+1)
	for i, o := range options {
		copts[i] = cString(o)
		ptrs[i] = uintptr(unsafe.Pointer(&copts[i][0]))
	}
	r := call(c.api.nvrtcCompileProgram, prog, uintptr(len(options)), uintptr(unsafe.Pointer(&ptrs[0])))
	keepAlive(copts, csrc, cname)
	if r != 0 {
		return nil, fmt.Errorf("cuda: compiling kernel source %s with NVRTC %d.%d (%s): %s\n%s",
			name, c.major, c.minor, strings.Join(options, " "), c.errText(r), c.log(prog))
	}
	sizeFn, getFn := c.api.nvrtcGetPTXSize, c.api.nvrtcGetPTX
	if cubin {
		sizeFn, getFn = c.api.nvrtcGetCUBINSize, c.api.nvrtcGetCUBIN
	}
	var size uintptr
	if r := call(sizeFn, prog, uintptr(unsafe.Pointer(&size))); r != 0 {
		return nil, fmt.Errorf("cuda: %s: getting compiled size: %s", name, c.errText(r))
	}
	out := make([]byte, size)
	if size > 0 {
		if r := call(getFn, prog, uintptr(unsafe.Pointer(&out[0]))); r != 0 {
			return nil, fmt.Errorf("cuda: %s: getting compiled code: %s", name, c.errText(r))
		}
	}
	return out, nil
}

func (c *compiler) log(prog uintptr) string {
	var size uintptr
	if call(c.api.nvrtcGetProgramLogSize, prog, uintptr(unsafe.Pointer(&size))) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if call(c.api.nvrtcGetProgramLog, prog, uintptr(unsafe.Pointer(&buf[0]))) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n")
}

// cacheDir is where compiled kernels are kept: LOCO_CUDA_CACHE, else
// os.UserCacheDir()/loco/cuda. Empty means no cache.
func cacheDir() string {
	if d := os.Getenv("LOCO_CUDA_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "loco", "cuda")
}

// cacheKey identifies one compilation: source, options, target and the
// compiler's version.
func cacheKey(src string, options []string, nvrtcVersion string) string {
	h := sha256.New()
	fmt.Fprintf(h, "loco-cuda-kernel v1\x00%s\x00%s\x00", nvrtcVersion, strings.Join(options, "\x00"))
	h.Write([]byte(src))
	return hex.EncodeToString(h.Sum(nil))
}

// readCache returns the cached image for key, if any.
func readCache(dir, key string) ([]byte, bool) {
	if dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(dir, key+".bin"))
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return b, true
}

// writeCache stores image under key atomically (temporary file, rename).
// Failing to cache is not an error worth stopping for; it is returned for
// tests and ignored by the backend.
func writeCache(dir, key string, image []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, key+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(image); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, key+".bin")); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// build returns the compiled image of a kernel source for the device arch,
// from the disk cache when it is there.
func (c *compiler) build(name, src string, arch int) ([]byte, error) {
	target, cubin := c.target(arch)
	options := append([]string{target}, kernelOptions...)
	key := cacheKey(src, options, fmt.Sprintf("%d.%d", c.major, c.minor))
	dir := cacheDir()
	if img, ok := readCache(dir, key); ok {
		return img, nil
	}
	img, err := c.compile(name, src, options, cubin)
	if err != nil {
		return nil, err
	}
	if !cubin {
		img = append(img, 0) // cuModuleLoadData wants NUL-terminated PTX
		if len(img) > 1 && img[len(img)-2] == 0 {
			img = img[:len(img)-1]
		}
	}
	_ = writeCache(dir, key, img)
	return img, nil
}
