package safetensors

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// goldenDir returns the golden reference folder: $LOCO_GOLDEN, or
// ../shared/golden next to the module root. It skips the test when the
// folder is absent.
func goldenDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LOCO_GOLDEN")
	if dir == "" {
		root, err := filepath.Abs(".")
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Skip("golden data not found: no go.mod above the package directory; set LOCO_GOLDEN")
			}
			root = parent
		}
		dir = filepath.Join(root, "..", "shared", "golden")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("golden data not found at %s (set LOCO_GOLDEN to its folder): %v", dir, err)
	}
	return dir
}

// TestGoldenFiles opens every .safetensors file of every golden case,
// reads every tensor through the memory-mapped and the ReadAt paths,
// checks the tensors that case.json lists, and re-encodes each file: the
// result must match the Python writer's byte for byte (up to the order of
// metadata keys, which the Python writer leaves to a hash map).
func TestGoldenFiles(t *testing.T) {
	dir := goldenDir(t)
	paths, err := filepath.Glob(filepath.Join(dir, "*", "*.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no .safetensors files under %s", dir)
	}
	for _, path := range paths {
		rel, _ := filepath.Rel(dir, path)
		t.Run(rel, func(t *testing.T) { checkGoldenFile(t, path) })
	}
}

func checkGoldenFile(t *testing.T, path string) {
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewReader(bytes.NewReader(raw), int64(len(raw)), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Names()) == 0 {
		t.Fatal("no tensors")
	}

	var tensors []Tensor
	nonzero := false
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		data, err := f.ReadRaw(name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: data})
		switch info.DType {
		case F32, F16, BF16, F64:
			a, err1 := f.ReadFloat32(name)
			b, err2 := g.ReadFloat32(name)
			if err1 != nil || err2 != nil {
				t.Fatalf("ReadFloat32(%q): %v, %v", name, err1, err2)
			}
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("%q[%d]: mmap read %v, ReadAt read %v", name, i, a[i], b[i])
				}
				if math.IsNaN(float64(a[i])) {
					t.Fatalf("%q[%d] is NaN", name, i)
				}
				nonzero = nonzero || a[i] != 0
			}
		default:
			if _, err := f.ReadInt64(name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !nonzero {
		t.Errorf("every float tensor is all zeros")
	}

	// The tensors case.json says are in this file must be there as described.
	if js, err := os.ReadFile(filepath.Join(filepath.Dir(path), "case.json")); err == nil {
		var c struct {
			Tensors map[string]struct {
				Shape []int
				DType string
				File  string
			}
		}
		if err := json.Unmarshal(js, &c); err != nil {
			t.Fatalf("case.json: %v", err)
		}
		dtypes := map[string]DType{"float32": F32, "float16": F16, "bfloat16": BF16, "float64": F64, "int64": I64, "int32": I32, "uint8": U8, "bool": BOOL}
		for name, want := range c.Tensors {
			if want.File != filepath.Base(path) {
				continue
			}
			info, ok := f.Info(name)
			if !ok {
				t.Errorf("case.json lists %q, not in the file", name)
				continue
			}
			if info.DType != dtypes[want.DType] || !slices.Equal(info.Shape, want.Shape) {
				t.Errorf("%q: file has %s %v, case.json says %s %v", name, info.DType, info.Shape, want.DType, want.Shape)
			}
		}
	}

	var buf bytes.Buffer
	meta := f.Metadata()
	if err := Encode(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()

	// Some golden files were written by a writer that orders data by name
	// alone; for those only a lossless round trip can be checked.
	stored := slices.Clone(f.Names())
	slices.SortFunc(stored, func(a, b string) int {
		ia, _ := f.Info(a)
		ib, _ := f.Info(b)
		return cmp.Compare(ia.Offset, ib.Offset)
	})
	l, err := layoutOf(path, tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	var reference []string
	for _, s := range l.specs {
		reference = append(reference, s.Name)
	}
	if !slices.Equal(stored, reference) {
		t.Logf("data not in the reference writer's order (dtype, then name); checking a lossless round trip instead of identical bytes")
		h, err := NewReader(bytes.NewReader(out), int64(len(out)), "re-encoded")
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tensors {
			got, err := h.ReadRaw(tt.Name)
			info, _ := h.Info(tt.Name)
			if err != nil || !bytes.Equal(got, tt.Data) || info.DType != tt.DType || !slices.Equal(info.Shape, tt.Shape) {
				t.Fatalf("%q did not survive re-encoding: %v", tt.Name, err)
			}
		}
		return
	}
	if len(meta) <= 1 {
		if !bytes.Equal(out, raw) {
			t.Errorf("re-encoded file differs from the original (%d vs %d bytes); headers:\n%.300q\n%.300q", len(out), len(raw), out[8:], raw[8:])
		}
		return
	}
	// Metadata order differs: header lengths and data sections must agree.
	n := 8 + f.HeaderSize()
	if len(out) != len(raw) || !bytes.Equal(out[n:], raw[n:]) || !bytes.Equal(out[:8], raw[:8]) {
		t.Errorf("re-encoded file differs from the original beyond metadata key order")
	}
}
