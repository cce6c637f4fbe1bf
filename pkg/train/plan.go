package train

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"loco/pkg/dataset"
	"loco/pkg/manifest"
)

// Item is one image of the training set as the loop sees it.
type Item struct {
	Rec     *manifest.Record
	Key     string // latent cache key
	Bucket  [2]int // w, h in pixels
	Repeats int    // uses per epoch (folder repeats, or balanced reg repeats)
}

// Plan is the step arithmetic of a run (spec/train.md §12), computed from
// the real buckets before any weights are loaded.
type Plan struct {
	Items        []Item
	TrainImages  int // train images (without repeats)
	RegImages    int // reg images (without repeats)
	T            int // Σ train repeats × images
	RegRaw       int // Σ reg repeats × images before balancing
	R            int // reg samples per epoch after balancing
	Buckets      []BucketCount
	BatchSize    int
	GradAccum    int
	M            int // micro-batches per epoch
	U            int // optimizer updates per epoch
	Epochs       int // epochs asked for
	TotalSteps   int // optimizer updates of the run
	LoopEpochs   int // ⌈TotalSteps / U⌉
	GUISteps     int // what the kohya_ss GUI would compute (⌈T/B/GA × epochs × reg factor⌉)
	StepsFromMax bool
}

// BucketCount is one bucket's samples per epoch (repeats and reg included).
type BucketCount struct {
	Bucket  [2]int
	Samples int
	Batches int
}

// NewPlan counts samples, buckets and steps. keyField names the record
// field holding the latent cache key. Reg images are balanced against the
// train samples as kohya does (dataset.md §6), in record order. maxSteps >
// 0 caps (or sets) the number of updates instead of epochs × U.
func NewPlan(recs []*manifest.Record, keyField string, batch, gradAccum, epochs, maxSteps int) (*Plan, error) {
	if batch < 1 || gradAccum < 1 {
		return nil, fmt.Errorf("batch size %d and gradient accumulation %d must be at least 1", batch, gradAccum)
	}
	if epochs < 1 && maxSteps < 1 {
		return nil, fmt.Errorf("give a number of epochs (or --max-train-steps)")
	}
	p := &Plan{BatchSize: batch, GradAccum: gradAccum, Epochs: epochs}
	var regIdx []int
	var regRep []int
	for i, r := range recs {
		var key string
		if raw, ok := r.Extra[keyField]; ok {
			key = strings.Trim(string(raw), `"`)
		}
		if key == "" {
			return nil, fmt.Errorf("record %d (%s) has no %q field: run the records through loco-encode first", i+1, r.Path, keyField)
		}
		if r.Bucket == nil {
			return nil, fmt.Errorf("record %d (%s) has no bucket: run the records through loco-bucket and loco-encode", i+1, r.Path)
		}
		it := Item{Rec: r, Key: key, Bucket: *r.Bucket, Repeats: r.Repeats}
		if r.IsReg {
			p.RegImages++
			p.RegRaw += r.Repeats
			regIdx = append(regIdx, len(p.Items))
			regRep = append(regRep, r.Repeats)
		} else {
			if r.Repeats < 1 {
				return nil, fmt.Errorf("record %d (%s): repeats %d, want at least 1", i+1, r.Path, r.Repeats)
			}
			p.TrainImages++
			p.T += r.Repeats
		}
		p.Items = append(p.Items, it)
	}
	if p.T == 0 {
		return nil, fmt.Errorf("no train images in the records (only regularization images)")
	}
	for j, n := range dataset.BalanceReg(regRep, p.T) {
		p.Items[regIdx[j]].Repeats = n
		p.R += n
	}
	counts := map[[2]int]int{}
	for _, it := range p.Items {
		counts[it.Bucket] += it.Repeats
	}
	for b, n := range counts {
		if n == 0 {
			continue
		}
		p.Buckets = append(p.Buckets, BucketCount{Bucket: b, Samples: n, Batches: (n + batch - 1) / batch})
	}
	sort.Slice(p.Buckets, func(i, j int) bool { return lessBucket(p.Buckets[i].Bucket, p.Buckets[j].Bucket) })
	for _, b := range p.Buckets {
		p.M += b.Batches
	}
	p.U = (p.M + gradAccum - 1) / gradAccum
	regFactor := 1.0
	if p.RegImages > 0 {
		regFactor = 2
	}
	p.GUISteps = int(math.Ceil(float64(p.T) / float64(batch) / float64(gradAccum) * float64(max(epochs, 1)) * regFactor))
	if maxSteps > 0 {
		p.TotalSteps, p.StepsFromMax = maxSteps, true
	} else {
		p.TotalSteps = epochs * p.U
	}
	p.LoopEpochs = (p.TotalSteps + p.U - 1) / p.U
	return p, nil
}

func lessBucket(a, b [2]int) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// Batch is one micro-batch: indices into Plan.Items, all of one bucket.
type Batch struct {
	Bucket [2]int
	Items  []int
}

// EpochBatches returns the micro-batches of epoch e (0-based) in training
// order, as kohya's bucket manager makes them: each bucket's samples (every
// item repeated per its repeats) are shuffled, cut into batches of B (the
// last may be shorter), and the order of all batches is shuffled. The
// shuffles derive from (seed, e) only.
func (p *Plan) EpochBatches(seed uint64, e int) []Batch {
	r := Stream(seed, "epoch", e, 0)
	byBucket := map[[2]int][]int{}
	for i, it := range p.Items {
		for k := 0; k < it.Repeats; k++ {
			byBucket[it.Bucket] = append(byBucket[it.Bucket], i)
		}
	}
	var out []Batch
	for _, bc := range p.Buckets {
		s := byBucket[bc.Bucket]
		r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		for lo := 0; lo < len(s); lo += p.BatchSize {
			out = append(out, Batch{Bucket: bc.Bucket, Items: s[lo:min(lo+p.BatchSize, len(s))]})
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// IsUpdate reports whether micro-batch i (0-based) of an epoch of m
// micro-batches ends an accumulation window: every GA-th micro-batch and
// the last of the epoch (the window restarts at every epoch).
func IsUpdate(i, m, ga int) bool { return (i+1)%ga == 0 || i == m-1 }

// Warmup converts lr_warmup_steps (an integer, or a fraction < 1 of the
// total) to steps.
func Warmup(w float64, total int) int {
	if w > 0 && w < 1 {
		return int(w * float64(total))
	}
	return int(w)
}

// Describe writes the plan as kohya prints it, plus loco's numbers.
func (p *Plan) Describe(lr LRSchedule, base float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "train images: %d, repeats → %d samples per epoch (T)\n", p.TrainImages, p.T)
	if p.RegImages > 0 {
		fmt.Fprintf(&b, "reg images: %d (%d with repeats), balanced to %d samples per epoch (R)\n", p.RegImages, p.RegRaw, p.R)
	}
	for _, bc := range p.Buckets {
		fmt.Fprintf(&b, "bucket %dx%d: %d samples, %d batches\n", bc.Bucket[0], bc.Bucket[1], bc.Samples, bc.Batches)
	}
	fmt.Fprintf(&b, "batch size %d, gradient accumulation %d\n", p.BatchSize, p.GradAccum)
	fmt.Fprintf(&b, "batches per epoch (M): %d\n", p.M)
	fmt.Fprintf(&b, "steps per epoch (U = ⌈M/GA⌉): %d\n", p.U)
	if p.StepsFromMax {
		fmt.Fprintf(&b, "total optimization steps: %d (--max-train-steps), %d epochs looped\n", p.TotalSteps, p.LoopEpochs)
	} else {
		fmt.Fprintf(&b, "epochs: %d, total optimization steps: %d\n", p.Epochs, p.TotalSteps)
	}
	if p.GUISteps != p.TotalSteps {
		fmt.Fprintf(&b, "(the kohya_ss GUI formula would give %d steps; loco uses %d)\n", p.GUISteps, p.TotalSteps)
	}
	fmt.Fprintf(&b, "lr schedule: %s, %d warmup steps, base lr %g\n", lr.Name, lr.Warmup, base)
	last := p.TotalSteps - 1
	for _, k := range uniqueSorted([]int{0, 1, lr.Warmup, last / 4, last / 2, 3 * last / 4, last}) {
		if k >= 0 && k <= last {
			fmt.Fprintf(&b, "  lr at step %d: %.4g\n", k, base*lr.Multiplier(k))
		}
	}
	return b.String()
}

func uniqueSorted(v []int) []int {
	sort.Ints(v)
	out := v[:0]
	for i, x := range v {
		if i == 0 || x != v[i-1] {
			out = append(out, x)
		}
	}
	return out
}
