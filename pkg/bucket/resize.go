package bucket

import (
	"fmt"
	"image"
	"math/rand/v2"

	"github.com/disintegration/imaging"
)

// Filter picks the interpolation of a resize from its direction, as current
// sd-scripts does when resize_interpolation is unset (bucket.md §5):
//
//   - shrinking, or keeping a side (W ≥ w' and H ≥ h'): OpenCV INTER_AREA.
//     The imaging equivalent is imaging.Box: a box filter whose support is
//     scaled by the reduction factor averages exactly the source pixels
//     under each destination pixel, which is what INTER_AREA computes
//     (identical for integer factors, area-weighted at fractional edges).
//   - any enlargement: Pillow LANCZOS, which is the a=3 Lanczos kernel;
//     imaging.Lanczos is the same kernel.
//
// (Until 2024-07 sd-scripts used INTER_AREA in both directions.)
func Filter(from, to Size) imaging.ResampleFilter {
	if from.W >= to.W && from.H >= to.H {
		return imaging.Box
	}
	return imaging.Lanczos
}

// FilterName is the name of Filter's choice, for records and logs.
func FilterName(from, to Size) string {
	if from == to {
		return "none"
	}
	if from.W >= to.W && from.H >= to.H {
		return "area"
	}
	return "lanczos"
}

// ResizeAndCrop is trim_and_resize_if_required: resize img to a.Resized
// (only if the size differs) with Filter's interpolation, then crop it to
// a.Bucket. The crop is a.Crop (centred) unless rng is non-nil: then each
// axis with excess e gets a uniform offset in [0, e], the width drawn
// first (kohya's random_crop). img must have the size the assignment was
// made for.
func ResizeAndCrop(img *image.NRGBA, a Assignment, rng *rand.Rand) (*image.NRGBA, error) {
	src := Size{img.Bounds().Dx(), img.Bounds().Dy()}
	if src.W < 1 || src.H < 1 {
		return nil, fmt.Errorf("resize: empty image")
	}
	out := img
	if src != a.Resized {
		out = imaging.Resize(img, a.Resized.W, a.Resized.H, Filter(src, a.Resized))
	}
	l, t := a.Crop[0], a.Crop[1]
	if rng != nil {
		l, t = 0, 0
		if e := a.Resized.W - a.Bucket.W; e > 0 {
			l = rng.IntN(e + 1)
		}
		if e := a.Resized.H - a.Bucket.H; e > 0 {
			t = rng.IntN(e + 1)
		}
	}
	r := image.Rect(l, t, l+a.Bucket.W, t+a.Bucket.H)
	if !r.In(out.Bounds()) {
		return nil, fmt.Errorf("resize: crop %v outside the resized image %v", r, out.Bounds())
	}
	if r == out.Bounds() {
		return out, nil
	}
	return imaging.Crop(out, r), nil
}
