package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// devPtr is a device address as a kernel argument (a pointer parameter).
type devPtr uintptr

// dims6 is a kernel's Dims6 parameter (six long longs by value).
type dims6 [6]int64

// convDims is a kernel's ConvDims parameter (conv.cu), eleven long longs.
type convDims [11]int64

// argPack holds kernel arguments packed as the kernel expects them, and
// the array of pointers to each that cuLaunchKernel takes.
type argPack struct {
	buf  [1024]byte
	ptrs [32]uintptr
	offs [32]int
	n    int // number of arguments
	used int // bytes of buf in use
}

// pack lays out args by Go type, each at its natural alignment:
//
//	devPtr, uintptr, *buffer (nil: NULL) -> 8-byte pointer
//	int, int64 -> long long;  int32, bool -> int (4 bytes; bool is 0/1)
//	uint32 -> unsigned int;  float32 -> float;  float64 -> double
//	dims6, convDims -> struct of long longs
func (p *argPack) pack(args ...any) error {
	p.n, p.used = 0, 0
	for i, a := range args {
		var size, align int
		var put func(b []byte)
		switch v := a.(type) {
		case devPtr:
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, uint64(v)) }
		case uintptr:
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, uint64(v)) }
		case *buffer:
			var ptr uint64
			if v != nil {
				ptr = uint64(v.ptr)
			}
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, ptr) }
		case int:
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, uint64(int64(v))) }
		case int64:
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, uint64(v)) }
		case int32:
			size, align, put = 4, 4, func(b []byte) { binary.LittleEndian.PutUint32(b, uint32(v)) }
		case bool:
			var x uint32
			if v {
				x = 1
			}
			size, align, put = 4, 4, func(b []byte) { binary.LittleEndian.PutUint32(b, x) }
		case uint32:
			size, align, put = 4, 4, func(b []byte) { binary.LittleEndian.PutUint32(b, v) }
		case float32:
			size, align, put = 4, 4, func(b []byte) { binary.LittleEndian.PutUint32(b, math.Float32bits(v)) }
		case float64:
			size, align, put = 8, 8, func(b []byte) { binary.LittleEndian.PutUint64(b, math.Float64bits(v)) }
		case dims6:
			size, align, put = 48, 8, func(b []byte) {
				for k, x := range v {
					binary.LittleEndian.PutUint64(b[8*k:], uint64(x))
				}
			}
		case convDims:
			size, align, put = 88, 8, func(b []byte) {
				for k, x := range v {
					binary.LittleEndian.PutUint64(b[8*k:], uint64(x))
				}
			}
		default:
			return fmt.Errorf("kernel argument %d has unsupported type %T", i, a)
		}
		if i >= len(p.ptrs) {
			return fmt.Errorf("more than %d kernel arguments", len(p.ptrs))
		}
		off := (p.used + align - 1) / align * align
		if off+size > len(p.buf) {
			return fmt.Errorf("kernel arguments exceed %d bytes", len(p.buf))
		}
		put(p.buf[off : off+size])
		p.offs[i] = off
		p.used = off + size
		p.n++
	}
	return nil
}

// pointers fills and returns the cuLaunchKernel parameter array. p must
// stay alive (and unmoved: it lives on the heap) until the launch returns.
func (p *argPack) pointers() uintptr {
	base := uintptr(unsafe.Pointer(&p.buf[0]))
	for i := 0; i < p.n; i++ {
		p.ptrs[i] = base + uintptr(p.offs[i])
	}
	return uintptr(unsafe.Pointer(&p.ptrs[0]))
}
