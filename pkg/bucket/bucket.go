package bucket

import (
	"fmt"
	"math"
	"slices"
)

// Size is (width, height) in pixels.
type Size struct{ W, H int }

func (s Size) String() string { return fmt.Sprintf("%dx%d", s.W, s.H) }

// Predefined is make_bucket_resolutions (bucket.md §2): the square
// ⌊⌊√A⌋/s⌋·s, then for w = min, min+s, … ≤ max the height
// min(max, ⌊⌊A/w⌋/s⌋·s) when it is at least min, with its mirror;
// duplicates removed, sorted by (w, h).
func Predefined(p Params) []Size {
	a, s := p.Area(), p.Steps
	q := int(math.Floor(math.Sqrt(float64(a))/float64(s))) * s // Python: int(math.sqrt(A) // s) * s
	set := map[Size]bool{{q, q}: true}
	for w := p.MinReso; w <= p.MaxReso; w += s {
		h := min(p.MaxReso, (a/w)/s*s)
		if h >= p.MinReso {
			set[Size{w, h}] = true
			set[Size{h, w}] = true
		}
	}
	out := make([]Size, 0, len(set))
	for b := range set {
		out = append(out, b)
	}
	slices.SortFunc(out, func(x, y Size) int {
		if x.W != y.W {
			return x.W - y.W
		}
		return x.H - y.H
	})
	return out
}

// Assignment is where an image goes: its bucket, the size it is resized
// to (covering the bucket), the crop of the resized image, and the aspect
// error (bucket w/h minus image w/h).
type Assignment struct {
	Bucket      Size
	Resized     Size
	Crop        [4]int // left, top, right, bottom in the resized image (centre crop)
	AspectError float64
}

// NeedsResize reports whether the image (of size img) must be resized.
func (a Assignment) NeedsResize(img Size) bool { return a.Resized != img }

// Bucketer assigns images to buckets for one set of parameters.
type Bucketer struct {
	p       Params
	list    []Size    // predefined mode
	aspects []float64 // w/h of list
	inList  map[Size]bool
}

// New checks p (see Params.Normalize) and returns a Bucketer with the
// warnings of the check.
func New(p Params) (*Bucketer, []string, error) {
	p, warn, err := p.Normalize()
	if err != nil {
		return nil, warn, err
	}
	b := &Bucketer{p: p}
	if !p.NoUpscale {
		b.list = Predefined(p)
		b.inList = map[Size]bool{}
		for _, s := range b.list {
			b.aspects = append(b.aspects, float64(s.W)/float64(s.H))
			b.inList[s] = true
		}
	}
	return b, warn, nil
}

// Params are the (normalized) parameters.
func (b *Bucketer) Params() Params { return b.p }

// List is the predefined bucket list (nil with NoUpscale).
func (b *Bucketer) List() []Size { return b.list }

// roundToSteps is BucketManager.round_to_steps: r = int(x + 0.5), then the
// largest multiple of the step not above r.
func (b *Bucketer) roundToSteps(x float64) int {
	r := int(x + 0.5)
	return r - r%b.p.Steps
}

// Assign is BucketManager.select_bucket for an image of w×h pixels (the
// size after EXIF orientation, in loco; kohya uses the stored size).
func (b *Bucketer) Assign(w, h int) (Assignment, error) {
	if w <= 0 || h <= 0 {
		return Assignment{}, fmt.Errorf("image size %dx%d is not positive", w, h)
	}
	aspect := float64(w) / float64(h)
	var bucket, resized Size
	if !b.p.NoUpscale {
		bucket = Size{w, h}
		if !b.inList[bucket] {
			// Closest aspect ratio; ties go to the first in the sorted list
			// (numpy argmin).
			best := 0
			for i, a := range b.aspects {
				if math.Abs(a-aspect) < math.Abs(b.aspects[best]-aspect) {
					best = i
				}
			}
			bucket = b.list[best]
		}
		// Scale so the image covers the bucket.
		var scale float64
		if aspect > float64(bucket.W)/float64(bucket.H) {
			scale = float64(bucket.H) / float64(h)
		} else {
			scale = float64(bucket.W) / float64(w)
		}
		resized = Size{int(float64(w)*scale + 0.5), int(float64(h)*scale + 0.5)}
	} else {
		area := float64(b.p.Area())
		if w*h > b.p.Area() {
			// Too large: shrink to about the maximum area, keeping the
			// aspect; round either the width or the height to the step,
			// whichever keeps the aspect closer.
			rw := math.Sqrt(area * aspect)
			rh := area / rw
			bw := b.roundToSteps(rw)
			bh1 := b.roundToSteps(float64(bw) / aspect)
			ar1 := float64(bw) / float64(bh1) // +Inf when bh1 is 0 (kohya: ZeroDivisionError)
			bh := b.roundToSteps(rh)
			bw2 := b.roundToSteps(float64(bh) * aspect)
			ar2 := float64(bw2) / float64(bh)
			if math.Abs(ar1-aspect) < math.Abs(ar2-aspect) {
				resized = Size{bw, int(float64(bw)/aspect + 0.5)}
			} else {
				resized = Size{int(float64(bh)*aspect + 0.5), bh}
			}
		} else {
			resized = Size{w, h} // never upscaled
		}
		// The bucket is the largest multiple of the step within the
		// resized size; the excess is cropped.
		bucket = Size{resized.W - resized.W%b.p.Steps, resized.H - resized.H%b.p.Steps}
	}
	if bucket.W <= 0 || bucket.H <= 0 || resized.W < bucket.W || resized.H < bucket.H {
		// kohya would crash (division by zero) or make an empty bucket.
		return Assignment{}, fmt.Errorf("image %dx%d gives an empty bucket %v (resized %v): too small or too elongated for bucket-reso-steps %d", w, h, bucket, resized, b.p.Steps)
	}
	l, t := (resized.W-bucket.W)/2, (resized.H-bucket.H)/2
	return Assignment{
		Bucket:      bucket,
		Resized:     resized,
		Crop:        [4]int{l, t, l + bucket.W, t + bucket.H},
		AspectError: float64(bucket.W)/float64(bucket.H) - aspect,
	}, nil
}
