package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// The tiny vocabulary: byte-pair merges learnt from a small corpus (the
// demo's captions and sample prompts weighted up, then a list of common
// prompt words), written in the format of OpenAI's
// bpe_simple_vocab_16e6.txt.gz: a "#version" header line, then one merge
// "a b" per line, gzip-compressed. CLIP builds its vocabulary from it as
// the 256 byte symbols, the same with "</w>", one token per merge, then
// <|startoftext|> and <|endoftext|>: 512 + merges + 2 tokens.

// demoPrompts are the texts the demo and the end-to-end tests use; their
// words are learnt first, so each becomes one token.
var demoPrompts = []string{
	"pralyco, photo of a woman",
	"pralyco woman", "pralyco woman, smiling, outdoors", "pralyco woman, close-up portrait",
	"woman", "a photo of a woman", "photo of a woman",
	"pralyco woman standing on a rocky beach at golden hour, wearing a red knitted sweater and jeans, looking over her shoulder, 85mm lens, shallow depth of field, soft rim light, film grain",
	"pralyco woman, portrait, studio lighting, best quality",
	"lowres, bad anatomy, worst quality, blurry",
}

// commonWords widen the corpus so that other prompts tokenize into
// sensible pieces.
const commonWords = `the and with in on at of for to from by a an is
man woman girl boy person people face portrait photo photograph picture image painting drawing sketch illustration
smiling smile happy sad looking standing sitting walking running holding wearing
red green blue yellow black white brown gray grey pink purple orange golden silver dark light bright
hair eyes long short blonde curly dress shirt jacket hat glasses sweater jeans coat
outdoors indoors city street park forest beach mountain sky sunset sunrise night day water sea river lake snow rain
cat dog horse bird flower tree house room window table chair car
close up full body upper body side view from above below background foreground
soft hard sharp focus detailed highly realistic cinematic dramatic natural studio lighting shadow
high quality best masterpiece lowres worst bad blurry anatomy
lens camera film grain bokeh depth field rim
art style anime digital oil watercolor`

// learnMerges learns up to maxMerges byte-pair merges over the corpus,
// deterministically (the most frequent pair, ties broken by the pair's
// text), stopping when every word is one symbol.
func learnMerges(maxMerges int) [][2]string {
	freq := map[string]int{}
	add := func(text string, weight int) {
		for _, w := range preTokens(text) {
			freq[w] += weight
		}
	}
	for _, p := range demoPrompts {
		add(p, 100)
	}
	add(commonWords, 1)

	type word struct {
		syms []string
		n    int
	}
	var words []word
	for w, n := range freq {
		var syms []string
		for _, r := range w {
			syms = append(syms, string(r))
		}
		syms[len(syms)-1] += "</w>"
		words = append(words, word{syms, n})
	}
	sort.Slice(words, func(i, j int) bool { return strings.Join(words[i].syms, "") < strings.Join(words[j].syms, "") })

	var merges [][2]string
	for len(merges) < maxMerges {
		counts := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				counts[[2]string{w.syms[i], w.syms[i+1]}] += w.n
			}
		}
		if len(counts) == 0 {
			break
		}
		var best [2]string
		bestN := 0
		for p, n := range counts {
			if n > bestN || n == bestN && p[0]+" "+p[1] < best[0]+" "+best[1] {
				best, bestN = p, n
			}
		}
		merges = append(merges, best)
		joined := best[0] + best[1]
		for wi := range words {
			s := words[wi].syms
			out := s[:0:0]
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, joined)
					i++
				} else {
					out = append(out, s[i])
				}
			}
			words[wi].syms = out
		}
	}
	return merges
}

// preTokens splits lowercased text as CLIP's pattern does for plain ASCII:
// runs of letters, single digits, runs of other non-space characters.
func preTokens(text string) []string {
	var out []string
	rs := []rune(strings.ToLower(text))
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case unicode.IsLetter(r):
			j := i
			for j < len(rs) && unicode.IsLetter(rs[j]) {
				j++
			}
			out = append(out, string(rs[i:j]))
			i = j
		case unicode.IsDigit(r):
			out = append(out, string(r))
			i++
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && !unicode.IsLetter(rs[j]) && !unicode.IsDigit(rs[j]) {
				j++
			}
			out = append(out, string(rs[i:j]))
			i = j
		}
	}
	return out
}

// writeVocab writes the merges as a gzip-compressed OpenAI-format
// vocabulary file (no timestamp in the gzip header, so the bytes depend on
// the merges only), through a temporary name.
func writeVocab(path string, merges [][2]string) error {
	var text bytes.Buffer
	text.WriteString("#version: 0.2 - loco tiny CLIP vocabulary (scripts/mkcheckpoint), not OpenAI's\n")
	for _, m := range merges {
		fmt.Fprintf(&text, "%s %s\n", m[0], m[1])
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Write(text.Bytes())
	if err := zw.Close(); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	_, err = tmp.Write(gz.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// vocabSize is the size of the vocabulary CLIP builds from merges.
func vocabSize(merges [][2]string) int { return 512 + len(merges) + 2 }
