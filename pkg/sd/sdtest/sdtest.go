// Package sdtest holds test support shared by the SD model packages:
// seeded random weights for any key and the golden key-list comparison.
package sdtest

import (
	"bufio"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// RandSource makes deterministic random weights for any key: norm weights
// near 1, biases small, other tensors scaled by 1/√fan-in.
type RandSource struct {
	E    *tensor.Engine
	Seed uint64
}

// Load implements nn.Source.
func (s RandSource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	h := fnv.New64a()
	h.Write([]byte(key))
	r := rand.New(rand.NewPCG(h.Sum64(), s.Seed))
	n := shape.Numel()
	v := make([]float32, n)
	fanIn := 1
	if len(shape) > 1 {
		fanIn = n / shape[0]
	}
	std := 1 / math.Sqrt(float64(fanIn))
	norm := strings.Contains(key, "norm") && strings.HasSuffix(key, ".weight")
	for i := range v {
		switch {
		case len(shape) == 1 && norm:
			v[i] = float32(1 + 0.1*r.NormFloat64())
		case len(shape) == 1:
			v[i] = float32(0.02 * r.NormFloat64())
		default:
			v[i] = float32(std * r.NormFloat64())
		}
	}
	return s.E.Persistent(tensor.F32, v, shape...), nil
}

// Randn is n seeded standard-normal values.
func Randn(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// ReadKeyList reads a golden key list: "key<TAB>d0,d1,...", one per line.
func ReadKeyList(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		if strings.Count(line, "\t") != 1 {
			t.Fatalf("%s: line %q is not key<TAB>shape", path, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// SpecLines formats declared parameters like the key lists, sorted.
func SpecLines(ps []nn.ParamSpec) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		dims := make([]string, len(p.Shape))
		for j, d := range p.Shape {
			dims[j] = strconv.Itoa(d)
		}
		out[i] = p.Key + "\t" + strings.Join(dims, ",")
	}
	sort.Strings(out)
	return out
}

// DiffLists reports the lines only in got and only in want.
func DiffLists(t testing.TB, what string, got, want []string) {
	t.Helper()
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			if m[x] {
				t.Errorf("%s: duplicate line %q", what, x)
			}
			m[x] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var extra, missing []string
	for _, x := range got {
		if !w[x] {
			extra = append(extra, x)
		}
	}
	for _, x := range want {
		if !g[x] {
			missing = append(missing, x)
		}
	}
	if len(extra)+len(missing) > 0 {
		t.Errorf("%s: %d declared but not in the list (first: %q), %d listed but not declared (first: %q)",
			what, len(extra), first(extra), len(missing), first(missing))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
