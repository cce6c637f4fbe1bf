package bucket

import (
	"fmt"
	"io"
	"math"
	"slices"
)

// Histogram counts images per bucket.
type Histogram struct {
	rows map[Size]*Row
}

// Row is one bucket of a Histogram.
type Row struct {
	Bucket   Size
	Images   int     // distinct images
	Samples  int     // images × repeats per epoch
	AbsError float64 // Σ |aspect error| over images
}

// Add counts one image with its repeats per epoch.
func (h *Histogram) Add(a Assignment, repeats int) {
	if h.rows == nil {
		h.rows = map[Size]*Row{}
	}
	r := h.rows[a.Bucket]
	if r == nil {
		r = &Row{Bucket: a.Bucket}
		h.rows[a.Bucket] = r
	}
	r.Images++
	r.Samples += repeats
	r.AbsError += math.Abs(a.AspectError)
}

// Rows are the non-empty buckets sorted by (w, h).
func (h *Histogram) Rows() []Row {
	out := make([]Row, 0, len(h.rows))
	for _, r := range h.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(x, y Row) int {
		if x.Bucket.W != y.Bucket.W {
			return x.Bucket.W - y.Bucket.W
		}
		return x.Bucket.H - y.Bucket.H
	})
	return out
}

// Batches is the number of batches per epoch of batch size bs (bucket.md §6:
// Σ ⌈n_b / bs⌉; a bucket's leftover is a partial batch, never merged) and
// how many of them are partial.
func (h *Histogram) Batches(bs int) (total, partial int) {
	for _, r := range h.rows {
		total += (r.Samples + bs - 1) / bs
		if r.Samples%bs != 0 {
			partial++
		}
	}
	return total, partial
}

// MeanAbsError is kohya's "mean ar error (without repeats)".
func (h *Histogram) MeanAbsError() float64 {
	var n int
	var s float64
	for _, r := range h.rows {
		n += r.Images
		s += r.AbsError
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

// Print writes the histogram as a table, then the batch arithmetic for
// batch size bs and gradient accumulation ga (train.md §12), then warnings
// about buckets that leave partial batches.
func (h *Histogram) Print(w io.Writer, bs, ga int) {
	rows := h.Rows()
	fmt.Fprintf(w, "%-11s %7s %8s %8s %8s %9s\n", "bucket", "images", "samples", "batches", "partial", "ar error")
	var images, samples int
	for _, r := range rows {
		full, part := r.Samples/bs, 0
		if r.Samples%bs != 0 {
			part = 1
		}
		fmt.Fprintf(w, "%-11s %7d %8d %8d %8d %9.3f  %s\n", r.Bucket, r.Images, r.Samples, full+part, part, r.AbsError/float64(r.Images), bar(r.Samples, rows))
		images += r.Images
		samples += r.Samples
	}
	m, partial := h.Batches(bs)
	fmt.Fprintf(w, "%-11s %7d %8d %8d %8d %9.3f\n", "total", images, samples, m, partial, h.MeanAbsError())
	u := (m + ga - 1) / ga
	fmt.Fprintf(w, "batch size %d: %d batches per epoch (M); gradient accumulation %d: %d updates per epoch (U)\n", bs, m, ga, u)
	if bs > 1 {
		for _, r := range rows {
			if r.Samples < bs {
				fmt.Fprintf(w, "warning: bucket %v holds %d sample(s) per epoch, fewer than the batch size %d: its only batch is partial\n", r.Bucket, r.Samples, bs)
			}
		}
		if partial > 0 {
			fmt.Fprintf(w, "note: %d bucket(s) end with a partial batch (kohya trains them as smaller batches)\n", partial)
		}
	}
}

func bar(n int, rows []Row) string {
	mx := 0
	for _, r := range rows {
		mx = max(mx, r.Samples)
	}
	if mx == 0 {
		return ""
	}
	k := (n*30 + mx - 1) / mx
	b := make([]byte, k)
	for i := range b {
		b[i] = '#'
	}
	return string(b)
}
