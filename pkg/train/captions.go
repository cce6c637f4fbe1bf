package train

import (
	"math/rand/v2"
	"strings"
)

// CaptionOptions are sd-scripts' per-sample caption options
// (spec/dataset.md §7). All are off by default.
type CaptionOptions struct {
	Shuffle             bool    // shuffle_caption: shuffle the tags after the first KeepTokens
	KeepTokens          int     // keep_tokens: leading tags that stay in place (and are never dropped)
	DropoutRate         float64 // caption_dropout_rate: the whole caption becomes "" with this probability
	DropoutEveryNEpochs int     // caption_dropout_every_n_epochs: every caption of epochs N, 2N, … is ""
	TagDropoutRate      float64 // caption_tag_dropout_rate: each flexible tag dropped with this probability
}

// Random reports whether the options make the caption a random function of
// the sample (so encoder outputs of processed captions are not worth
// caching).
func (c CaptionOptions) Random() bool {
	return c.Shuffle || c.DropoutRate > 0 || c.DropoutEveryNEpochs > 0 || c.TagDropoutRate > 0
}

// Process applies the options to caption for a sample of epoch (1-based),
// in sd-scripts' order: whole-caption dropout (rate, then every-N-epochs),
// then — only when shuffling or tag dropout is on — split on ",", strip,
// keep the first KeepTokens tags fixed, shuffle the others, drop each of
// them with TagDropoutRate, and join with ", ". Without options the caption
// is returned unchanged. r is drawn from only when a rate needs it.
func (c CaptionOptions) Process(caption string, epoch int, r *rand.Rand) string {
	drop := c.DropoutRate > 0 && r.Float64() < c.DropoutRate
	drop = drop || c.DropoutEveryNEpochs > 0 && epoch%c.DropoutEveryNEpochs == 0
	if drop {
		return ""
	}
	if !c.Shuffle && c.TagDropoutRate <= 0 {
		return caption
	}
	tags := strings.Split(strings.TrimSpace(caption), ",")
	for i := range tags {
		tags[i] = strings.TrimSpace(tags[i])
	}
	k := min(c.KeepTokens, len(tags))
	fixed, flex := tags[:k], append([]string(nil), tags[k:]...)
	if c.Shuffle {
		r.Shuffle(len(flex), func(i, j int) { flex[i], flex[j] = flex[j], flex[i] })
	}
	if c.TagDropoutRate > 0 {
		kept := flex[:0]
		for _, t := range flex {
			if r.Float64() >= c.TagDropoutRate {
				kept = append(kept, t)
			}
		}
		flex = kept
	}
	return strings.Join(append(append([]string(nil), fixed...), flex...), ", ")
}
