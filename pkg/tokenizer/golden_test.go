package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// sharedDir returns ../shared/<name> relative to the repository root (the
// folder holding go.mod).
func sharedDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", name)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// goldenRoot is $LOCO_GOLDEN, or ../shared/golden from the repository root.
func goldenRoot(t testing.TB) string {
	if p := os.Getenv("LOCO_GOLDEN"); p != "" {
		return p
	}
	return sharedDir(t, "golden")
}

// clipVocabPath returns the OpenAI vocabulary of ../shared/clip, or skips.
func clipVocabPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(sharedDir(t, "clip"), OpenAIVocabFile)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("CLIP vocabulary not available (%v); it is expected at ../shared/clip/%s from the repository root", err, OpenAIVocabFile)
	}
	return p
}

type tokenizerCase struct {
	Kind      string `json:"kind"`
	CasesFile string `json:"cases_file"`
	Config    struct {
		VocabFile     string `json:"vocab_file"`
		VocabSHA256   string `json:"vocab_sha256"`
		VocabSize     int    `json:"vocab_size"`
		ContextLength int    `json:"context_length"`
		BOS           int32  `json:"bos"`
		EOS           int32  `json:"eos"`
		PadSD1        int32  `json:"pad_sd1"`
		PadOpenAI     int32  `json:"pad_openai"`
		MaxBodyTokens int    `json:"max_body_tokens"`
	} `json:"config"`
}

type tokenizerGolden struct {
	Text             string   `json:"text"`
	Note             string   `json:"note"`
	IDsPadEOS        []int32  `json:"ids_pad_eos"`
	IDsPadZero       []int32  `json:"ids_pad_zero"`
	Tokens           []int32  `json:"tokens"`
	NTokens          int      `json:"n_tokens"`
	Truncated        bool     `json:"truncated"`
	Clean            *string  `json:"clean"`
	TokensWithoutFix *[]int32 `json:"tokens_without_ftfy"`
}

// TestGolden runs every case of kind "tokenizer" under the golden root.
func TestGolden(t *testing.T) {
	root := goldenRoot(t)
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		t.Skipf("golden folder %s not found (set LOCO_GOLDEN or provide ../shared/golden)", root)
	}
	if err != nil {
		t.Fatal(err)
	}
	ran, texts := 0, 0
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "case.json"))
		if err != nil {
			continue // not a case folder
		}
		var c tokenizerCase
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s/case.json: %v", dir, err)
		}
		if c.Kind != "tokenizer" {
			t.Logf("%s: kind %q is not this package's; skipped", e.Name(), c.Kind)
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			texts += runTokenizerCase(t, dir, &c)
		})
		ran++
	}
	t.Logf("ran %d tokenizer cases (%d texts) from %s", ran, texts, root)
	if ran == 0 {
		t.Fatalf("golden folder %s exists but holds no case of kind tokenizer", root)
	}
}

func runTokenizerCase(t *testing.T, dir string, c *tokenizerCase) int {
	vocab := filepath.Join(dir, c.Config.VocabFile)
	raw, err := os.ReadFile(vocab)
	if err != nil {
		t.Skipf("vocabulary of the case not available: %v", err)
	}
	if sum := sha256.Sum256(raw); c.Config.VocabSHA256 != "" && hex.EncodeToString(sum[:]) != c.Config.VocabSHA256 {
		t.Fatalf("%s: sha256 %x, case.json wants %s", vocab, sum, c.Config.VocabSHA256)
	}
	tok, err := Load(vocab)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != c.Config.VocabSize || tok.BOS() != c.Config.BOS || tok.EOS() != c.Config.EOS {
		t.Fatalf("vocab size %d, BOS %d, EOS %d; case wants %d, %d, %d",
			tok.VocabSize(), tok.BOS(), tok.EOS(), c.Config.VocabSize, c.Config.BOS, c.Config.EOS)
	}
	if c.Config.ContextLength != ContextLength || c.Config.MaxBodyTokens != ChunkTokens || c.Config.PadSD1 != tok.EOS() {
		t.Fatalf("case conventions (context %d, body %d, pad %d) differ from the package's (%d, %d, %d)",
			c.Config.ContextLength, c.Config.MaxBodyTokens, c.Config.PadSD1, ContextLength, ChunkTokens, tok.EOS())
	}
	data, err := os.ReadFile(filepath.Join(dir, c.CasesFile))
	if err != nil {
		t.Fatal(err)
	}
	var cases []tokenizerGolden
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("%s: %v", c.CasesFile, err)
	}
	for i, g := range cases {
		name := g.Note
		if name == "" {
			name = g.Text
		}
		t.Run(name, func(t *testing.T) {
			if g.Clean != nil {
				if got := Clean(g.Text); got != *g.Clean {
					t.Errorf("case %d: Clean(%q)\n got %q\nwant %q", i, g.Text, got, *g.Clean)
				}
			}
			got := tok.Encode(g.Text)
			if !slices.Equal(got, g.Tokens) {
				t.Errorf("case %d: Encode(%q)\n got %v\nwant %v", i, g.Text, got, g.Tokens)
			}
			if len(got) != g.NTokens || (len(got) > ChunkTokens) != g.Truncated {
				t.Errorf("case %d: %d tokens (truncated %v), want %d (%v)", i, len(got), len(got) > ChunkTokens, g.NTokens, g.Truncated)
			}
			if ids := tok.SD1(g.Text); !slices.Equal(ids, g.IDsPadEOS) {
				t.Errorf("case %d: SD1(%q)\n got %v\nwant %v", i, g.Text, ids, g.IDsPadEOS)
			}
			if ids := tok.Frame(got, ContextLength, c.Config.PadOpenAI); !slices.Equal(ids, g.IDsPadZero) {
				t.Errorf("case %d: Frame(pad %d)\n got %v\nwant %v", i, c.Config.PadOpenAI, ids, g.IDsPadZero)
			}
			if g.TokensWithoutFix != nil {
				if ids := tok.encode(g.Text, cleanNoFix); !slices.Equal(ids, *g.TokensWithoutFix) {
					t.Errorf("case %d: without ftfy\n got %v\nwant %v", i, ids, *g.TokensWithoutFix)
				}
			}
		})
	}
	return len(cases)
}
