package tokenizer

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// byteSymbols is GPT-2's bytes_to_unicode table in table order: the
// printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the
// other bytes, in increasing order, for U+0100, U+0101, ...
// byteIndex maps a byte to its position in byteSymbols.
var byteSymbols, byteIndex = func() ([256]string, [256]int) {
	var syms [256]string
	var idx [256]int
	n := 0
	printable := func(b int) bool {
		return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
	}
	for b := 0; b < 256; b++ {
		if printable(b) {
			syms[n] = string(rune(b))
			idx[b] = n
			n++
		}
	}
	extra := 0
	for b := 0; b < 256; b++ {
		if !printable(b) {
			syms[n] = string(rune(256 + extra))
			idx[b] = n
			n++
			extra++
		}
	}
	return syms, idx
}()

// maxCache bounds the number of cached pre-tokens; the cache is emptied
// when it is full.
const maxCache = 1 << 16

// Tokenizer is CLIP's byte-level BPE tokenizer. It is safe for concurrent
// use.
type Tokenizer struct {
	source string // the file it was loaded from, for messages

	// Symbols are interned: symbol ids index symText and symToken.
	symText  []string
	symToken []int32 // vocabulary id of each symbol; the unknown token when absent

	// byteSym[b] and byteSymEnd[b] are the symbols of byte b, alone and
	// with "</w>".
	byteSym, byteSymEnd [256]int32

	// merges maps a pair of symbols (first<<32 | second) to its rank and
	// the symbol it merges into.
	merges map[uint64]merge
	// ordered is mergesOrdered(merges): long words may use bpeHeap.
	ordered bool

	bos, eos, unk int32
	vocabSize     int
	tokens        []string // id -> token text, "" where no token has the id

	mu    sync.Mutex
	cache map[string][]int32
}

type merge struct {
	rank   int32
	result int32
}

// newTokenizer builds a tokenizer from a vocabulary (token -> id) and
// ranked merges, as both CLIP loaders do.
func newTokenizer(source string, encoder map[string]int32, merges [][2]string) (*Tokenizer, error) {
	t := &Tokenizer{
		source: source,
		merges: make(map[uint64]merge, len(merges)),
		cache:  make(map[string][]int32),
	}
	var ok bool
	if t.bos, ok = encoder[startOfText]; !ok {
		return nil, fmt.Errorf("tokenizer: %s: the vocabulary has no %s token", source, startOfText)
	}
	if t.eos, ok = encoder[endOfText]; !ok {
		return nil, fmt.Errorf("tokenizer: %s: the vocabulary has no %s token", source, endOfText)
	}
	t.unk = t.eos // CLIPTokenizer's unk_token is <|endoftext|>
	for _, id := range encoder {
		if int(id) >= t.vocabSize {
			t.vocabSize = int(id) + 1
		}
	}
	t.tokens = make([]string, t.vocabSize)
	for tok, id := range encoder {
		t.tokens[id] = tok
	}

	ids := make(map[string]int32)
	intern := func(s string) int32 {
		if id, ok := ids[s]; ok {
			return id
		}
		id := int32(len(t.symText))
		ids[s] = id
		t.symText = append(t.symText, s)
		tok, ok := encoder[s]
		if !ok {
			tok = t.unk
		}
		t.symToken = append(t.symToken, tok)
		return id
	}
	for b := 0; b < 256; b++ {
		s := byteSymbols[byteIndex[b]]
		t.byteSym[b] = intern(s)
		t.byteSymEnd[b] = intern(s + "</w>")
	}
	for rank, m := range merges {
		a, b := intern(m[0]), intern(m[1])
		// dict(zip(merges, range(len(merges)))): a repeated merge keeps its
		// last rank.
		t.merges[uint64(a)<<32|uint64(uint32(b))] = merge{rank: int32(rank), result: intern(m[0] + m[1])}
	}
	t.ordered = mergesOrdered(merges)
	return t, nil
}

// BOS returns the id of <|startoftext|>.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the id of <|endoftext|>, which SD 1.x also pads with.
func (t *Tokenizer) EOS() int32 { return t.eos }

// VocabSize returns one more than the largest token id.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// Source returns the path the vocabulary was loaded from.
func (t *Tokenizer) Source() string { return t.source }

// appendBPE appends the token ids of one pre-token (a match of CLIP's
// pattern) to ids.
func (t *Tokenizer) appendBPE(ids []int32, pre string) []int32 {
	switch pre {
	case startOfText:
		return append(ids, t.bos)
	case endOfText:
		return append(ids, t.eos)
	}
	t.mu.Lock()
	cached, ok := t.cache[pre]
	t.mu.Unlock()
	if ok {
		return append(ids, cached...)
	}

	word := make([]int32, 0, len(pre))
	for i := 0; i < len(pre); i++ {
		if i == len(pre)-1 {
			word = append(word, t.byteSymEnd[pre[i]])
		} else {
			word = append(word, t.byteSym[pre[i]])
		}
	}
	word = t.bpe(word)
	out := make([]int32, len(word))
	for i, s := range word {
		out[i] = t.symToken[s]
	}

	t.mu.Lock()
	if len(t.cache) >= maxCache {
		clear(t.cache)
	}
	t.cache[pre] = out
	t.mu.Unlock()
	return append(ids, out...)
}

// bpe merges the symbols of one word as CLIP's bpe() does: while some
// adjacent pair is a known merge, take the pair of lowest rank and merge
// all its occurrences, left to right without overlap.
func (t *Tokenizer) bpe(word []int32) []int32 {
	if t.ordered && len(word) >= heapMinSymbols {
		return t.bpeHeap(word)
	}
	return t.bpeLoop(word)
}

// bpeLoop is CLIP's bpe loop as written: quadratic in the word length.
func (t *Tokenizer) bpeLoop(word []int32) []int32 {
	for len(word) > 1 {
		best := merge{rank: -1}
		var bestA, bestB int32
		for i := 0; i+1 < len(word); i++ {
			m, ok := t.merges[uint64(word[i])<<32|uint64(uint32(word[i+1]))]
			if ok && (best.rank < 0 || m.rank < best.rank) {
				best, bestA, bestB = m, word[i], word[i+1]
			}
		}
		if best.rank < 0 {
			break
		}
		out := word[:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == bestA && word[i+1] == bestB {
				out = append(out, best.result)
				i += 2
			} else {
				out = append(out, word[i])
				i++
			}
		}
		word = out
	}
	return word
}

// Decode turns token ids back into text, as CLIP's decode does: the token
// texts are joined, "</w>" becomes a space, and the bytes are decoded as
// UTF-8 (invalid sequences become U+FFFD). Unknown ids are skipped.
func (t *Tokenizer) Decode(ids []int32) string {
	var buf []byte
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.tokens) || id == t.bos || id == t.eos {
			continue
		}
		tok := t.tokens[id]
		for len(tok) > 0 {
			if len(tok) >= 4 && tok[:4] == "</w>" {
				buf = append(buf, ' ')
				tok = tok[4:]
				continue
			}
			r, n := utf8.DecodeRuneInString(tok)
			tok = tok[n:]
			if b, ok := unicodeByte[r]; ok {
				buf = append(buf, b)
			}
		}
	}
	return trimRightSpace(string([]rune(string(buf))))
}

// unicodeByte inverts byteSymbols.
var unicodeByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b := 0; b < 256; b++ {
		r, _ := utf8.DecodeRuneInString(byteSymbols[byteIndex[b]])
		m[r] = byte(b)
	}
	return m
}()

func trimRightSpace(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}
