package bucket

import (
	"fmt"
	"strconv"
	"strings"
)

// Params are the bucketing parameters, named after sd-scripts' arguments.
type Params struct {
	Resolution [2]int // W, H: defines the maximum area W·H
	MinReso    int    // min_bucket_reso (default 256)
	MaxReso    int    // max_bucket_reso (default 1024)
	Steps      int    // bucket_reso_steps (default 64)
	NoUpscale  bool   // bucket_no_upscale: per-image buckets, never enlarge
}

// sd-scripts defaults.
const (
	DefaultMinReso = 256
	DefaultMaxReso = 1024
	DefaultSteps   = 64
)

// Area is the maximum bucket area W·H.
func (p Params) Area() int { return p.Resolution[0] * p.Resolution[1] }

// ParseResolution parses "512" (square) or "512,768" (W,H) as sd-scripts
// does (Python int() per comma-separated piece).
func ParseResolution(s string) ([2]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return [2]int{}, fmt.Errorf("resolution %q: give one size (512) or width,height (512,768)", s)
	}
	var v [2]int
	for i, part := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return [2]int{}, fmt.Errorf("resolution %q: %q is not an integer", s, part)
		}
		if n <= 0 {
			return [2]int{}, fmt.Errorf("resolution %q: sizes must be positive", s)
		}
		v[i] = n
	}
	if len(parts) == 1 {
		v[1] = v[0]
	}
	return v, nil
}

// Normalize checks p as sd-scripts does when buckets are enabled and returns
// the adjusted parameters with warnings: min_bucket_reso is rounded down
// and max_bucket_reso up to a multiple of the step; the resolution must lie
// within [min, max]; the step must be a positive multiple of 64
// (train_network.py's rule for SD 1.x since 2024-09; older sd-scripts
// accepted any step ≥ 1).
func (p Params) Normalize() (Params, []string, error) {
	var warn []string
	if p.Resolution[0] <= 0 || p.Resolution[1] <= 0 {
		return p, nil, fmt.Errorf("resolution %dx%d: sizes must be positive", p.Resolution[0], p.Resolution[1])
	}
	if p.Steps <= 0 || p.Steps%64 != 0 {
		return p, nil, fmt.Errorf("bucket-reso-steps %d: must be a multiple of 64 for SD 1.x (sd-scripts' train_network.py rule)", p.Steps)
	}
	if p.MinReso <= 0 || p.MaxReso <= 0 {
		return p, nil, fmt.Errorf("min-bucket-reso %d, max-bucket-reso %d: must be positive", p.MinReso, p.MaxReso)
	}
	if r := p.MinReso % p.Steps; r != 0 {
		n := p.MinReso - r
		warn = append(warn, fmt.Sprintf("min-bucket-reso %d is not a multiple of bucket-reso-steps %d: rounded down to %d", p.MinReso, p.Steps, n))
		p.MinReso = n
	}
	if r := p.MaxReso % p.Steps; r != 0 {
		n := p.MaxReso + p.Steps - r
		warn = append(warn, fmt.Sprintf("max-bucket-reso %d is not a multiple of bucket-reso-steps %d: rounded up to %d", p.MaxReso, p.Steps, n))
		p.MaxReso = n
	}
	lo, hi := min(p.Resolution[0], p.Resolution[1]), max(p.Resolution[0], p.Resolution[1])
	if lo < p.MinReso {
		return p, warn, fmt.Errorf("resolution %dx%d is smaller than min-bucket-reso %d (min-bucket-reso must be equal or less than the resolution)", p.Resolution[0], p.Resolution[1], p.MinReso)
	}
	if hi > p.MaxReso {
		return p, warn, fmt.Errorf("resolution %dx%d is larger than max-bucket-reso %d (max-bucket-reso must be equal or greater than the resolution)", p.Resolution[0], p.Resolution[1], p.MaxReso)
	}
	if p.MinReso == 0 {
		// A min below the step rounds down to 0: kohya then accepts
		// zero-sized buckets in the list, which cannot be trained.
		return p, warn, fmt.Errorf("min-bucket-reso rounds down to 0 with bucket-reso-steps %d", p.Steps)
	}
	return p, warn, nil
}
