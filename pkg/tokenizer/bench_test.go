package tokenizer

import (
	"fmt"
	"testing"
)

// benchPrompts are caption-like texts; each benchmark encodes all of them.
func benchPrompts() []string {
	base := []string{
		"pralyco woman, masterpiece, best quality, ultra detailed, 8k, raw photo, photorealistic, portrait of a young woman with long wavy auburn hair and freckles",
		"a photo of a cat sitting on a windowsill, golden hour, bokeh, 50mm f/1.8",
		"(masterpiece:1.2), [bad hands], {best quality}, ((detailed)), (face:0.8), <lora:pralyco:0.8>",
		"日本語のテキスト、東京タワー, Привет, мир! café crème brûlée &amp; “quotes”",
	}
	var out []string
	for i := 0; i < 64; i++ {
		for _, b := range base {
			out = append(out, fmt.Sprintf("%s, variant %d", b, i))
		}
	}
	return out
}

func benchEncode(b *testing.B, cold bool) {
	tok := loadOpenAI(b)
	prompts := benchPrompts()
	var nTok, nBytes int
	for _, p := range prompts {
		nTok += len(tok.Encode(p))
		nBytes += len(p)
	}
	b.SetBytes(int64(nBytes))
	b.ResetTimer()
	for b.Loop() {
		if cold {
			tok.mu.Lock()
			clear(tok.cache)
			tok.mu.Unlock()
		}
		for _, p := range prompts {
			tok.Encode(p)
		}
	}
	b.ReportMetric(float64(nTok)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncode encodes captions with a warm pre-token cache, as over
// the epochs of a training run.
func BenchmarkEncode(b *testing.B) { benchEncode(b, false) }

// BenchmarkEncodeCold empties the cache before each pass, so every
// pre-token is merged again.
func BenchmarkEncodeCold(b *testing.B) { benchEncode(b, true) }

// BenchmarkLoad measures loading the gzipped OpenAI vocabulary.
func BenchmarkLoad(b *testing.B) {
	p := clipVocabPath(b)
	for b.Loop() {
		if _, err := Load(p); err != nil {
			b.Fatal(err)
		}
	}
}
