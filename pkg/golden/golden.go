// Package golden reads the reference cases under ../shared/golden (or
// $LOCO_GOLDEN) and compares outputs with them by relative L2 error, as
// golden/README.md prescribes. Tests use ForEach, which runs every case of
// one kind, logs how many ran, skips when the folder is absent and fails
// when it exists but holds no case of that kind.
package golden

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"loco/pkg/safetensors"
)

// TensorSpec is one entry of case.json "tensors".
type TensorSpec struct {
	Shape   []int  `json:"shape"`
	DType   string `json:"dtype"`
	Role    string `json:"role"`
	Part    string `json:"part"`
	Meaning string `json:"meaning"`
	File    string `json:"file"`
}

// Case is one case folder.
type Case struct {
	Dir, Name  string
	Kind       string                     `json:"kind"`
	Config     json.RawMessage            `json:"config"`
	Tolerance  float64                    `json:"tolerance"`
	TolBy      map[string]float64         `json:"tolerance_by_tensor"`
	ExpectZero []string                   `json:"expect_zero"`
	ZeroAtol   float64                    `json:"zero_atol"`
	ModelDType string                     `json:"model_dtype"`
	Tensors    map[string]TensorSpec      `json:"tensors"`
	Raw        map[string]json.RawMessage `json:"-"`

	io *safetensors.File
}

// Root finds the golden folder: $LOCO_GOLDEN, else ../shared/golden from the
// module root (the folder holding go.mod, searched upward from the working
// directory). ok is false when it does not exist.
func Root() (string, bool) {
	if d := os.Getenv("LOCO_GOLDEN"); d != "" {
		_, err := os.Stat(d)
		return d, err == nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			g := filepath.Join(dir, "..", "shared", "golden")
			_, err := os.Stat(g)
			return g, err == nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Shared is a file or folder under ../shared (beside the golden folder),
// for example "clip/bpe_simple_vocab_16e6.txt.gz".
func Shared(rel string) (string, bool) {
	root, ok := Root()
	if !ok {
		return "", false
	}
	p := filepath.Join(root, "..", rel)
	_, err := os.Stat(p)
	return p, err == nil
}

// Load reads dir/case.json.
func Load(dir string) (*Case, error) {
	b, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		return nil, err
	}
	c := &Case{Dir: dir, Name: filepath.Base(dir)}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "case.json"), err)
	}
	if err := json.Unmarshal(b, &c.Raw); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "case.json"), err)
	}
	return c, nil
}

// All lists every case under root, sorted by folder name.
func All(root string) ([]*Case, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []*Case
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "case.json")); err != nil {
			continue // not a case (for example sd15/)
		}
		c, err := Load(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ForEach runs fn as a subtest for every case of kind. It skips when the
// golden folder is absent and fails when no case of that kind exists.
func ForEach(t *testing.T, kind string, fn func(t *testing.T, c *Case)) {
	t.Helper()
	root, ok := Root()
	if !ok {
		t.Skipf("golden folder not found (../shared/golden or $LOCO_GOLDEN): skipping %s cases", kind)
	}
	cases, err := All(root)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, c := range cases {
		if c.Kind != kind {
			continue
		}
		ran++
		t.Run(c.Name, func(t *testing.T) {
			defer c.Close()
			fn(t, c)
		})
	}
	t.Logf("golden: ran %d case(s) of kind %s from %s", ran, kind, root)
	if ran == 0 {
		t.Fatalf("golden folder %s holds no case of kind %s", root, kind)
	}
}

// Path is a file of the case folder.
func (c *Case) Path(name string) string { return filepath.Join(c.Dir, name) }

// IO opens io.safetensors (once).
func (c *Case) IO() (*safetensors.File, error) {
	if c.io == nil {
		f, err := safetensors.Open(c.Path("io.safetensors"))
		if err != nil {
			return nil, err
		}
		c.io = f
	}
	return c.io, nil
}

// Close releases the io file.
func (c *Case) Close() {
	if c.io != nil {
		c.io.Close()
		c.io = nil
	}
}

// Float32 reads a float tensor of io.safetensors; it fails the test on error.
func (c *Case) Float32(t testing.TB, name string) []float32 {
	t.Helper()
	f, err := c.IO()
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.ReadFloat32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Int64 reads an integer tensor of io.safetensors.
func (c *Case) Int64(t testing.TB, name string) []int64 {
	t.Helper()
	f, err := c.IO()
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.ReadInt64(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Shape is the declared shape of a tensor of the case.
func (c *Case) Shape(name string) []int { return c.Tensors[name].Shape }

// Tol is the tolerance for an output tensor.
func (c *Case) Tol(name string) float64 {
	if v, ok := c.TolBy[name]; ok {
		return v
	}
	return c.Tolerance
}

// IsZero reports whether name is listed in expect_zero.
func (c *Case) IsZero(name string) bool {
	for _, z := range c.ExpectZero {
		if z == name {
			return true
		}
	}
	return false
}

// Check compares got with the stored output name: relative L2 within the
// case tolerance, or ‖got‖ ≤ zero_atol for expect_zero outputs. On failure
// it reports the metric, the worst element and the first values.
func (c *Case) Check(t testing.TB, name string, got []float32) float64 {
	t.Helper()
	want := c.Float32(t, name)
	if c.IsZero(name) {
		n := Norm(got)
		if !(n <= c.ZeroAtol) {
			t.Errorf("%s/%s: expected zero, ‖got‖ = %.3g > %.3g", c.Name, name, n, c.ZeroAtol)
		}
		return n
	}
	return CheckRel(t, c.Name+"/"+name, got, want, c.Tol(name))
}

// CheckRel fails t when ‖got−want‖/‖want‖ > tol (or any value is NaN) and
// returns the error.
func CheckRel(t testing.TB, what string, got, want []float32, tol float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d values, want %d", what, len(got), len(want))
		return math.Inf(1)
	}
	rel := RelL2(got, want)
	if !(rel <= tol) {
		worst, wi := -1.0, 0
		for i := range got {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			if d > worst {
				worst, wi = d, i
			}
		}
		n := min(len(got), 5)
		t.Errorf("%s: relative L2 error %.3g > %.3g; worst at %d: got %g, want %g; first got %v, want %v",
			what, rel, tol, wi, got[wi], want[wi], got[:n], want[:n])
	}
	return rel
}

// RelL2 is ‖got−want‖₂/‖want‖₂ in float64 (NaN if any value is NaN).
func RelL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// Norm is ‖x‖₂.
func Norm(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}
