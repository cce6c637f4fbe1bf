package bucket

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func defaults(res int, noUpscale bool) Params {
	return Params{Resolution: [2]int{res, res}, MinReso: DefaultMinReso, MaxReso: DefaultMaxReso, Steps: DefaultSteps, NoUpscale: noUpscale}
}

func mustNew(t *testing.T, p Params) *Bucketer {
	t.Helper()
	b, _, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sizes(s string) []Size {
	var out []Size
	for _, f := range strings.Fields(s) {
		var z Size
		fmt.Sscanf(f, "(%d,%d)", &z.W, &z.H)
		out = append(out, z)
	}
	return out
}

func TestPredefinedListsMatchSpec(t *testing.T) {
	for _, c := range []struct {
		p    Params
		want string
	}{
		{defaults(512, false), "(256,832) (256,896) (256,960) (256,1024) (320,704) (320,768) (384,640) (448,576) (512,512) (576,448) (640,384) (704,320) (768,320) (832,256) (896,256) (960,256) (1024,256)"},
		// max 2048 (the GUI default) gives the same list for 512.
		{Params{Resolution: [2]int{512, 512}, MinReso: 256, MaxReso: 2048, Steps: 64}, "(256,832) (256,896) (256,960) (256,1024) (320,704) (320,768) (384,640) (448,576) (512,512) (576,448) (640,384) (704,320) (768,320) (832,256) (896,256) (960,256) (1024,256)"},
		{defaults(768, false), "(256,1024) (320,1024) (384,1024) (448,1024) (512,1024) (576,960) (576,1024) (640,896) (704,832) (768,768) (832,704) (896,640) (960,576) (1024,256) (1024,320) (1024,384) (1024,448) (1024,512) (1024,576)"},
	} {
		got := Predefined(c.p)
		if fmt.Sprint(got) != fmt.Sprint(sizes(c.want)) {
			t.Errorf("%+v:\n got %v\nwant %v", c.p, got, sizes(c.want))
		}
	}
	if n := len(Predefined(defaults(768, false))); n != 19 {
		t.Errorf("768 list has %d buckets, want 19", n)
	}
}

// Properties over many parameter sets: area within the maximum, sides
// multiples of the step within [min, max] (the square may be below min
// only if the resolution is), sorted, no duplicates.
func TestPredefinedProperties(t *testing.T) {
	for _, res := range [][2]int{{512, 512}, {768, 768}, {512, 768}, {1024, 1024}, {640, 448}, {500, 500}} {
		for _, steps := range []int{64, 128} {
			p := Params{Resolution: res, MinReso: 256, MaxReso: 2048, Steps: steps}
			p, _, err := p.Normalize()
			if err != nil {
				t.Fatal(err)
			}
			list := Predefined(p)
			for i, b := range list {
				if b.W*b.H > p.Area() {
					t.Errorf("%v step %d: %v over the area %d", res, steps, b, p.Area())
				}
				if b.W%steps != 0 || b.H%steps != 0 {
					t.Errorf("%v step %d: %v not a multiple of the step", res, steps, b)
				}
				if b.W > p.MaxReso || b.H > p.MaxReso {
					t.Errorf("%v step %d: %v over max", res, steps, b)
				}
				if i > 0 && (list[i-1].W > b.W || list[i-1].W == b.W && list[i-1].H >= b.H) {
					t.Errorf("%v step %d: not sorted at %v", res, steps, b)
				}
			}
		}
	}
}

// bucket.md §8: every worked example in both modes.
func TestWorkedExamples(t *testing.T) {
	type mode struct {
		bucket, resized Size
		l, t            int
		filter          string
	}
	for _, c := range []struct {
		img      Size
		off, on  mode
		arErrOff float64 // NaN: not given by the spec
	}{
		{Size{512, 512}, mode{Size{512, 512}, Size{512, 512}, 0, 0, "none"}, mode{Size{512, 512}, Size{512, 512}, 0, 0, "none"}, 0},
		{Size{1024, 1024}, mode{Size{512, 512}, Size{512, 512}, 0, 0, "area"}, mode{Size{512, 512}, Size{512, 512}, 0, 0, "area"}, 0},
		{Size{1024, 768}, mode{Size{576, 448}, Size{597, 448}, 10, 0, "area"}, mode{Size{512, 384}, Size{512, 384}, 0, 0, "area"}, -0.048},
		{Size{768, 1024}, mode{Size{448, 576}, Size{448, 597}, 0, 10, "area"}, mode{Size{384, 512}, Size{384, 512}, 0, 0, "area"}, math.NaN()},
		{Size{640, 480}, mode{Size{576, 448}, Size{597, 448}, 10, 0, "area"}, mode{Size{512, 384}, Size{512, 384}, 0, 0, "area"}, -0.048},
		{Size{4032, 3024}, mode{Size{576, 448}, Size{597, 448}, 10, 0, "area"}, mode{Size{512, 384}, Size{512, 384}, 0, 0, "area"}, -0.048},
		{Size{1920, 1080}, mode{Size{640, 384}, Size{683, 384}, 21, 0, "area"}, mode{Size{640, 384}, Size{683, 384}, 21, 0, "area"}, -0.111},
		{Size{1080, 1920}, mode{Size{384, 640}, Size{384, 683}, 0, 21, "area"}, mode{Size{384, 640}, Size{384, 683}, 0, 21, "area"}, math.NaN()},
		{Size{800, 1200}, mode{Size{384, 640}, Size{427, 640}, 21, 0, "area"}, mode{Size{384, 576}, Size{384, 576}, 0, 0, "area"}, math.NaN()},
		{Size{500, 700}, mode{Size{448, 576}, Size{448, 627}, 0, 25, "area"}, mode{Size{384, 512}, Size{384, 538}, 0, 13, "area"}, 0.064},
		{Size{700, 500}, mode{Size{576, 448}, Size{627, 448}, 25, 0, "area"}, mode{Size{512, 384}, Size{538, 384}, 13, 0, "area"}, math.NaN()},
		{Size{300, 300}, mode{Size{512, 512}, Size{512, 512}, 0, 0, "lanczos"}, mode{Size{256, 256}, Size{300, 300}, 22, 22, "none"}, 0},
		{Size{3000, 1000}, mode{Size{832, 256}, Size{832, 277}, 0, 10, "area"}, mode{Size{768, 256}, Size{768, 256}, 0, 0, "area"}, 0.25},
	} {
		for _, noUp := range []bool{false, true} {
			want := c.off
			if noUp {
				want = c.on
			}
			t.Run(fmt.Sprintf("%v/no_upscale=%v", c.img, noUp), func(t *testing.T) {
				a, err := mustNew(t, defaults(512, noUp)).Assign(c.img.W, c.img.H)
				if err != nil {
					t.Fatal(err)
				}
				if a.Bucket != want.bucket || a.Resized != want.resized || a.Crop[0] != want.l || a.Crop[1] != want.t {
					t.Errorf("got bucket %v resized %v crop %v, want %v %v (%d,%d)", a.Bucket, a.Resized, a.Crop, want.bucket, want.resized, want.l, want.t)
				}
				if a.Crop[2]-a.Crop[0] != a.Bucket.W || a.Crop[3]-a.Crop[1] != a.Bucket.H {
					t.Errorf("crop %v does not have the bucket size %v", a.Crop, a.Bucket)
				}
				if f := FilterName(c.img, a.Resized); f != want.filter {
					t.Errorf("filter %s, want %s", f, want.filter)
				}
				if !noUp && !math.IsNaN(c.arErrOff) && math.Abs(a.AspectError-c.arErrOff) > 0.001 {
					t.Errorf("aspect error %.4f, want %.3f", a.AspectError, c.arErrOff)
				}
			})
		}
	}
}

func TestAssignProperties(t *testing.T) {
	for _, noUp := range []bool{false, true} {
		b := mustNew(t, defaults(512, noUp))
		for w := 64; w <= 4096; w += 61 {
			for h := 64; h <= 4096; h += 67 {
				a, err := b.Assign(w, h)
				if err != nil {
					t.Fatalf("%dx%d: %v", w, h, err)
				}
				if a.Bucket.W*a.Bucket.H > 512*512 || a.Bucket.W%64 != 0 || a.Bucket.H%64 != 0 {
					t.Fatalf("%dx%d no_upscale=%v: bucket %v", w, h, noUp, a.Bucket)
				}
				if a.Resized.W < a.Bucket.W || a.Resized.H < a.Bucket.H {
					t.Fatalf("%dx%d: resized %v does not cover bucket %v", w, h, a.Resized, a.Bucket)
				}
				if noUp && (a.Resized.W > w || a.Resized.H > h) {
					t.Fatalf("%dx%d: upscaled to %v with no_upscale", w, h, a.Resized)
				}
			}
		}
	}
}

func TestAssignRefusesDegenerate(t *testing.T) {
	for _, c := range []struct {
		noUp bool
		w, h int
	}{
		{true, 50, 50},     // smaller than a step: 0x0 bucket
		{true, 100000, 10}, // kohya: ZeroDivisionError
		{false, 0, 10},     // not an image size
		{true, 2000, 40},   // 40 px high: bucket height 0
	} {
		if a, err := mustNew(t, defaults(512, c.noUp)).Assign(c.w, c.h); err == nil {
			t.Errorf("%dx%d no_upscale=%v: assigned %+v, want an error", c.w, c.h, c.noUp, a)
		}
	}
}

func TestParseResolution(t *testing.T) {
	for _, c := range []struct {
		in   string
		want [2]int
		err  bool
	}{
		{"512", [2]int{512, 512}, false},
		{"512,768", [2]int{512, 768}, false},
		{" 640 , 448 ", [2]int{640, 448}, false},
		{"", [2]int{}, true},
		{"abc", [2]int{}, true},
		{"512x512", [2]int{}, true},
		{"512,", [2]int{}, true},
		{"1,2,3", [2]int{}, true},
		{"0", [2]int{}, true},
		{"-512", [2]int{}, true},
		{"512.5", [2]int{}, true},
	} {
		got, err := ParseResolution(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseResolution(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestNormalize(t *testing.T) {
	p, warn, err := Params{Resolution: [2]int{512, 512}, MinReso: 300, MaxReso: 1000, Steps: 64}.Normalize()
	if err != nil || p.MinReso != 256 || p.MaxReso != 1024 || len(warn) != 2 {
		t.Errorf("rounding: %+v %v %v", p, warn, err)
	}
	for _, c := range []struct {
		p   Params
		msg string
	}{
		{Params{Resolution: [2]int{128, 128}, MinReso: 256, MaxReso: 1024, Steps: 64}, "smaller than min-bucket-reso"},
		{Params{Resolution: [2]int{2048, 512}, MinReso: 256, MaxReso: 1024, Steps: 64}, "larger than max-bucket-reso"},
		{Params{Resolution: [2]int{512, 512}, MinReso: 256, MaxReso: 1024, Steps: 32}, "multiple of 64"},
		{Params{Resolution: [2]int{512, 512}, MinReso: 256, MaxReso: 1024, Steps: 0}, "multiple of 64"},
		{Params{Resolution: [2]int{512, 512}, MinReso: 32, MaxReso: 1024, Steps: 64}, "rounds down to 0"},
		{Params{Resolution: [2]int{512, 512}, MinReso: -1, MaxReso: 1024, Steps: 64}, "positive"},
		{Params{Resolution: [2]int{0, 512}, MinReso: 256, MaxReso: 1024, Steps: 64}, "positive"},
	} {
		if _, _, err := c.p.Normalize(); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: err = %v, want %q", c.p, err, c.msg)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	h.Add(Assignment{Bucket: Size{512, 512}}, 30)
	h.Add(Assignment{Bucket: Size{512, 512}, AspectError: -0.1}, 30)
	h.Add(Assignment{Bucket: Size{576, 448}, AspectError: 0.2}, 1)
	if m, p := h.Batches(4); m != 15+1 || p != 1 {
		t.Errorf("batches = %d, %d partial; want 16, 1", m, p)
	}
	if e := h.MeanAbsError(); math.Abs(e-0.1) > 1e-12 {
		t.Errorf("mean error %v", e)
	}
	var sb strings.Builder
	h.Print(&sb, 4, 3)
	out := sb.String()
	for _, s := range []string{"512x512", "16 batches per epoch", "6 updates per epoch", "576x448 holds 1 sample"} {
		if !strings.Contains(out, s) {
			t.Errorf("histogram lacks %q:\n%s", s, out)
		}
	}
}

func TestAspectErrorsExact(t *testing.T) {
	b := mustNew(t, defaults(512, false))
	for _, c := range []struct {
		w, h int
		want float64
	}{
		// Computed at run time in float64, as Python does (Go constant
		// arithmetic would be exact and differ in the last bits).
		{1024, 768, ar(576, 448) - ar(1024, 768)},
		{1920, 1080, ar(640, 384) - ar(1920, 1080)},
		{500, 700, ar(448, 576) - ar(500, 700)},
		{3000, 1000, ar(832, 256) - ar(3000, 1000)},
	} {
		a, _ := b.Assign(c.w, c.h)
		if a.AspectError != c.want {
			t.Errorf("%dx%d: %v, want %v", c.w, c.h, a.AspectError, c.want)
		}
	}
}

func ar(w, h int) float64 { return float64(w) / float64(h) }
