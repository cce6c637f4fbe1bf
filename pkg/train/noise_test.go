package train

import (
	"bytes"
	"image/png"
	"math"
	"testing"
)

func TestResizeBilinear(t *testing.T) {
	// torch.nn.functional.interpolate([[1,2],[3,4]], size=(4,4), mode="bilinear")
	want := []float32{1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4}
	got := make([]float32, 16)
	ResizeBilinear(got, []float32{1, 2, 3, 4}, 1, 2, 2, 4, 4)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	one := make([]float32, 6)
	ResizeBilinear(one, []float32{3}, 1, 1, 1, 2, 3)
	for _, v := range one {
		if v != 3 {
			t.Fatalf("1x1 map: %v", one)
		}
	}
}

func TestPyramidNoise(t *testing.T) {
	b, c, h, w := 2, 4, 16, 24
	noise := make([]float32, b*c*h*w)
	normals(Stream(1, "t", 0, 0), noise)
	orig := append([]float32(nil), noise...)
	PyramidNoise(Stream(1, "p", 0, 0), noise, b, c, h, w, 10, 0.1)
	var sum, sq, diff float64
	for i, v := range noise {
		sum += float64(v)
		diff += math.Abs(float64(v) - float64(orig[i]))
	}
	mean := sum / float64(len(noise))
	for _, v := range noise {
		sq += (float64(v) - mean) * (float64(v) - mean)
	}
	std := math.Sqrt(sq / float64(len(noise)-1))
	if math.Abs(std-1) > 1e-5 {
		t.Errorf("std after normalisation %v, want 1", std)
	}
	if diff/float64(len(noise)) < 0.1 {
		t.Errorf("pyramid noise changed the noise by only %v on average", diff/float64(len(noise)))
	}
	// iterations 0 leaves the noise alone.
	again := append([]float32(nil), orig...)
	PyramidNoise(Stream(1, "p", 0, 0), again, b, c, h, w, 0, 0.1)
	for i := range again {
		if again[i] != orig[i] {
			t.Fatal("iterations 0 changed the noise")
		}
	}
}

func TestNoiseOffset(t *testing.T) {
	b, c, hw := 2, 4, 12
	noise := make([]float32, b*c*hw)
	NoiseOffset{Offset: 0.1}.ApplyOffset(Stream(3, "o", 0, 0), noise, nil, b, c, hw)
	for i := 0; i < b*c; i++ {
		row := noise[i*hw : (i+1)*hw]
		if row[0] == 0 {
			t.Fatalf("channel %d: no offset", i)
		}
		for _, v := range row {
			if v != row[0] {
				t.Fatalf("channel %d: offset not constant over the pixels: %v", i, row)
			}
		}
	}
}

func TestSampleLatentAndTimesteps(t *testing.T) {
	mean := []float32{1, -2, float32(math.NaN()), 0}
	logvar := []float32{-100, -100, 0, 0}
	dst := make([]float32, 4)
	SampleLatent(dst, mean, logvar, Stream(1, "l", 0, 0))
	if math.Abs(float64(dst[0])-LatentScale) > 1e-5 || math.Abs(float64(dst[1])+2*LatentScale) > 1e-5 || dst[2] != 0 || dst[3] == 0 {
		t.Errorf("SampleLatent: %v", dst)
	}
	ts := Timesteps(Stream(1, "t", 0, 0), 1000, 0, 1000)
	lo, hi := 1000, -1
	for _, v := range ts {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo < 0 || hi > 999 || hi-lo < 900 {
		t.Errorf("timesteps range [%d, %d]", lo, hi)
	}
	if v := Timesteps(Stream(1, "t", 0, 0), 3, 500, 500); v[0] != 500 || v[2] != 500 {
		t.Errorf("min = max: %v", v)
	}
	s := SD1()
	if w := s.MinSNRWeight(0, 5); math.Abs(w-5/s.SNR(0)) > 1e-12 {
		t.Errorf("min-SNR at 0: %v", w)
	}
	if w := s.MinSNRWeight(999, 5); w != 1 {
		t.Errorf("min-SNR at 999: %v", w)
	}
}

func TestPyFloat(t *testing.T) {
	for v, want := range map[float64]string{1e-4: "0.0001", 5e-5: "5e-05", 4: "4.0", 1678886400.123456: "1678886400.123456",
		0.1: "0.1", 1e16: "1e+16", 0: "0.0", 1.4e-8: "1.4e-08"} {
		if got := PyFloat(v); got != want {
			t.Errorf("PyFloat(%v) = %s, want %s", v, got, want)
		}
	}
}

func TestPlotPNG(t *testing.T) {
	var lines []MetricsLine
	for s := 1; s <= 40; s++ {
		lines = append(lines, MetricsLine{Step: s, Loss: 1 / float64(s), AvgLoss: 1.5 / float64(s),
			LR: map[string]float64{"unet": 1e-4 * float64(s) / 40, "textencoder": 5e-5}})
	}
	var buf bytes.Buffer
	if err := PlotPNG(&buf, lines, "tiny"); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Some pixels of both LR colours and the loss colour are drawn.
	found := map[[3]uint32]int{}
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			found[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	for _, c := range [][3]uint32{{200, 60, 30}, {30, 140, 60}, {20, 60, 160}} {
		if found[c] < 20 {
			t.Errorf("colour %v drawn %d times", c, found[c])
		}
	}
}
