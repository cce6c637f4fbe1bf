package half

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// f16Value is a float64 reference decoding of a float16 bit pattern,
// written from the format definition rather than by bit shuffling.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	man := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * man * math.Pow(2, -24)
	case 0x1f:
		if man == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + man/1024) * math.Pow(2, float64(exp-15))
}

func bf16Value(b uint16) float64 {
	sign := 1.0
	if b&0x8000 != 0 {
		sign = -1
	}
	exp := int(b>>7) & 0xff
	man := float64(b & 0x7f)
	switch exp {
	case 0:
		return sign * man * math.Pow(2, -133)
	case 0xff:
		if man == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + man/128) * math.Pow(2, float64(exp-127))
}

// refNarrow is the float64 reference for rounding x to a 16-bit format
// whose finite non-negative patterns are 0 … maxFinite (in increasing
// order of value), decoded by value. It finds the nearest pattern by binary
// search, breaks ties towards the even pattern, and treats everything at or
// beyond the midpoint between maxFinite and the next power of two as
// overflow (IEEE: round as if the exponent range were unbounded).
func refNarrow(x float64, maxFinite, inf uint16, value func(uint16) float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	top := value(maxFinite)
	ulp := top - value(maxFinite-1)
	if x >= top+ulp/2 {
		return sign | inf // the tie at top+ulp/2 goes to the even pattern, which is Inf
	}
	// Smallest pattern with value ≥ x.
	i := sort.Search(int(maxFinite)+1, func(i int) bool { return value(uint16(i)) >= x })
	if i > int(maxFinite) {
		return sign | maxFinite
	}
	hi := uint16(i)
	if i == 0 || value(hi) == x {
		return sign | hi
	}
	lo := hi - 1
	dl, dh := x-value(lo), value(hi)-x
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | hi
	case lo&1 == 0:
		return sign | lo
	default:
		return sign | hi
	}
}

func isNaN16(h uint16, expMask uint16) bool { return h&expMask == expMask && h&^(0x8000|expMask) != 0 }

func TestF16ToF32AllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := F16ToF32(h)
		want := f16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || math.Signbit(float64(got)) != (h&0x8000 != 0) {
				t.Fatalf("F16ToF32(%#04x) = %v (%#08x), want NaN with the same sign", h, got, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestF16RoundTripAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		back := F32ToF16(F16ToF32(h))
		if isNaN16(h, 0x7c00) {
			// NaN stays NaN with its sign; a quiet NaN keeps its payload bit for bit.
			if !isNaN16(back, 0x7c00) || back&0x8000 != h&0x8000 || back&0x1ff != h&0x1ff {
				t.Fatalf("F16 NaN %#04x round-tripped to %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("F16 %#04x (%v) round-tripped to %#04x", h, F16ToF32(h), back)
		}
	}
}

func TestBF16RoundTripAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		b := uint16(i)
		f := BF16ToF32(b)
		want := bf16Value(b)
		back := F32ToBF16(f)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(f)) || !isNaN16(back, 0x7f80) || back&0x8000 != b&0x8000 {
				t.Fatalf("BF16 NaN %#04x: widened %v, round-tripped to %#04x", b, f, back)
			}
			continue
		}
		if float64(f) != want || math.Signbit(float64(f)) != math.Signbit(want) {
			t.Fatalf("BF16ToF32(%#04x) = %v, want %v", b, f, want)
		}
		if back != b {
			t.Fatalf("BF16 %#04x round-tripped to %#04x", b, back)
		}
	}
}

// narrowCases returns float32 inputs that cover every rounding boundary of
// a 16-bit format: for each pair of neighbouring finite values the midpoint
// and the float32 on each side of it, the values themselves, then specials
// and random bit patterns.
func narrowCases(maxFinite uint16, value func(uint16) float64, random int) []float32 {
	var fs []float32
	add := func(f float32) { fs = append(fs, f, -f) }
	for i := uint16(0); i < maxFinite; i++ {
		a, b := value(i), value(i+1)
		mid := float32((a + b) / 2) // exact: one more significant bit than the format
		if float64(mid) != (a+b)/2 {
			panic("midpoint not exact in float32")
		}
		add(float32(a))
		add(mid)
		add(math.Nextafter32(mid, 0))
		add(math.Nextafter32(mid, float32(math.Inf(1))))
	}
	top := value(maxFinite)
	ulp := top - value(maxFinite-1)
	for _, x := range []float64{top, top + ulp/2, top + ulp/4, math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-30, 0} {
		f := float32(x)
		add(f)
		add(math.Nextafter32(f, 0))
		add(math.Nextafter32(f, float32(math.Inf(1))))
	}
	add(float32(math.Inf(1)))
	r := rand.New(rand.NewPCG(1, 2))
	for range random {
		fs = append(fs, math.Float32frombits(r.Uint32()))
	}
	return fs
}

func checkNarrow(t *testing.T, name string, conv func(float32) uint16, expMask, maxFinite uint16, value func(uint16) float64, cases []float32) {
	t.Helper()
	for _, f := range cases {
		got := conv(f)
		if math.IsNaN(float64(f)) {
			if !isNaN16(got, expMask) || (got&0x8000 != 0) != math.Signbit(float64(f)) {
				t.Fatalf("%s(NaN %#08x) = %#04x, want a NaN with the same sign", name, math.Float32bits(f), got)
			}
			continue
		}
		want := refNarrow(float64(f), maxFinite, expMask, value)
		if got != want {
			t.Fatalf("%s(%v = %#08x) = %#04x (%v), want %#04x (%v)", name, f, math.Float32bits(f), got, value(got), want, value(want))
		}
	}
}

func TestF32ToF16AgainstReference(t *testing.T) {
	cases := narrowCases(0x7bff, f16Value, 1_000_000)
	if testing.Short() {
		cases = cases[:len(cases)/4]
	}
	checkNarrow(t, "F32ToF16", F32ToF16, 0x7c00, 0x7bff, f16Value, cases)
}

func TestF32ToBF16AgainstReference(t *testing.T) {
	cases := narrowCases(0x7f7f, bf16Value, 1_000_000)
	if testing.Short() {
		cases = cases[:len(cases)/4]
	}
	checkNarrow(t, "F32ToBF16", F32ToBF16, 0x7f80, 0x7f7f, bf16Value, cases)
}

// TestEdgeValues pins hand-checked conversions.
func TestEdgeValues(t *testing.T) {
	nan := math.Float32frombits(0x7fc00001)
	tests := []struct {
		name     string
		f        float32
		f16, b16 uint16
	}{
		{"+0", 0, 0x0000, 0x0000},
		{"-0", float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{"1", 1, 0x3c00, 0x3f80},
		{"-2", -2, 0xc000, 0xc000},
		{"max half", 65504, 0x7bff, 0x4780},
		{"65519 rounds down", 65519, 0x7bff, 0x4780},
		{"65520 overflows", 65520, 0x7c00, 0x4780},
		{"smallest half subnormal", 0x1p-24, 0x0001, 0x3380},
		{"half of it ties to 0", 0x1p-25, 0x0000, 0x3300},
		{"just above half of it", math.Nextafter32(0x1p-25, 1), 0x0001, 0x3300},
		{"1.5 × smallest ties to even 2", 0x1.8p-24, 0x0002, 0x33c0},
		{"largest half subnormal", 1023 * 0x1p-24, 0x03ff, 0x3880 /* 0x1.ff8p-15 rounds up to 2^-14 */},
		{"1+2^-11 ties to even 1", 1 + 0x1p-11, 0x3c00, 0x3f80},
		{"1+3×2^-11 ties up", 1 + 3*0x1p-11, 0x3c02, 0x3f80},
		{"bf16 tie to even", 1 + 0x1p-8, 0x3c04, 0x3f80},
		{"bf16 tie up", 1 + 3*0x1p-8, 0x3c0c, 0x3f82},
		{"max float32", math.MaxFloat32, 0x7c00, 0x7f80},
		{"-Inf", float32(math.Inf(-1)), 0xfc00, 0xff80},
		{"smallest float32 subnormal", math.SmallestNonzeroFloat32, 0x0000, 0x0000},
		{"NaN", nan, 0x7e00, 0x7fc0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := F32ToF16(tc.f); got != tc.f16 {
				t.Errorf("F32ToF16(%v) = %#04x, want %#04x", tc.f, got, tc.f16)
			}
			if got := F32ToBF16(tc.f); got != tc.b16 {
				t.Errorf("F32ToBF16(%v) = %#04x, want %#04x", tc.f, got, tc.b16)
			}
		})
	}
	// A signalling NaN whose payload sits only in bits dropped by narrowing
	// must not become Inf.
	snan := math.Float32frombits(0xff800001)
	if h := F32ToF16(snan); h != 0xfe00 {
		t.Errorf("F32ToF16(signalling NaN) = %#04x, want 0xfe00", h)
	}
	if b := F32ToBF16(snan); b != 0xffc0 {
		t.Errorf("F32ToBF16(signalling NaN) = %#04x, want 0xffc0", b)
	}
}

func TestSlicesMatchScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 10_000
	hs := make([]uint16, n)
	fs := make([]float32, n)
	for i := range hs {
		hs[i] = uint16(r.Uint32())
		fs[i] = math.Float32frombits(r.Uint32())
		if i%3 == 0 {
			fs[i] = float32(r.NormFloat64())
		}
	}
	f32 := make([]float32, n)
	u16 := make([]uint16, n)

	F16sToF32s(f32, hs)
	for i, h := range hs {
		if math.Float32bits(f32[i]) != math.Float32bits(F16ToF32(h)) {
			t.Fatalf("F16sToF32s[%d] of %#04x = %#08x, scalar %#08x", i, h, math.Float32bits(f32[i]), math.Float32bits(F16ToF32(h)))
		}
	}
	BF16sToF32s(f32, hs)
	for i, h := range hs {
		if math.Float32bits(f32[i]) != math.Float32bits(BF16ToF32(h)) {
			t.Fatalf("BF16sToF32s[%d] of %#04x differs from scalar", i, h)
		}
	}
	F32sToF16s(u16, fs)
	for i, f := range fs {
		if u16[i] != F32ToF16(f) {
			t.Fatalf("F32sToF16s[%d] of %#08x = %#04x, scalar %#04x", i, math.Float32bits(f), u16[i], F32ToF16(f))
		}
	}
	F32sToBF16s(u16, fs)
	for i, f := range fs {
		if u16[i] != F32ToBF16(f) {
			t.Fatalf("F32sToBF16s[%d] of %#08x = %#04x, scalar %#04x", i, math.Float32bits(f), u16[i], F32ToBF16(f))
		}
	}

	// Every 16-bit pattern through the widening slice forms.
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	wide := make([]float32, 1<<16)
	F16sToF32s(wide, all)
	for i, h := range all {
		if math.Float32bits(wide[i]) != math.Float32bits(F16ToF32(h)) {
			t.Fatalf("F16sToF32s of %#04x = %#08x, scalar %#08x", h, math.Float32bits(wide[i]), math.Float32bits(F16ToF32(h)))
		}
	}
	BF16sToF32s(wide, all)
	for i, h := range all {
		if math.Float32bits(wide[i]) != math.Float32bits(BF16ToF32(h)) {
			t.Fatalf("BF16sToF32s of %#04x differs from scalar", h)
		}
	}

	// Lengths differ: only the common prefix is written.
	dst := []float32{7, 7, 7}
	F16sToF32s(dst, []uint16{0x3c00, 0x4000})
	if dst[0] != 1 || dst[1] != 2 || dst[2] != 7 {
		t.Errorf("F16sToF32s with short src wrote %v, want [1 2 7]", dst)
	}
}
