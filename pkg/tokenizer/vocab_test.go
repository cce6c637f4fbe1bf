package tokenizer

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loadOpenAI loads the shared OpenAI vocabulary, or skips.
func loadOpenAI(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := Load(clipVocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeHF writes the Hugging Face files equivalent to tok's OpenAI
// vocabulary into dir: merges.txt ("#version: 0.2" and the merges) and
// vocab.json (compact, in id order, or sorted with indent 2 as
// save_pretrained writes it).
func writeHF(t *testing.T, tok *Tokenizer, gzPath, dir string, sorted bool) (vocabPath, mergesPath string) {
	t.Helper()
	raw, err := os.ReadFile(gzPath)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if _, err := text.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(text.String(), "\n")[1 : maxMerges+1]
	var merges bytes.Buffer
	merges.WriteString("#version: 0.2\n")
	for _, l := range lines {
		merges.WriteString(l + "\n")
	}

	var vocab bytes.Buffer
	if sorted {
		m := make(map[string]int32, len(tok.tokens))
		for id, s := range tok.tokens {
			m[s] = int32(id)
		}
		enc := json.NewEncoder(&vocab)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(m); err != nil { // keys sorted, final newline
			t.Fatal(err)
		}
	} else {
		vocab.WriteByte('{')
		for id, s := range tok.tokens {
			if id > 0 {
				vocab.WriteByte(',')
			}
			k, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			// encoding/json escapes <, > and & for HTML; Python's json.dumps does not.
			k = bytes.ReplaceAll(k, []byte(`\u003c`), []byte("<"))
			k = bytes.ReplaceAll(k, []byte(`\u003e`), []byte(">"))
			k = bytes.ReplaceAll(k, []byte(`\u0026`), []byte("&"))
			vocab.Write(k)
			vocab.WriteString(":" + strings.TrimSpace(string(mustJSON(t, id))))
		}
		vocab.WriteString("}\n")
	}
	vocabPath, mergesPath = filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
	if err := os.WriteFile(vocabPath, vocab.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mergesPath, merges.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return vocabPath, mergesPath
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSHA(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testTexts are the golden texts (when present) and a few more.
func testTexts(t *testing.T) []string {
	texts := []string{
		"a photo of a cat", "pralyco woman, masterpiece", "İstanbul ΣΊΣΥΦΟΣ",
		"&EACUTE;t&eacute; ＦＵＬＬ ﬁne “q”", "日本語のテキスト", "emoji 😀🎉", "x<|endoftext|>y",
	}
	data, err := os.ReadFile(filepath.Join(goldenRoot(t), "tokenizer", "cases.json"))
	if err == nil {
		var cases []tokenizerGolden
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			texts = append(texts, c.Text)
		}
	}
	return texts
}

// TestHFFormat converts the OpenAI vocabulary into vocab.json + merges.txt
// and checks that every way of loading them gives the same vocabulary and
// the same encodings.
func TestHFFormat(t *testing.T) {
	gz := clipVocabPath(t)
	ref := loadOpenAI(t)
	if ref.VocabSize() != 49408 || ref.BOS() != 49406 || ref.EOS() != 49407 {
		t.Fatalf("%s: vocab size %d, BOS %d, EOS %d; want 49408, 49406, 49407", gz, ref.VocabSize(), ref.BOS(), ref.EOS())
	}
	if ref.tokens[0] != "!" || ref.tokens[256] != "!</w>" || ref.tokens[511] != "Ń</w>" || ref.tokens[512] != "in" {
		t.Fatalf("vocabulary order: ids 0, 256, 511, 512 are %q %q %q %q", ref.tokens[0], ref.tokens[256], ref.tokens[511], ref.tokens[512])
	}
	texts := testTexts(t)

	compact := t.TempDir()
	v, m := writeHF(t, ref, gz, compact, false)
	// The conversion must give the files that shared/clip/README.md describes.
	if got := fileSHA(t, m); got != "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a" {
		t.Errorf("merges.txt sha256 %s differs from README's", got)
	}
	if got := fileSHA(t, v); got != "4845b0e575739dbabfda3b54f086884b37d73e94b067988d925a7e52bfdfb8e8" {
		t.Errorf("compact vocab.json sha256 %s differs from README's", got)
	}

	diffusers := t.TempDir()
	if err := os.Mkdir(filepath.Join(diffusers, "tokenizer"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeHF(t, ref, gz, filepath.Join(diffusers, "tokenizer"), true)

	gzDir := t.TempDir()
	if err := os.Symlink(gz, filepath.Join(gzDir, OpenAIVocabFile)); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{compact, v, m, diffusers, gzDir} {
		tok, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tok.tokens, ref.tokens) || tok.BOS() != ref.BOS() || tok.EOS() != ref.EOS() {
			t.Fatalf("%s: vocabulary differs from %s", path, gz)
		}
		for _, text := range texts {
			if got, want := tok.Encode(text), ref.Encode(text); !slices.Equal(got, want) {
				t.Errorf("%s: Encode(%q) = %v, OpenAI file gives %v", path, text, got, want)
			}
		}
	}
}

func TestLoadDefault(t *testing.T) {
	gz := clipVocabPath(t)
	t.Setenv(EnvVocab, "")
	if _, err := LoadDefault(""); err == nil || !strings.Contains(err.Error(), EnvVocab) {
		t.Fatalf("no flag and no %s: error %v, want one naming the variable", EnvVocab, err)
	}
	t.Setenv(EnvVocab, gz)
	tok, err := LoadDefault("")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Source() != gz {
		t.Errorf("loaded from %s, want %s", tok.Source(), gz)
	}
	// The flag wins over the environment.
	if _, err := LoadDefault(filepath.Join(t.TempDir(), "missing.gz")); err == nil {
		t.Error("a missing file given by flag loaded anyway")
	}
}

func gzipBytes(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBadVocabulary checks that broken vocabularies give one-line errors
// that name the file and what is wrong.
func TestBadVocabulary(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "#version: 0.2\na b\nab c\n"
	full := gzipBytes(t, good+strings.Repeat("x y\n", 1000))
	hf := func(sub, vocab, merges string) string {
		p := filepath.Join(dir, sub)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "vocab.json"), []byte(vocab), 0o644)
		os.WriteFile(filepath.Join(p, "merges.txt"), []byte(merges), 0o644)
		return p
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "nope.txt.gz"), "nope.txt.gz"},
		{"empty folder", t.TempDir(), "no CLIP vocabulary"},
		{"empty file", write("empty.gz", nil), "empty vocabulary"},
		{"truncated gzip", write("trunc.gz", full[:len(full)/2]), "trunc.gz"},
		{"corrupt gzip header", write("corrupt.gz", []byte{0x1f, 0x8b, 0, 0, 1, 2, 3}), "corrupt.gz"},
		{"no header", write("nohead.txt", []byte("a b\nab c\n")), "line 1"},
		{"bad merge line", write("bad.txt", []byte("#version: 0.2\na b\nabc\n")), "line 3"},
		{"three symbols", write("three.txt", []byte("#version: 0.2\na b c\n")), "line 2"},
		{"only header", write("onlyhead.txt", []byte("#version: 0.2\n")), "no merges"},
		{"bad json", hf("hf1", "[1,2]", good), "vocab.json"},
		{"no specials", hf("hf2", `{"a":0,"b":1}`, good), "<|startoftext|>"},
		{"negative id", hf("hf3", `{"a":-1}`, good), "out of range"},
		{"bad hf merges", hf("hf4", `{"<|startoftext|>":0,"<|endoftext|>":1}`, "#version: 0.2\nab\n"), "merges.txt: line 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded", c.path)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "tokenizer: ") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting \"tokenizer: \" and containing %q", msg, c.want)
			}
		})
	}
	// A valid small vocabulary of its own loads, with its own special ids.
	tok, err := Load(write("small.txt", []byte(good)))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 516 || tok.BOS() != 514 || tok.EOS() != 515 {
		t.Fatalf("small vocabulary: size %d, BOS %d, EOS %d; want 516, 514, 515", tok.VocabSize(), tok.BOS(), tok.EOS())
	}
}
