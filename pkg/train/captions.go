package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"unicode"
)

// CaptionOptions are sd-scripts' per-sample caption options
// (spec/dataset.md §4 and §7). The zero value changes nothing; note that
// sd-scripts' default token_warmup_min is 1 (DefaultOptions sets it).
type CaptionOptions struct {
	Shuffle             bool    // shuffle_caption: shuffle the flexible tags
	KeepTokens          int     // keep_tokens: leading tags that stay in place (and are never dropped)
	DropoutRate         float64 // caption_dropout_rate: the whole caption becomes "" with this probability
	DropoutEveryNEpochs int     // caption_dropout_every_n_epochs: every caption of epochs N, 2N, … is ""
	TagDropoutRate      float64 // caption_tag_dropout_rate: each flexible tag dropped with this probability

	Prefix string // caption_prefix: prepended with a space
	Suffix string // caption_suffix: appended with a space
	// Separator is caption_separator, what tags are split on ("" means
	// sd-scripts' default ","). Processed tags are always joined with ", ".
	Separator string
	// SecondarySeparator (secondary_separator) is replaced by Separator
	// after the tag processing: tags joined by it move and drop together.
	SecondarySeparator string
	// KeepTokensSeparator (keep_tokens_separator): in a caption holding it,
	// the tags before it are fixed (instead of the first KeepTokens), and
	// the tags after a second occurrence are a fixed suffix.
	KeepTokensSeparator string
	// EnableWildcard (enable_wildcard): a caption of several lines (as
	// loco-scan --enable-wildcard keeps them, joined by "\n") uses one line
	// chosen at random per use, and "{a|b|c}" becomes one of a, b, c
	// ("{{" and "}}" stand for literal braces). Without it only the first
	// line of a caption is used.
	EnableWildcard bool
	// Token warm-up: before step TokenWarmupStep (a fraction < 1 of the
	// total steps, or a number of steps), only the first
	// ⌊step·(F − TokenWarmupMin)/TokenWarmupStep⌋ + TokenWarmupMin of the
	// F flexible tags are used. 0 = off.
	TokenWarmupMin  int
	TokenWarmupStep float64
}

// CaptionAt is where a caption is used: the epoch (1-based), the optimizer
// step (updates done before this one, 0-based) and the run's total steps.
type CaptionAt struct {
	Epoch, Step, MaxSteps int
}

// Random reports whether the options make the caption vary from one use to
// the next (so encoder outputs of processed captions are not worth
// caching): shuffling, dropouts, wildcards, token warm-up.
func (c CaptionOptions) Random() bool {
	return c.Shuffle || c.DropoutRate > 0 || c.DropoutEveryNEpochs > 0 || c.TagDropoutRate > 0 ||
		c.EnableWildcard || c.TokenWarmupStep > 0
}

// sep is the tag separator.
func (c CaptionOptions) sep() string {
	if c.Separator == "" {
		return ","
	}
	return c.Separator
}

// tagged reports whether the tag processing runs at all (sd-scripts: only
// with shuffle_caption, token warm-up or tag dropout; keep_tokens and
// keep_tokens_separator alone change nothing).
func (c CaptionOptions) tagged() bool {
	return c.Shuffle || c.TokenWarmupStep > 0 || c.TagDropoutRate > 0
}

// WarmupSteps is the token warm-up length in steps for a run of maxSteps:
// TokenWarmupStep, or ⌊TokenWarmupStep × maxSteps⌋ when it is below 1.
func (c CaptionOptions) WarmupSteps(maxSteps int) float64 {
	if w := c.TokenWarmupStep; w < 1 {
		return math.Floor(w * float64(maxSteps))
	}
	return c.TokenWarmupStep
}

// Validate checks the caption options, naming the option and its value.
func (c CaptionOptions) Validate() []string {
	var errs []string
	for _, d := range []struct {
		name string
		p    float64
	}{{"caption_dropout_rate", c.DropoutRate}, {"caption_tag_dropout_rate", c.TagDropoutRate}} {
		if !(d.p >= 0 && d.p < 1) {
			errs = append(errs, fmt.Sprintf("%s %g must be in [0, 1)", d.name, d.p))
		}
	}
	if c.KeepTokens < 0 || c.DropoutEveryNEpochs < 0 {
		errs = append(errs, fmt.Sprintf("keep_tokens %d and caption_dropout_every_n_epochs %d must not be negative", c.KeepTokens, c.DropoutEveryNEpochs))
	}
	if c.TokenWarmupMin < 0 {
		errs = append(errs, fmt.Sprintf("token_warmup_min %d must not be negative", c.TokenWarmupMin))
	}
	if !(c.TokenWarmupStep >= 0) || math.IsInf(c.TokenWarmupStep, 0) {
		errs = append(errs, fmt.Sprintf("token_warmup_step %g must be 0 (off), a fraction < 1 of the steps, or a number of steps", c.TokenWarmupStep))
	}
	if c.SecondarySeparator != "" && c.SecondarySeparator == c.sep() {
		errs = append(errs, fmt.Sprintf("secondary_separator %q is the caption_separator", c.SecondarySeparator))
	}
	return errs
}

// Process applies the options to caption for one use at at, in the order of
// sd-scripts' process_caption (spec/dataset.md §7):
//
//  1. without EnableWildcard, only the first line of the caption is kept
//     (sd-scripts never sees the other lines then);
//  2. Prefix + " " + caption + " " + Suffix — with EnableWildcard this is
//     done to all the lines at once, as in sd-scripts, so the prefix goes
//     with the first line and the suffix with the last;
//  3. whole-caption dropout (rate, then every-N-epochs): "" and nothing
//     else happens;
//  4. EnableWildcard: one line at random, then each {a|b} alternative;
//  5. only with Shuffle, token warm-up or tag dropout: split on Separator
//     and strip into fixed tags (KeepTokensSeparator, else the first
//     KeepTokens), flexible tags and a fixed suffix; warm-up truncates the
//     flexible tags, Shuffle shuffles them, tag dropout drops each one;
//     everything is joined with ", ";
//  6. SecondarySeparator → Separator.
//
// r is drawn from only when an option needs it (it may be nil when Random
// is false).
func (c CaptionOptions) Process(caption string, at CaptionAt, r *rand.Rand) string {
	if !c.EnableWildcard {
		caption, _, _ = strings.Cut(caption, "\n")
	}
	caption = c.affix(caption)
	drop := c.DropoutRate > 0 && r.Float64() < c.DropoutRate
	drop = drop || c.DropoutEveryNEpochs > 0 && at.Epoch%c.DropoutEveryNEpochs == 0
	if drop {
		return ""
	}
	if c.EnableWildcard {
		caption = expandWildcards(caption, r)
	}
	if c.tagged() {
		caption = c.processTags(caption, at, r)
	}
	if c.SecondarySeparator != "" {
		caption = strings.ReplaceAll(caption, c.SecondarySeparator, c.sep())
	}
	return caption
}

// wildcardRE is one {…} group: an opening brace and everything up to the
// next closing brace (so "{a{b|c}" is the alternatives "a{b" and "c").
var wildcardRE = regexp.MustCompile(`\{([^}]+)\}`)

// expandWildcards picks one line of a multi-line caption, then replaces
// every {a|b|…} by one alternative, left to right; "{{" and "}}" are
// literal braces (sd-scripts' replacement order: all "{{" first, then
// "}}", each left to right without overlaps).
func expandWildcards(s string, r *rand.Rand) string {
	if strings.Contains(s, "\n") {
		lines := strings.Split(s, "\n")
		s = lines[r.IntN(len(lines))]
	}
	if !strings.Contains(s, "{") {
		return s
	}
	// Placeholders for the escaped braces that cannot occur in the text:
	// bytes that are never part of UTF-8, lengthened if they do occur.
	open, close := "\xfe", "\xff"
	for strings.Contains(s, open) || strings.Contains(s, close) {
		open += "\xfe"
		close += "\xff"
	}
	s = strings.ReplaceAll(strings.ReplaceAll(s, "{{", open), "}}", close)
	s = wildcardRE.ReplaceAllStringFunc(s, func(m string) string {
		alts := strings.Split(m[1:len(m)-1], "|")
		return alts[r.IntN(len(alts))]
	})
	return strings.ReplaceAll(strings.ReplaceAll(s, open, "{"), close, "}")
}

// processTags is step 5 of Process.
func (c CaptionOptions) processTags(caption string, at CaptionAt, r *rand.Rand) string {
	sep := c.sep()
	var fixed, flex, suffix []string
	if k := c.KeepTokensSeparator; k != "" && strings.Contains(caption, k) {
		fixedPart, flexPart, _ := strings.Cut(caption, k)
		suffixPart := ""
		if strings.Contains(flexPart, k) {
			flexPart, suffixPart, _ = strings.Cut(flexPart, k)
		}
		fixed, flex, suffix = nonEmptyTags(fixedPart, sep), nonEmptyTags(flexPart, sep), nonEmptyTags(suffixPart, sep)
	} else {
		// Empty tags are kept here (sd-scripts does not filter them).
		tags := strings.Split(pyStrip(caption), sep)
		for i := range tags {
			tags[i] = pyStrip(tags[i])
		}
		k := max(0, min(c.KeepTokens, len(tags)))
		fixed, flex = tags[:k], tags[k:]
	}
	if w := c.WarmupSteps(at.MaxSteps); w > 0 && float64(at.Step) < w {
		// The same float order as sd-scripts: step × ((F − min) / w).
		n := int(math.Floor(float64(at.Step)*(float64(len(flex)-c.TokenWarmupMin)/w))) + c.TokenWarmupMin
		flex = flex[:max(0, min(n, len(flex)))]
	}
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
	out := make([]string, 0, len(fixed)+len(flex)+len(suffix))
	out = append(append(append(out, fixed...), flex...), suffix...)
	return strings.Join(out, ", ")
}

// pyStrip is Python's str.strip(): Unicode white space plus the ASCII
// separators 0x1C..0x1F.
func pyStrip(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r >= 0x1C && r <= 0x1F })
}

// nonEmptyTags splits s on sep, strips the pieces and drops empty ones.
func nonEmptyTags(s, sep string) []string {
	var out []string
	for _, t := range strings.Split(s, sep) {
		if t = pyStrip(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Plain returns the captions that Process gives for caption when nothing
// random happens (no dropout, no tag processing, lines without braces):
// the first line, or each line with EnableWildcard, with the prefix and
// suffix as Process adds them and the secondary separator replaced. The
// trainer caches the text encoder's output for these.
func (c CaptionOptions) Plain(caption string) []string {
	var lines []string
	if c.EnableWildcard {
		lines = strings.Split(c.affix(caption), "\n")
	} else {
		first, _, _ := strings.Cut(caption, "\n")
		lines = []string{c.affix(first)}
	}
	if c.SecondarySeparator != "" {
		for i, l := range lines {
			lines[i] = strings.ReplaceAll(l, c.SecondarySeparator, c.sep())
		}
	}
	return lines
}

// affix adds the prefix and the suffix, each with a space.
func (c CaptionOptions) affix(s string) string {
	if c.Prefix != "" {
		s = c.Prefix + " " + s
	}
	if c.Suffix != "" {
		s += " " + c.Suffix
	}
	return s
}

// Describe lists the caption options that are set, with sd-scripts' names
// ("" when none is), and the token warm-up in steps for a run of maxSteps.
func (c CaptionOptions) Describe(maxSteps int) string {
	var parts []string
	add := func(f string, a ...any) { parts = append(parts, fmt.Sprintf(f, a...)) }
	if c.Prefix != "" {
		add("caption_prefix %q", c.Prefix)
	}
	if c.Suffix != "" {
		add("caption_suffix %q", c.Suffix)
	}
	if c.DropoutRate > 0 {
		add("caption_dropout_rate %g", c.DropoutRate)
	}
	if c.DropoutEveryNEpochs > 0 {
		add("caption_dropout_every_n_epochs %d", c.DropoutEveryNEpochs)
	}
	if c.EnableWildcard {
		add("enable_wildcard")
	}
	if c.Separator != "" && c.Separator != "," {
		add("caption_separator %q", c.Separator)
	}
	if c.KeepTokensSeparator != "" {
		add("keep_tokens_separator %q", c.KeepTokensSeparator)
	}
	if c.KeepTokens > 0 {
		add("keep_tokens %d", c.KeepTokens)
	}
	if c.TokenWarmupStep > 0 {
		add("token warm-up from %d tag(s) to all over %g steps", c.TokenWarmupMin, c.WarmupSteps(maxSteps))
	}
	if c.Shuffle {
		add("shuffle_caption")
	}
	if c.TagDropoutRate > 0 {
		add("caption_tag_dropout_rate %g", c.TagDropoutRate)
	}
	if c.SecondarySeparator != "" {
		add("secondary_separator %q", c.SecondarySeparator)
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, ", ")
	if c.KeepTokensSeparator != "" && !c.tagged() {
		s += " (keep_tokens_separator acts only with shuffle_caption, caption_tag_dropout_rate or token_warmup_step, as in sd-scripts)"
	}
	return s
}

// DescribeCaptions writes the caption options and what they make of the
// first train image's caption at a few steps (one draw each, from the
// run's seed), for --dry-run; "" without caption options.
func (p *Plan) DescribeCaptions(c CaptionOptions, seed uint64) string {
	d := c.Describe(p.TotalSteps)
	if d == "" {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "captions: %s\n", d)
	var rec *Item
	for i := range p.Items {
		if !p.Items[i].Rec.IsReg {
			rec = &p.Items[i]
			break
		}
	}
	if rec == nil || p.TotalSteps < 1 {
		return b.String()
	}
	fmt.Fprintf(&b, "  %s: %q\n", rec.Rec.Path, rec.Rec.Caption)
	steps := []int{0}
	if w := int(c.WarmupSteps(p.TotalSteps)); c.TokenWarmupStep > 0 && w > 0 {
		steps = append(steps, w/2, w)
	}
	steps = append(steps, p.TotalSteps-1)
	for _, s := range uniqueSorted(steps) {
		if s >= p.TotalSteps {
			continue
		}
		at := CaptionAt{Epoch: s/p.U + 1, Step: s, MaxSteps: p.TotalSteps}
		fmt.Fprintf(&b, "  step %d (epoch %d): %q\n", s, at.Epoch, c.Process(rec.Rec.Caption, at, Stream(seed, "caption preview", s, 0)))
	}
	return b.String()
}

// CaptionNotes are hints about the records' captions and the options:
// captions of several lines (loco-scan --enable-wildcard) used without
// EnableWildcard, or EnableWildcard without any such caption.
func (p *Plan) CaptionNotes(c CaptionOptions) []string {
	multi, files := 0, 0
	for _, it := range p.Items {
		if strings.Contains(it.Rec.Caption, "\n") {
			multi++
		}
		if it.Rec.CaptionFile != "" {
			files++
		}
	}
	switch {
	case multi > 0 && !c.EnableWildcard:
		return []string{fmt.Sprintf("%d record(s) have captions of several lines: without --enable-wildcard only the first line is used", multi)}
	case multi == 0 && c.EnableWildcard && files > 0:
		return []string{"--enable-wildcard: no caption has several lines (scan with loco-scan --enable-wildcard to keep every line of the caption files); {a|b} alternatives still apply"}
	}
	return nil
}
