package cuda

import (
	"errors"
	"testing"
)

// fakeMemory hands out increasing addresses and can run out.
type fakeMemory struct {
	next, limit, used uint64
	live              map[uintptr]uint64
	frees             int
}

func (f *fakeMemory) alloc(bytes uint64) (uintptr, error) {
	if f.used+bytes > f.limit {
		return 0, errors.New("CUDA_ERROR_OUT_OF_MEMORY")
	}
	f.next += 1 << 12
	p := uintptr(f.next)
	f.next += bytes
	f.used += bytes
	f.live[p] = bytes
	return p, nil
}

func (f *fakeMemory) free(p uintptr) {
	f.used -= f.live[p]
	delete(f.live, p)
	f.frees++
}

func TestClassSize(t *testing.T) {
	cases := []struct{ in, want uint64 }{
		{1, 512}, {512, 512}, {513, 1024}, {4096, 4096}, {4097, 8192}, {1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1<<17}, {3 << 20, 3 << 20}, {100 << 20, 104 << 20},
	}
	for _, c := range cases {
		if got := classSize(c.in); got != c.want {
			t.Errorf("classSize(%d) = %d, want %d", c.in, got, c.want)
		}
		if got := classSize(c.in); got < c.in || (c.in > 1<<20 && float64(got) > 1.125*float64(c.in)) {
			t.Errorf("classSize(%d) = %d: too small or wastes over 12.5%%", c.in, got)
		}
	}
}

func TestAllocatorReusesFreedBlocks(t *testing.T) {
	f := &fakeMemory{limit: 1 << 30, live: map[uintptr]uint64{}}
	a := newAllocator(f)
	p1, _ := a.alloc(1000)
	p2, _ := a.alloc(3000)
	if p1 == p2 {
		t.Fatal("two live blocks share an address")
	}
	if err := a.release(p1); err != nil {
		t.Fatal(err)
	}
	p3, _ := a.alloc(900) // same class as 1000 (1024)
	if p3 != p1 {
		t.Errorf("allocation of a freed class got a new block 0x%x, want the cached 0x%x", p3, p1)
	}
	if a.rawAllocs != 2 {
		t.Errorf("%d device allocations, want 2", a.rawAllocs)
	}
	if a.inUse != 1024+4096 || a.peak != 1024+4096 || a.cached != 0 {
		t.Errorf("inUse %d cached %d peak %d", a.inUse, a.cached, a.peak)
	}
	if err := a.release(p3); err != nil {
		t.Fatal(err)
	}
	if err := a.release(p3); err == nil {
		t.Error("double free was not reported")
	}
	if a.cached != 1024 {
		t.Errorf("cached %d bytes, want 1024", a.cached)
	}
}

func TestAllocatorReleasesCacheWhenOutOfMemory(t *testing.T) {
	f := &fakeMemory{limit: 10 << 20, live: map[uintptr]uint64{}}
	a := newAllocator(f)
	p, err := a.alloc(6 << 20)
	if err != nil {
		t.Fatal(err)
	}
	a.release(p)
	// A different class does not fit beside the cached 6 MiB block.
	if _, err := a.alloc(8 << 20); err != nil {
		t.Fatalf("allocation failed although the cache held enough: %v", err)
	}
	if f.frees != 1 || a.cached != 0 {
		t.Errorf("frees %d cached %d: the cache was not released on out-of-memory", f.frees, a.cached)
	}
	if _, err := a.alloc(8 << 20); err == nil {
		t.Error("allocation beyond the device succeeded")
	}
}
