package cuda

import (
	"fmt"
	"math/bits"
)

// rawMemory is what the caching allocator asks for memory: the driver's
// cuMemAlloc/cuMemFree on a device, a fake in tests.
type rawMemory interface {
	alloc(bytes uint64) (uintptr, error)
	free(ptr uintptr)
}

// classSize rounds a request up to its size class: powers of two up to
// 1 MiB (at least 512 bytes), then eight classes per power of two, so the
// waste is under 12.5% for the large activations that dominate memory.
func classSize(bytes uint64) uint64 {
	if bytes <= 512 {
		return 512
	}
	if bytes <= 1<<20 {
		return 1 << bits.Len64(bytes-1)
	}
	top := uint64(1) << (bits.Len64(bytes-1) - 1) // largest power of two < bytes
	step := top / 8
	return (bytes + step - 1) / step * step
}

// allocator caches freed device blocks by size class. All work runs on one
// stream, so a block freed by one op may be handed to the next op at once:
// the stream orders their kernels.
type allocator struct {
	raw   rawMemory
	free  map[uint64][]uintptr // size class -> cached blocks
	sizes map[uintptr]uint64   // live block -> its class size

	inUse, cached, peak uint64 // bytes
	rawAllocs           int    // calls to raw.alloc, for tests and stats

	// keep is set while a CUDA graph is being captured or one is alive
	// (graph.go): the graph's nodes hold addresses of cached blocks, and
	// raw.free (cuMemFree) would also break a capture, so cached blocks
	// are never given back to the device then.
	keep bool
}

func newAllocator(raw rawMemory) *allocator {
	return &allocator{raw: raw, free: map[uint64][]uintptr{}, sizes: map[uintptr]uint64{}}
}

// alloc returns a block of at least bytes. When the device is out of
// memory it releases every cached block and tries once more.
func (a *allocator) alloc(bytes uint64) (uintptr, error) {
	size := classSize(bytes)
	var p uintptr
	if l := a.free[size]; len(l) > 0 {
		p = l[len(l)-1]
		a.free[size] = l[:len(l)-1]
		a.cached -= size
	} else {
		var err error
		p, err = a.raw.alloc(size)
		if err != nil && a.keep {
			return 0, fmt.Errorf("allocating %d bytes (%d in use, %d cached and kept for a CUDA graph): %w", size, a.inUse, a.cached, err)
		}
		if err != nil {
			a.releaseCached()
			p, err = a.raw.alloc(size)
			if err != nil {
				return 0, fmt.Errorf("allocating %d bytes (%d in use, peak %d): %w", size, a.inUse, a.peak, err)
			}
		}
		a.rawAllocs++
	}
	a.sizes[p] = size
	a.inUse += size
	a.peak = max(a.peak, a.inUse)
	return p, nil
}

// release returns a block to the cache. Releasing an unknown pointer is a
// bug and reported as an error.
func (a *allocator) release(p uintptr) error {
	size, ok := a.sizes[p]
	if !ok {
		return fmt.Errorf("freeing 0x%x, which is not a live block of this allocator", p)
	}
	delete(a.sizes, p)
	a.inUse -= size
	a.cached += size
	a.free[size] = append(a.free[size], p)
	return nil
}

// releaseCached gives every cached block back to the device.
func (a *allocator) releaseCached() {
	for size, l := range a.free {
		for _, p := range l {
			a.raw.free(p)
		}
		delete(a.free, size)
	}
	a.cached = 0
}
