package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestChunks checks kohya's max_token_length chunking (spec/train.md §7):
// with EOS padding, chunk j equals BOS, tokens 75j..75(j+1) of the text,
// EOS, EOS padding.
func TestChunks(t *testing.T) {
	tok := loadOpenAI(t)
	long := strings.TrimSuffix(strings.Repeat("pralyco woman, ", 40), ", ")
	texts := []string{"", "a photo of a cat", strings.Repeat("a ", 75), strings.Repeat("a ", 150), strings.Repeat("a ", 151), long}
	for _, text := range texts {
		toks := tok.Encode(text)
		for _, mtl := range []int{0, 75, 150, 225} {
			chunks, err := tok.Chunks(text, mtl)
			if err != nil {
				t.Fatal(err)
			}
			n := max(mtl/ChunkTokens, 1)
			if len(chunks) != n {
				t.Fatalf("max_token_length %d: %d chunks, want %d", mtl, len(chunks), n)
			}
			for j, c := range chunks {
				lo, hi := min(ChunkTokens*j, len(toks)), min(ChunkTokens*(j+1), len(toks))
				want := []int32{tok.BOS()}
				want = append(want, toks[lo:hi]...)
				for len(want) < ContextLength {
					want = append(want, tok.EOS())
				}
				if !slices.Equal(c, want) {
					t.Errorf("%d tokens, max_token_length %d, chunk %d:\n got %v\nwant %v", len(toks), mtl, j, c, want)
				}
			}
		}
	}
	if _, err := tok.Chunks("x", 100); err == nil || !strings.Contains(err.Error(), "max_token_length 100") {
		t.Errorf("max_token_length 100: error %v", err)
	}
}

// TestFrame checks truncation and padding at other lengths.
func TestFrame(t *testing.T) {
	tok := loadOpenAI(t)
	toks := []int32{1, 2, 3, 4}
	for _, c := range []struct {
		length int
		pad    int32
		want   []int32
	}{
		{2, 0, []int32{49406, 49407}},
		{4, 0, []int32{49406, 1, 2, 49407}},
		{6, 0, []int32{49406, 1, 2, 3, 4, 49407}},
		{8, 0, []int32{49406, 1, 2, 3, 4, 49407, 0, 0}},
		{8, 49407, []int32{49406, 1, 2, 3, 4, 49407, 49407, 49407}},
	} {
		if got := tok.Frame(toks, c.length, c.pad); !slices.Equal(got, c.want) {
			t.Errorf("Frame(%v, %d, %d) = %v, want %v", toks, c.length, c.pad, got, c.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tok := loadOpenAI(t)
	for _, c := range []struct{ in, want string }{
		{"A photo of a CAT!", "a photo of a cat !"},
		{"日本語 😀", "日本語 😀"},
		{"supercalifragilisticexpialidocious", "supercalifragilisticexpialidocious"},
	} {
		if got := tok.Decode(tok.SD1(c.in)); got != c.want {
			t.Errorf("Decode(SD1(%q)) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestConcurrent encodes from several goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	tok := loadOpenAI(t)
	texts := testTexts(t)
	want := make([][]int32, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
	}
	tok.mu.Lock()
	clear(tok.cache)
	tok.mu.Unlock()
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			ok := true
			for i := len(texts) - 1; i >= 0; i-- {
				ok = ok && slices.Equal(tok.Encode(texts[i]), want[i])
			}
			done <- ok
		}()
	}
	for g := 0; g < 4; g++ {
		if !<-done {
			t.Error("a concurrent Encode gave other ids")
		}
	}
}

func FuzzEncode(f *testing.F) {
	p := filepath.Join(sharedDir(f, "clip"), OpenAIVocabFile)
	tok, err := Load(p)
	if err != nil {
		f.Skipf("CLIP vocabulary not available: %v", err)
	}
	for _, s := range []string{"", "a photo of a cat", "&amp;&#x41;\u00c3\u00a9 ＦＵＬＬ", "İΣ ΣΑΣ", "<|endoftext|>x<|start", "e\u0301\u0323", "\xff\xfe", "'s'S'ſ"} {
		f.Add(s)
	}
	if data, err := os.ReadFile(filepath.Join(goldenRoot(f), "tokenizer", "cases.json")); err == nil {
		var cases []tokenizerGolden
		if json.Unmarshal(data, &cases) == nil {
			for _, c := range cases {
				f.Add(c.Text)
			}
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		toks := tok.Encode(text)
		for _, id := range toks {
			if id < 0 || int(id) >= tok.VocabSize() || tok.tokens[id] == "" {
				t.Fatalf("Encode(%q) gave id %d, outside the vocabulary", text, id)
			}
		}
		if again := tok.Encode(text); !slices.Equal(again, toks) {
			t.Fatalf("Encode(%q) changed on the second call (cache): %v then %v", text, toks, again)
		}
		ids := tok.SD1(text)
		n := min(len(toks), ChunkTokens)
		if len(ids) != ContextLength || ids[0] != tok.BOS() || !slices.Equal(ids[1:1+n], toks[:n]) {
			t.Fatalf("SD1(%q) = %v: not BOS + the first %d tokens", text, ids, n)
		}
		for _, id := range ids[1+n:] {
			if id != tok.EOS() {
				t.Fatalf("SD1(%q) = %v: not EOS after the tokens", text, ids)
			}
		}
		chunks, err := tok.Chunks(text, 225)
		if err != nil || len(chunks) != 3 {
			t.Fatalf("Chunks(%q, 225): %d chunks, %v", text, len(chunks), err)
		}
		for _, c := range chunks {
			if len(c) != ContextLength || c[0] != tok.BOS() || c[ContextLength-1] != tok.EOS() {
				t.Fatalf("Chunks(%q, 225): chunk %v is not framed", text, c)
			}
		}
		// Without special tokens, the tokens hold exactly the cleaned text's
		// bytes, less the spaces.
		clean := Clean(text)
		if !strings.Contains(text, "<|") && !strings.Contains(clean, "</w>") {
			got := strings.ReplaceAll(tok.Decode(toks), " ", "")
			if want := strings.ReplaceAll(clean, " ", ""); got != want {
				t.Fatalf("Decode(Encode(%q)) = %q, cleaned text %q", text, got, want)
			}
		}
	})
}

// FuzzParseVocabulary feeds arbitrary bytes to the OpenAI-format parser.
func FuzzParseVocabulary(f *testing.F) {
	f.Add([]byte("#version: 0.2\na b\nab c\n"))
	f.Add([]byte("#version: 0.2\n\xc4\xa0 t\n"))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseOpenAI("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tokenizer: fuzz: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, id := range tok.SD1("a photo of a cat, abc") {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("id %d outside the vocabulary of %d", id, tok.VocabSize())
			}
		}
	})
}

// TestBPEHeap checks that the O(n log n) merge order gives the plain
// loop's result on the CLIP vocabulary, whose merges are ordered.
func TestBPEHeap(t *testing.T) {
	tok := loadOpenAI(t)
	if !tok.ordered {
		t.Fatal("the CLIP merges are not ordered: long words take the quadratic loop")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{"ab", "abcdefghijklmnopqrstuvwxyz", "aeinorst", "日本語のテキスト", "😀🎉é"}
	for i := 0; i < 300; i++ {
		runes := []rune(alphabets[i%len(alphabets)])
		var b strings.Builder
		for n := 1 + rng.IntN(400); n > 0; n-- {
			b.WriteRune(runes[rng.IntN(len(runes))])
		}
		pre := b.String()
		word := make([]int32, 0, len(pre))
		for j := 0; j < len(pre); j++ {
			if j == len(pre)-1 {
				word = append(word, tok.byteSymEnd[pre[j]])
			} else {
				word = append(word, tok.byteSym[pre[j]])
			}
		}
		want := tok.bpeLoop(slices.Clone(word))
		if got := tok.bpeHeap(slices.Clone(word)); !slices.Equal(got, want) {
			t.Fatalf("bpeHeap(%q) = %v, the loop gives %v", pre, got, want)
		}
	}
	if mergesOrdered([][2]string{{"a", "b"}, {"ab", "c"}}) != true ||
		mergesOrdered([][2]string{{"ab", "c"}, {"a", "b"}}) != false {
		t.Error("mergesOrdered misjudges a two-merge list")
	}
}
