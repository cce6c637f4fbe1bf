package bucket

import (
	"image"
	"math/rand/v2"
	"testing"

	"github.com/disintegration/imaging"

	"loco/pkg/dataset/datasettest"
)

// For an integer reduction factor INTER_AREA is the plain mean of each
// k×k block; the Box filter chosen for shrinking must give the same (to
// rounding).
func TestShrinkIsAreaAverage(t *testing.T) {
	src := datasettest.Pattern(64, 48, 5)
	a := Assignment{Bucket: Size{32, 24}, Resized: Size{32, 24}, Crop: [4]int{0, 0, 32, 24}}
	out, err := ResizeAndCrop(src, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0
	for y := range 24 {
		for x := range 32 {
			for c := range 3 {
				sum := 0
				for dy := range 2 {
					for dx := range 2 {
						sum += int(src.Pix[src.PixOffset(2*x+dx, 2*y+dy)+c])
					}
				}
				mean := (sum + 2) / 4
				got := int(out.Pix[out.PixOffset(x, y)+c])
				worst = max(worst, abs(got-mean))
			}
		}
	}
	if worst > 1 {
		t.Errorf("2x shrink differs from the 2x2 mean by up to %d", worst)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestResizeAndCropCentre(t *testing.T) {
	b := mustNew(t, defaults(512, false))
	for _, sz := range []Size{{1024, 768}, {300, 300}, {500, 700}, {512, 512}} {
		src := datasettest.Pattern(sz.W, sz.H, 9)
		a, err := b.Assign(sz.W, sz.H)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ResizeAndCrop(src, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Bounds().Dx() != a.Bucket.W || out.Bounds().Dy() != a.Bucket.H {
			t.Fatalf("%v: output %v, want bucket %v", sz, out.Bounds(), a.Bucket)
		}
		// Same pixels as resizing with the chosen filter and cropping by hand.
		ref := src
		if a.Resized != sz {
			ref = imaging.Resize(src, a.Resized.W, a.Resized.H, Filter(sz, a.Resized))
		}
		ref = imaging.Crop(ref, image.Rect(a.Crop[0], a.Crop[1], a.Crop[2], a.Crop[3]))
		for i := range ref.Pix {
			if ref.Pix[i] != out.Pix[i] {
				t.Fatalf("%v: pixel byte %d differs", sz, i)
			}
		}
		if sz == (Size{512, 512}) && out != src {
			t.Errorf("an image already at its bucket size should be returned as is")
		}
	}
}

func TestRandomCrop(t *testing.T) {
	b := mustNew(t, defaults(512, false))
	a, _ := b.Assign(1920, 1080) // 683x384 resized, 640x384 bucket: 43 px of excess
	src := datasettest.Pattern(1920, 1080, 2)
	resized := imaging.Resize(src, a.Resized.W, a.Resized.H, imaging.Box)
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[int]bool{}
	for range 200 {
		out, err := ResizeAndCrop(resized, a, rng) // already resized: only the crop
		if err != nil {
			t.Fatal(err)
		}
		// Find the offset by matching the first row.
		found := -1
		for l := 0; l <= 43; l++ {
			if out.Pix[0] == resized.Pix[resized.PixOffset(l, 0)] && string(out.Pix[:640*4]) == string(resized.Pix[resized.PixOffset(l, 0):resized.PixOffset(l, 0)+640*4]) {
				found = l
				break
			}
		}
		if found < 0 {
			t.Fatal("random crop is not a window of the resized image")
		}
		seen[found] = true
	}
	if !seen[0] || !seen[43] || len(seen) < 30 {
		t.Errorf("random offsets cover %d of 44 values (0: %v, 43: %v)", len(seen), seen[0], seen[43])
	}
}
