package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"loco/pkg/half"
)

// randomBytes returns n pseudo-random bytes (never all zero).
func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randomFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 3)
	}
	return v
}

// allDTypes returns one tensor per known dtype with random contents, plus a
// scalar and an empty tensor.
func allDTypes(t *testing.T, r *rand.Rand) []Tensor {
	t.Helper()
	var ts []Tensor
	for i, dt := range dtypeOrder {
		shape := []int{2, 3, i%3 + 1}
		data := randomBytes(r, numElements(shape)*dt.Size())
		if dt == BOOL {
			for j := range data {
				data[j] &= 1
			}
		}
		ts = append(ts, Tensor{Name: "t." + strings.ToLower(string(dt)), DType: dt, Shape: shape, Data: data})
	}
	ts = append(ts,
		Tensor{Name: "scalar", DType: F16, Shape: nil, Data: []byte{0x00, 0x3c}},
		Tensor{Name: "empty", DType: F32, Shape: []int{4, 0}, Data: []byte{}},
	)
	return ts
}

func TestRoundTripEveryDType(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	tensors := allDTypes(t, r)
	meta := map[string]string{
		"ss_network_dim":  "8",
		"ss_network_args": `{"conv_dim": "4", "algo": "locon"}`,
		"odd \"chars\"":   "tab\there, newline\n, nul\x00, ü, <&> /",
	}
	path := filepath.Join(t.TempDir(), "all.safetensors")
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 || !bytes.HasPrefix(raw[8:], []byte(`{"__metadata__":{`)) {
		t.Errorf("header length %d not a multiple of 8, or header starts %q", n, raw[8:24])
	}

	for _, open := range []struct {
		name string
		fn   func() (*File, error)
	}{
		{"Open", func() (*File, error) { return Open(path) }},
		{"NewReader", func() (*File, error) { return NewReader(bytes.NewReader(raw), int64(len(raw)), "mem") }},
	} {
		t.Run(open.name, func(t *testing.T) {
			f, err := open.fn()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if open.name == "Open" && runtime.GOOS == "linux" && f.data == nil {
				t.Errorf("Open did not memory-map the file on linux")
			}
			var want []string
			for _, tt := range tensors {
				want = append(want, tt.Name)
			}
			slices.Sort(want)
			if !slices.Equal(f.Names(), want) {
				t.Errorf("Names() = %v, want %v", f.Names(), want)
			}
			if got := f.Metadata(); len(got) != len(meta) || got["odd \"chars\""] != meta["odd \"chars\""] || got["ss_network_args"] != meta["ss_network_args"] {
				t.Errorf("Metadata() = %q, want %q", got, meta)
			}
			for _, tt := range tensors {
				info, ok := f.Info(tt.Name)
				if !ok || info.DType != tt.DType || !slices.Equal(info.Shape, tt.Shape) && len(tt.Shape)+len(info.Shape) > 0 || info.Size != int64(len(tt.Data)) {
					t.Errorf("Info(%q) = %+v, %v; want %s %v %d bytes", tt.Name, info, ok, tt.DType, tt.Shape, len(tt.Data))
				}
				if info.Offset < 8+int64(n) || info.Offset+info.Size > int64(len(raw)) {
					t.Errorf("Info(%q).Offset = %d, Size = %d: outside the data section [%d, %d)", tt.Name, info.Offset, info.Size, 8+n, len(raw))
				}
				got, err := f.ReadRaw(tt.Name)
				if err != nil || !bytes.Equal(got, tt.Data) {
					t.Errorf("ReadRaw(%q) = %x, %v; want %x", tt.Name, got, err, tt.Data)
				}
				checkTyped(t, f, tt)
			}
		})
	}
}

// checkTyped reads tt through ReadFloat32 or ReadInt64 and compares with
// a decoding of its bytes written here from the dtype definitions.
func checkTyped(t *testing.T, f *File, tt Tensor) {
	t.Helper()
	n := numElements(tt.Shape)
	switch tt.DType {
	case F32, F16, BF16, F64:
		got, err := f.ReadFloat32(tt.Name)
		if err != nil || len(got) != n {
			t.Fatalf("ReadFloat32(%q): %d values, %v", tt.Name, len(got), err)
		}
		for i := range n {
			var want float32
			switch tt.DType {
			case F32:
				want = math.Float32frombits(binary.LittleEndian.Uint32(tt.Data[4*i:]))
			case F16:
				want = half.F16ToF32(binary.LittleEndian.Uint16(tt.Data[2*i:]))
			case BF16:
				want = math.Float32frombits(uint32(binary.LittleEndian.Uint16(tt.Data[2*i:])) << 16)
			case F64:
				want = float32(math.Float64frombits(binary.LittleEndian.Uint64(tt.Data[8*i:])))
			}
			if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
				t.Fatalf("ReadFloat32(%q)[%d] = %v, want %v", tt.Name, i, got[i], want)
			}
		}
		if _, err := f.ReadInt64(tt.Name); err == nil {
			t.Errorf("ReadInt64(%q) of %s: no error", tt.Name, tt.DType)
		}
	case F8E4M3, F8E5M2:
		if _, err := f.ReadFloat32(tt.Name); err == nil {
			t.Errorf("ReadFloat32(%q) of %s: no error", tt.Name, tt.DType)
		}
	default:
		got, err := f.ReadInt64(tt.Name)
		if tt.DType == U64 {
			// Random U64 values may not fit int64; those must be refused.
			for i := range n {
				if tt.Data[8*i+7]&0x80 != 0 {
					if err == nil {
						t.Fatalf("ReadInt64(%q) of a U64 above MaxInt64: no error", tt.Name)
					}
					return
				}
			}
		}
		if err != nil || len(got) != n {
			t.Fatalf("ReadInt64(%q): %d values, %v", tt.Name, len(got), err)
		}
		es := tt.DType.Size()
		for i := range n {
			b := tt.Data[i*es : (i+1)*es]
			var want int64
			switch tt.DType {
			case I64, U64:
				want = int64(binary.LittleEndian.Uint64(b))
			case I32:
				want = int64(int32(binary.LittleEndian.Uint32(b)))
			case U32:
				want = int64(binary.LittleEndian.Uint32(b))
			case I16:
				want = int64(int16(binary.LittleEndian.Uint16(b)))
			case U16:
				want = int64(binary.LittleEndian.Uint16(b))
			case I8:
				want = int64(int8(b[0]))
			case U8, BOOL:
				want = int64(b[0])
			}
			if got[i] != want {
				t.Fatalf("ReadInt64(%q)[%d] = %d, want %d", tt.Name, i, got[i], want)
			}
		}
		if _, err := f.ReadFloat32(tt.Name); err == nil {
			t.Errorf("ReadFloat32(%q) of %s: no error", tt.Name, tt.DType)
		}
	}
}

// TestSpecExample writes the minimal example of spec/fileformat.md §1 and
// compares it byte for byte.
func TestSpecExample(t *testing.T) {
	var buf bytes.Buffer
	alpha, err := FromFloat32("x.alpha", F16, nil, []float32{8})
	if err != nil {
		t.Fatal(err)
	}
	if err := Encode(&buf, []Tensor{alpha}, map[string]string{"ss_network_dim": "8"}); err != nil {
		t.Fatal(err)
	}
	js := `{"__metadata__":{"ss_network_dim":"8"},"x.alpha":{"dtype":"F16","shape":[],"data_offsets":[0,2]}}`
	want := binary.LittleEndian.AppendUint64(nil, 104)
	want = append(want, js+"       "...)
	want = append(want, 0x00, 0x48) // 8.0 in float16
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("got\n%q\nwant\n%q", buf.Bytes(), want)
	}
}

// TestWriterOrder checks the reference writer's tensor order: dtype
// descending (I64 before F32 before F16), then name byte-wise.
func TestWriterOrder(t *testing.T) {
	tensors := []Tensor{
		{Name: "b", DType: F16, Shape: []int{1}, Data: []byte{1, 2}},
		{Name: "a", DType: F16, Shape: []int{1}, Data: []byte{3, 4}},
		{Name: "Z", DType: F32, Shape: []int{1}, Data: []byte{5, 6, 7, 8}},
		{Name: "pos", DType: I64, Shape: []int{1}, Data: []byte{9, 0, 0, 0, 0, 0, 0, 0}},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, tensors, nil); err != nil {
		t.Fatal(err)
	}
	js := `{"pos":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"Z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},` +
		`"a":{"dtype":"F16","shape":[1],"data_offsets":[12,14]},"b":{"dtype":"F16","shape":[1],"data_offsets":[14,16]}}`
	n := binary.LittleEndian.Uint64(buf.Bytes())
	if got := strings.TrimRight(string(buf.Bytes()[8:8+n]), " "); got != js {
		t.Errorf("header\n%s\nwant\n%s", got, js)
	}
	data := buf.Bytes()[8+n:]
	if want := []byte{9, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8, 3, 4, 1, 2}; !bytes.Equal(data, want) {
		t.Errorf("data %v, want %v", data, want)
	}
}

func TestFromFloat32(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	v := randomFloats(r, 24)
	v[0], v[1], v[2] = float32(math.Inf(-1)), float32(math.NaN()), 1e-7 // subnormal in F16
	path := filepath.Join(t.TempDir(), "f.safetensors")
	var ts []Tensor
	for _, dt := range []DType{F32, F16, BF16, F64} {
		tt, err := FromFloat32(strings.ToLower(string(dt)), dt, []int{2, 3, 4}, v)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	if err := WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, dt := range []DType{F32, F16, BF16, F64} {
		got, err := f.ReadFloat32(strings.ToLower(string(dt)))
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range v {
			want := x
			switch dt {
			case F16:
				want = half.F16ToF32(half.F32ToF16(x))
			case BF16:
				want = half.BF16ToF32(half.F32ToBF16(x))
			}
			if got[i] != want && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
				t.Errorf("%s[%d] = %v, want %v", dt, i, got[i], want)
			}
		}
	}
	if _, err := FromFloat32("x", F32, []int{5}, v); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("FromFloat32 with a wrong shape: %v", err)
	}
	if _, err := FromFloat32("x", I32, []int{24}, v); err == nil {
		t.Errorf("FromFloat32 as I32: no error")
	}
	iv := []int64{-1, 0, 1 << 40}
	it, err := FromInt64("ids", []int{3}, iv)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, []Tensor{it}, nil); err != nil {
		t.Fatal(err)
	}
	g, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "ids")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := g.ReadInt64("ids"); err != nil || !slices.Equal(got, iv) {
		t.Errorf("ReadInt64 = %v, %v; want %v", got, err, iv)
	}
}

// TestLargeTensorChunks reads a tensor bigger than the ReadAt chunk size
// through both paths, and through ReadFloat32Into.
func TestLargeTensorChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	n := chunkSize/2 + 12345 // F16: more than one chunk, not a whole number of them
	v := randomFloats(r, n)
	path := filepath.Join(t.TempDir(), "big.safetensors")
	w, err := Create(path, []Spec{{"big", F16, []int{n}}, {"big32", F32, []int{n}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("big32", v); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("big", v); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	mm, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	ra, err := NewReader(bytes.NewReader(raw), int64(len(raw)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*File{mm, ra} {
		for _, name := range []string{"big", "big32"} {
			got := make([]float32, n)
			if err := f.ReadFloat32Into(name, got); err != nil {
				t.Fatal(err)
			}
			for i, x := range v {
				want := x
				if name == "big" {
					want = half.F16ToF32(half.F32ToF16(x))
				}
				if got[i] != want {
					t.Fatalf("%s: %s[%d] = %v, want %v", f.Path(), name, i, got[i], want)
				}
			}
		}
		if err := f.ReadFloat32Into("big", make([]float32, n-1)); err == nil {
			t.Errorf("ReadFloat32Into with a short destination: no error")
		}
	}
}

// Release drops a tensor's mapped pages from the resident set without
// changing what a later read returns (the pages come back from the page
// cache), for a tensor spanning many pages and one smaller than a page.
func TestReleaseKeepsValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.safetensors")
	big := make([]float32, 3<<16)
	for i := range big {
		big[i] = float32(i%977) * 0.25
	}
	small := []float32{1, -2, 3}
	tb, err := FromFloat32("big", F32, []int{len(big)}, big)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := FromFloat32("small", F16, []int{3}, small)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []Tensor{tb, ts}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 2 {
		for _, c := range []struct {
			name string
			want []float32
		}{{"big", big}, {"small", small}} {
			got, err := f.ReadFloat32(c.name)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.want {
				if got[i] != c.want[i] {
					t.Fatalf("%s[%d] = %g after Release, want %g", c.name, i, got[i], c.want[i])
				}
			}
			f.Release(c.name)
		}
	}
	f.Release("no such tensor") // nothing happens
}
