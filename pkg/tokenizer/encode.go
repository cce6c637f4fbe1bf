package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// ContextLength is the number of ids the SD 1.x text encoder takes.
	ContextLength = 77
	// ChunkTokens is the number of text tokens between BOS and EOS in one
	// sequence of ContextLength ids.
	ChunkTokens = ContextLength - 2
)

// Clean returns text as the tokenizer sees it before pre-tokenisation:
// ftfy's fix_text (the part described in doc.go), whitespace runs made one
// space and stripped, and Python's lower-casing. Invalid UTF-8 bytes
// become U+FFFD first.
func Clean(text string) string {
	return pyLower(whitespaceClean(fixText(validUTF8(text))))
}

// cleanNoFix is Clean without ftfy.
func cleanNoFix(text string) string {
	return pyLower(whitespaceClean(validUTF8(text)))
}

// validUTF8 replaces each invalid byte with U+FFFD, as ranging over the
// string does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string([]rune(s))
}

// Encode returns the token ids of text, without BOS and EOS and without
// truncation. The literal strings <|startoftext|> and <|endoftext|> in the
// text become their special tokens.
func (t *Tokenizer) Encode(text string) []int32 {
	return t.encode(text, Clean)
}

func (t *Tokenizer) encode(text string, clean func(string) string) []int32 {
	var ids []int32
	// Like the Hugging Face tokenizer, cut the special-token strings out
	// first and clean the pieces between them separately.
	for text != "" {
		i, tok := nextSpecial(text)
		piece := text[:i]
		for pre := range pretokens(clean(piece)) {
			ids = t.appendBPE(ids, pre)
		}
		if tok == "" {
			break
		}
		ids = t.appendBPE(ids, tok)
		text = text[i+len(tok):]
	}
	return ids
}

// nextSpecial returns the position of the first special-token string in
// s and the string, or len(s) and "".
func nextSpecial(s string) (int, string) {
	best, tok := len(s), ""
	for _, sp := range [...]string{startOfText, endOfText} {
		if i := strings.Index(s, sp); i >= 0 && i < best {
			best, tok = i, sp
		}
	}
	return best, tok
}

// Frame returns length ids: BOS, the first length-2 tokens, EOS, then pad
// up to length. SD 1.x pads with EOS; OpenAI's clip.tokenize pads with 0.
func (t *Tokenizer) Frame(tokens []int32, length int, pad int32) []int32 {
	if length < 2 {
		panic(fmt.Sprintf("tokenizer: Frame length %d is below 2", length))
	}
	if len(tokens) > length-2 {
		tokens = tokens[:length-2]
	}
	ids := make([]int32, 0, length)
	ids = append(ids, t.bos)
	ids = append(ids, tokens...)
	ids = append(ids, t.eos)
	for len(ids) < length {
		ids = append(ids, pad)
	}
	return ids
}

// SD1 returns the 77 ids that SD 1.x feeds its text encoder for text:
// BOS, at most 75 tokens (longer text is cut without warning), EOS, and
// EOS up to 77.
func (t *Tokenizer) SD1(text string) []int32 {
	return t.Frame(t.Encode(text), ContextLength, t.eos)
}

// Chunks returns the text-encoder inputs for kohya's max_token_length:
// 0 or 75 gives the one sequence of SD1; 150 or 225 gives 2 or 3 sequences
// of 77 ids. The text is framed to max_token_length+2 ids (BOS, up to
// max_token_length tokens, EOS, EOS padding), and chunk j is BOS, ids
// 1+75j .. 75(j+1), then the last of those ids (always EOS).
func (t *Tokenizer) Chunks(text string, maxTokenLength int) ([][]int32, error) {
	switch maxTokenLength {
	case 0, ChunkTokens:
		return [][]int32{t.SD1(text)}, nil
	case 2 * ChunkTokens, 3 * ChunkTokens:
	default:
		return nil, fmt.Errorf("tokenizer: max_token_length %d: want 75, 150 or 225", maxTokenLength)
	}
	long := t.Frame(t.Encode(text), maxTokenLength+2, t.eos)
	n := maxTokenLength / ChunkTokens
	chunks := make([][]int32, n)
	for j := range chunks {
		c := make([]int32, 0, ContextLength)
		c = append(c, long[0])
		c = append(c, long[1+ChunkTokens*j:1+ChunkTokens*(j+1)]...)
		c = append(c, long[len(long)-1])
		chunks[j] = c
	}
	return chunks, nil
}

// pretokens yields the matches of CLIP's pre-token pattern in s, which
// must be cleaned and lower-cased:
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// matched case-insensitively; whitespace between matches is skipped.
func pretokens(s string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			var end int
			switch {
			case r == '<' && foldPrefix(s[i:], startOfText) > 0:
				end = i + foldPrefix(s[i:], startOfText)
			case r == '<' && foldPrefix(s[i:], endOfText) > 0:
				end = i + foldPrefix(s[i:], endOfText)
			case r == '\'' && contraction(s[i+1:]) > 0:
				end = i + 1 + contraction(s[i+1:])
			case unicode.IsLetter(r):
				end = i + n
				for end < len(s) {
					r, n := utf8.DecodeRuneInString(s[end:])
					if !unicode.IsLetter(r) {
						break
					}
					end += n
				}
			case unicode.IsNumber(r):
				end = i + n
			case unicode.IsSpace(r):
				i += n
				continue
			default:
				end = i + n
				for end < len(s) {
					r, n := utf8.DecodeRuneInString(s[end:])
					if unicode.IsSpace(r) || unicode.IsLetter(r) || unicode.IsNumber(r) {
						break
					}
					end += n
				}
			}
			if !yield(s[i:end]) {
				return
			}
			i = end
		}
	}
}

// contraction returns the length of the match of s|t|re|ve|m|ll|d
// (case-insensitive) at the start of s, or 0.
func contraction(s string) int {
	for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		if n := foldPrefix(s, c); n > 0 {
			return n
		}
	}
	return 0
}

// foldPrefix returns the byte length of the prefix of s that equals the
// ASCII string lit under simple case folding, or 0.
func foldPrefix(s, lit string) int {
	j := 0
	for k := 0; k < len(lit); k++ {
		if j >= len(s) {
			return 0
		}
		r, n := utf8.DecodeRuneInString(s[j:])
		if !foldEq(r, rune(lit[k])) {
			return 0
		}
		j += n
	}
	return j
}

// foldEq reports whether r and the ASCII rune c are equal under simple
// case folding (so 'ſ' matches 's', and the Kelvin sign 'k').
func foldEq(r, c rune) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}
