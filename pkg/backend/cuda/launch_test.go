package cuda

import (
	"encoding/binary"
	"math"
	"testing"
	"unsafe"
)

func TestPackArgs(t *testing.T) {
	var p argPack
	b := &buffer{ptr: 0xdeadbeef00}
	var nilBuf *buffer
	err := p.pack(b, nilBuf, int32(-3), 7, float32(1.5), true, dims6{1, 2, 3, 4, 5, 6}, float64(2.25), uint32(9), devPtr(0x1000))
	if err != nil {
		t.Fatal(err)
	}
	wantOffs := []int{0, 8, 16, 24, 32, 36, 40, 88, 96, 104}
	for i, w := range wantOffs {
		if p.offs[i] != w {
			t.Errorf("argument %d at offset %d, want %d", i, p.offs[i], w)
		}
	}
	le := binary.LittleEndian
	if le.Uint64(p.buf[0:]) != 0xdeadbeef00 || le.Uint64(p.buf[8:]) != 0 {
		t.Error("pointers packed wrong")
	}
	if int32(le.Uint32(p.buf[16:])) != -3 || le.Uint64(p.buf[24:]) != 7 {
		t.Error("integers packed wrong")
	}
	if math.Float32frombits(le.Uint32(p.buf[32:])) != 1.5 || le.Uint32(p.buf[36:]) != 1 {
		t.Error("float32/bool packed wrong")
	}
	for k := 0; k < 6; k++ {
		if le.Uint64(p.buf[40+8*k:]) != uint64(k+1) {
			t.Errorf("dims6[%d] packed wrong", k)
		}
	}
	if math.Float64frombits(le.Uint64(p.buf[88:])) != 2.25 || le.Uint32(p.buf[96:]) != 9 || le.Uint64(p.buf[104:]) != 0x1000 {
		t.Error("float64/uint32/devPtr packed wrong")
	}
	ptrs := p.pointers()
	arr := unsafe.Slice((*uintptr)(unsafe.Pointer(&p.ptrs[0])), p.n)
	if uintptr(unsafe.Pointer(&p.ptrs[0])) != ptrs {
		t.Error("pointers() does not return the pointer array")
	}
	for i := range p.n {
		if arr[i] != uintptr(unsafe.Pointer(&p.buf[wantOffs[i]])) {
			t.Errorf("pointer %d does not point at its argument", i)
		}
	}
	if err := p.pack("string"); err == nil {
		t.Error("unsupported type accepted")
	}
}

func TestPermuteDims(t *testing.T) {
	// [2,3,4] permuted (2,0,1) -> [4,2,3]; input strides 12,4,1.
	od, is, n, err := permuteDims([]int{2, 3, 4}, []int{2, 0, 1})
	if err != nil || n != 24 {
		t.Fatal(n, err)
	}
	if od != (dims6{1, 1, 1, 4, 2, 3}) || is != (dims6{0, 0, 0, 1, 12, 4}) {
		t.Errorf("odims %v istr %v", od, is)
	}
	for _, bad := range [][]int{{0, 0, 1}, {0, 1}, {0, 1, 3}} {
		if _, _, _, err := permuteDims([]int{2, 3, 4}, bad); err == nil {
			t.Errorf("perm %v accepted", bad)
		}
	}
	// Check the kernel's index arithmetic on the host.
	shape, perm := []int{2, 3, 4, 5}, []int{3, 1, 0, 2}
	od, is, n, _ = permuteDims(shape, perm)
	x := make([]int, n)
	for i := range x {
		x[i] = i
	}
	for i := 0; i < n; i++ {
		rem, off := int64(i), int64(0)
		for k := 5; k >= 0; k-- {
			c := rem % od[k]
			rem /= od[k]
			off += c * is[k]
		}
		// output coordinates (a,b,c,d) over dims (5,3,2,4) map to x[c][b][d][a]
		a, r := i/(3*2*4), i%(3*2*4)
		bb, r := r/(2*4), r%(2*4)
		c, d := r/4, r%4
		want := ((c*3+bb)*4+d)*5 + a
		if int(off) != want {
			t.Fatalf("output %d reads x[%d], want x[%d]", i, off, want)
		}
	}
}

func TestEmbeddingGroups(t *testing.T) {
	ids := []int32{5, 2, 5, 0, 2, 5}
	uid, start, pos := embeddingGroups(ids)
	if len(uid) != 3 || uid[0] != 0 || uid[1] != 2 || uid[2] != 5 {
		t.Fatalf("uid %v", uid)
	}
	for u := range uid {
		for k := start[u]; k < start[u+1]; k++ {
			if ids[pos[k]] != uid[u] {
				t.Errorf("position %d listed under id %d holds %d", pos[k], uid[u], ids[pos[k]])
			}
		}
	}
	if start[3] != 6 || len(pos) != 6 {
		t.Errorf("start %v pos %v", start, pos)
	}
}
