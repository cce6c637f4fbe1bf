package train

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestCaptionProcessTable checks Process against hand-worked examples of
// spec/dataset.md §4 and §7. want lists every possible result: the caption
// is processed many times and must give each of them and nothing else.
func TestCaptionProcessTable(t *testing.T) {
	const kts = "|||"
	at := func(step int) CaptionAt { return CaptionAt{Epoch: 1, Step: step, MaxSteps: 100} }
	cases := []struct {
		name string
		o    CaptionOptions
		cap  string
		at   CaptionAt
		want []string
	}{
		{"no options", CaptionOptions{}, " a,b ", at(0), []string{" a,b "}},
		{"no options, first line only", CaptionOptions{}, "a, b\nc, d", at(0), []string{"a, b"}},
		{"keep_tokens alone does nothing", CaptionOptions{KeepTokens: 1}, "a,b", at(0), []string{"a,b"}},
		{"prefix", CaptionOptions{Prefix: "photo of"}, "sks woman, smile", at(0), []string{"photo of sks woman, smile"}},
		{"suffix", CaptionOptions{Suffix: "best quality"}, "sks woman, smile", at(0), []string{"sks woman, smile best quality"}},
		{"prefix and suffix on the first line", CaptionOptions{Prefix: "P", Suffix: "S"}, "a, b\nc, d", at(0), []string{"P a, b S"}},
		// Separators.
		{"secondary separator", CaptionOptions{SecondarySeparator: ";;"}, "a;;b, c", at(0), []string{"a,b, c"}},
		{"secondary separator to another separator", CaptionOptions{Separator: ";", SecondarySeparator: "+", Shuffle: true},
			"a+b; c", at(0), []string{"a;b, c", "c, a;b"}},
		{"separator ;", CaptionOptions{Separator: ";", Shuffle: true}, "a, b; c", at(0), []string{"a, b, c", "c, a, b"}},
		{"separator ; without tag processing", CaptionOptions{Separator: ";"}, "a;b", at(0), []string{"a;b"}},
		{"multi-character separator", CaptionOptions{Separator: " / ", TokenWarmupMin: 1, TokenWarmupStep: 2}, "a / b / c", at(1), []string{"a, b"}},
		// Shuffle and keep_tokens.
		{"shuffle", CaptionOptions{Shuffle: true}, "a,b", at(0), []string{"a, b", "b, a"}},
		{"shuffle keeps empty tags", CaptionOptions{Shuffle: true}, " a,,b ", at(0),
			[]string{"a, , b", "a, b, ", ", a, b", ", b, a", "b, a, ", "b, , a"}},
		{"tags stripped as Python does (0x1C..0x1F too)", CaptionOptions{TokenWarmupMin: 5, TokenWarmupStep: 1}, "\x1fa\u3000,\tb ", at(0),
			[]string{"a, b"}},
		{"shuffle after keep_tokens", CaptionOptions{Shuffle: true, KeepTokens: 1}, "a, b, c", at(0), []string{"a, b, c", "a, c, b"}},
		{"keep_tokens beyond the tags", CaptionOptions{Shuffle: true, KeepTokens: 5}, "a, b", at(0), []string{"a, b"}},
		// keep_tokens_separator.
		{"keep_tokens_separator", CaptionOptions{Shuffle: true, KeepTokensSeparator: kts, KeepTokens: 3}, "x, y ||| a, b", at(0),
			[]string{"x, y, a, b", "x, y, b, a"}},
		{"keep_tokens_separator with a fixed suffix", CaptionOptions{Shuffle: true, KeepTokensSeparator: kts},
			"x, y ||| a, b ||| s1, s2", at(0), []string{"x, y, a, b, s1, s2", "x, y, b, a, s1, s2"}},
		{"keep_tokens_separator: empty tags dropped", CaptionOptions{Shuffle: true, KeepTokensSeparator: kts},
			"x,, ||| a,,b ||| ", at(0), []string{"x, a, b", "x, b, a"}},
		{"keep_tokens_separator: a third one stays in the suffix", CaptionOptions{Shuffle: true, KeepTokensSeparator: kts},
			"f ||| a ||| s ||| t", at(0), []string{"f, a, s ||| t"}},
		{"keep_tokens_separator absent: keep_tokens", CaptionOptions{Shuffle: true, KeepTokensSeparator: kts, KeepTokens: 1},
			"x, a, b", at(0), []string{"x, a, b", "x, b, a"}},
		{"keep_tokens_separator alone does nothing", CaptionOptions{KeepTokensSeparator: kts}, "x ||| a, b", at(0),
			[]string{"x ||| a, b"}},
		{"prefix joins the fixed part", CaptionOptions{Prefix: "photo of", Shuffle: true, KeepTokensSeparator: kts},
			"sks ||| a, b", at(0), []string{"photo of sks, a, b", "photo of sks, b, a"}},
		// Wildcards.
		{"wildcard off: braces and lines untouched", CaptionOptions{}, "{a|b}", at(0), []string{"{a|b}"}},
		{"wildcard lines", CaptionOptions{EnableWildcard: true}, "a, b\nc\nd", at(0), []string{"a, b", "c", "d"}},
		{"wildcard lines: prefix on the first, suffix on the last", CaptionOptions{EnableWildcard: true, Prefix: "P", Suffix: "S"},
			"a\nb\nc", at(0), []string{"P a", "b", "c S"}},
		{"wildcard alternatives", CaptionOptions{EnableWildcard: true}, "{red|blue} hair, {smile|frown}", at(0),
			[]string{"red hair, smile", "red hair, frown", "blue hair, smile", "blue hair, frown"}},
		{"wildcard escapes", CaptionOptions{EnableWildcard: true}, "{{literal}}, {a|b}", at(0), []string{"{literal}, a", "{literal}, b"}},
		{"wildcard: escaped braces around alternatives", CaptionOptions{EnableWildcard: true}, "{{{a|b}}}", at(0), []string{"{a", "{b}"}},
		{"wildcard: nested opening brace", CaptionOptions{EnableWildcard: true}, "{a{b|c}", at(0), []string{"a{b", "c"}},
		{"wildcard: empty braces and one alternative", CaptionOptions{EnableWildcard: true}, "{}{a}", at(0), []string{"{}a"}},
		{"wildcard: empty alternative", CaptionOptions{EnableWildcard: true}, "x{a||b}", at(0), []string{"xa", "x", "xb"}},
		{"wildcard lines with alternatives", CaptionOptions{EnableWildcard: true}, "a {1|2}\nb", at(0), []string{"a 1", "a 2", "b"}},
		{"wildcard then shuffle", CaptionOptions{EnableWildcard: true, Shuffle: true, KeepTokens: 1}, "k, {a|b}, c", at(0),
			[]string{"k, a, c", "k, c, a", "k, b, c", "k, c, b"}},
		// Token warm-up: F = 4 flexible tags after keep_tokens 1, min 1, 4 steps.
		{"warm-up step 0", CaptionOptions{KeepTokens: 1, TokenWarmupMin: 1, TokenWarmupStep: 4}, "k, a, b, c, d", at(0), []string{"k, a"}},
		{"warm-up step 2", CaptionOptions{KeepTokens: 1, TokenWarmupMin: 1, TokenWarmupStep: 4}, "k, a, b, c, d", at(2), []string{"k, a, b"}},
		{"warm-up step 3", CaptionOptions{KeepTokens: 1, TokenWarmupMin: 1, TokenWarmupStep: 4}, "k, a, b, c, d", at(3), []string{"k, a, b, c"}},
		{"warm-up over", CaptionOptions{KeepTokens: 1, TokenWarmupMin: 1, TokenWarmupStep: 4}, "k, a, b, c, d", at(4), []string{"k, a, b, c, d"}},
		{"warm-up as a fraction: 0.04 × 100 = 4 steps", CaptionOptions{KeepTokens: 1, TokenWarmupMin: 1, TokenWarmupStep: 0.04},
			"k, a, b, c, d", at(2), []string{"k, a, b"}},
		{"warm-up fraction of 0 steps: off, but tags are rejoined", CaptionOptions{TokenWarmupMin: 1, TokenWarmupStep: 0.001},
			"k,a,b", at(0), []string{"k, a, b"}},
		{"warm-up min 0", CaptionOptions{KeepTokens: 1, TokenWarmupStep: 4}, "k, a, b, c, d", at(1), []string{"k, a"}},
		{"warm-up min above the tag count", CaptionOptions{TokenWarmupMin: 3, TokenWarmupStep: 4}, "a, b", at(0), []string{"a, b"}},
		{"warm-up keeps the fixed suffix", CaptionOptions{KeepTokensSeparator: kts, TokenWarmupMin: 1, TokenWarmupStep: 2},
			"f ||| a, b, c ||| s", at(0), []string{"f, a, s"}},
		{"warm-up then secondary separator", CaptionOptions{TokenWarmupMin: 2, TokenWarmupStep: 10, SecondarySeparator: "+"},
			"a+b, c, d", at(0), []string{"a,b, c"}},
		// Dropped captions skip everything after the dropout.
		{"every-N-epoch dropout skips prefix and wildcards", CaptionOptions{DropoutEveryNEpochs: 2, Prefix: "P", EnableWildcard: true,
			SecondarySeparator: "+"}, "{a|b}+c", CaptionAt{Epoch: 4}, []string{""}},
		{"every-N-epoch dropout, other epoch", CaptionOptions{DropoutEveryNEpochs: 2, Prefix: "P", EnableWildcard: true,
			SecondarySeparator: "+"}, "{a|b}+c", CaptionAt{Epoch: 3}, []string{"P a,c", "P b,c"}},
		{"dropout rate", CaptionOptions{DropoutRate: 0.5, Suffix: "S"}, "a", at(0), []string{"", "a S"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if errs := c.o.Validate(); len(errs) > 0 {
				t.Fatalf("options invalid: %v", errs)
			}
			r := rand.New(rand.NewPCG(3, 4))
			seen := map[string]int{}
			n := 1
			if c.o.Random() {
				n = 400
			}
			for i := 0; i < n; i++ {
				rr := r
				if !c.o.Random() {
					rr = nil // must not draw
				}
				seen[c.o.Process(c.cap, c.at, rr)]++
			}
			var got []string
			for s := range seen {
				got = append(got, s)
			}
			want := append([]string(nil), c.want...)
			sort.Strings(got)
			sort.Strings(want)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("Process(%q) gave %q, want %q", c.cap, got, want)
			}
		})
	}
}

// TestCaptionWarmupFloatOrder: sd-scripts computes step × ((F − min)/w),
// which for F − min = 26, w = 46, step 23 is 12.999… (not 13), so 12 + min
// tags are kept.
func TestCaptionWarmupFloatOrder(t *testing.T) {
	tags := make([]string, 27)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	o := CaptionOptions{TokenWarmupMin: 1, TokenWarmupStep: 46}
	got := o.Process(strings.Join(tags, ","), CaptionAt{Epoch: 1, Step: 23, MaxSteps: 1000}, nil)
	if want := strings.Join(tags[:13], ", "); got != want {
		t.Errorf("step 23 of 46, 27 tags: %q, want the first 13", got)
	}
}

func TestCaptionRandomAndValidate(t *testing.T) {
	for _, c := range []struct {
		o    CaptionOptions
		want bool
	}{
		{CaptionOptions{}, false},
		{CaptionOptions{Prefix: "a", Suffix: "b", Separator: ";", SecondarySeparator: "+", KeepTokensSeparator: "|", KeepTokens: 2, TokenWarmupMin: 1}, false},
		{CaptionOptions{EnableWildcard: true}, true},
		{CaptionOptions{TokenWarmupStep: 0.1}, true},
		{CaptionOptions{Shuffle: true}, true},
		{CaptionOptions{DropoutEveryNEpochs: 2}, true},
	} {
		if got := c.o.Random(); got != c.want {
			t.Errorf("%+v: Random() = %t", c.o, got)
		}
	}
	for _, c := range []struct {
		o    CaptionOptions
		want string
	}{
		{CaptionOptions{TokenWarmupStep: -1}, "token_warmup_step -1 must be"},
		{CaptionOptions{TokenWarmupMin: -2}, "token_warmup_min -2 must not be negative"},
		{CaptionOptions{TagDropoutRate: 1}, "caption_tag_dropout_rate 1 must be in [0, 1)"},
		{CaptionOptions{SecondarySeparator: ","}, `secondary_separator "," is the caption_separator`},
		{CaptionOptions{KeepTokens: -1}, "keep_tokens -1"},
	} {
		errs := strings.Join(c.o.Validate(), "; ")
		if !strings.Contains(errs, c.want) {
			t.Errorf("%+v: %q, want %q", c.o, errs, c.want)
		}
	}
}

func TestCaptionPlain(t *testing.T) {
	o := CaptionOptions{Prefix: "P", Suffix: "S", SecondarySeparator: "+"}
	if got := o.Plain("a+b\nc"); fmt.Sprint(got) != "[P a,b S]" {
		t.Errorf("Plain without wildcards: %q", got)
	}
	o.EnableWildcard = true
	if got := o.Plain("a+b\nc"); fmt.Sprint(got) != "[P a,b c S]" {
		t.Errorf("Plain with wildcards: %q", got)
	}
	// Every plain caption is one Process can give.
	for _, p := range o.Plain("a+b\nc") {
		ok := false
		r := rand.New(rand.NewPCG(1, 1))
		for i := 0; i < 100 && !ok; i++ {
			ok = o.Process("a+b\nc", CaptionAt{Epoch: 1}, r) == p
		}
		if !ok {
			t.Errorf("Plain gave %q, which Process never gives", p)
		}
	}
}

// TestCaptionWarmupInTraining: a micro-batch's captions see the optimizer
// step it belongs to (U = 3 updates per epoch of 6 micro-batches with
// GA 2), so token warm-up over 3 steps grows the caption update by update
// and across epochs; wildcard lines are drawn per sample.
func TestCaptionWarmupInTraining(t *testing.T) {
	tr, _ := tinyRun(t, t.TempDir(), func(o *Options) {
		o.Captions = CaptionOptions{TokenWarmupMin: 1, TokenWarmupStep: 3}
	})
	if tr.Plan.U != 3 || tr.Plan.GradAccum != 2 || tr.Plan.TotalSteps != 6 {
		t.Fatalf("plan: U %d, GA %d, %d steps", tr.Plan.U, tr.Plan.GradAccum, tr.Plan.TotalSteps)
	}
	for _, it := range tr.Plan.Items {
		it.Rec.Caption = "a, b, c, d"
	}
	want := []string{"a", "a, b", "a, b, c", "a, b, c, d", "a, b, c, d", "a, b, c, d"}
	for e := 0; e < 2; e++ {
		for i, b := range tr.Plan.EpochBatches(tr.Opt.Seed, e) {
			in, err := tr.BatchInputs(e, i, b)
			if err != nil {
				t.Fatal(err)
			}
			step := e*3 + i/2
			for _, c := range in.Captions {
				if c != want[step] {
					t.Errorf("epoch %d micro-batch %d (step %d): caption %q, want %q", e+1, i, step, c, want[step])
				}
			}
		}
	}
	tr.Opt.Captions = CaptionOptions{EnableWildcard: true}
	for _, it := range tr.Plan.Items {
		it.Rec.Caption = "x, {1|2}\ny"
	}
	seen := map[string]bool{}
	for i, b := range tr.Plan.EpochBatches(tr.Opt.Seed, 0) {
		in, _ := tr.BatchInputs(0, i, b)
		for _, c := range in.Captions {
			seen[c] = true
		}
	}
	if len(seen) != 3 || !seen["x, 1"] || !seen["x, 2"] || !seen["y"] {
		t.Errorf("wildcard captions in training: %v", seen)
	}
}
