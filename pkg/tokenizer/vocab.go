package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const (
	// EnvVocab names the environment variable that points at a CLIP
	// vocabulary (a file or a folder; see Load).
	EnvVocab = "LOCO_CLIP_VOCAB"

	// OpenAIVocabFile is the file name of OpenAI's CLIP vocabulary.
	OpenAIVocabFile = "bpe_simple_vocab_16e6.txt.gz"

	// maxMerges is how many merges CLIP reads: lines 2..48895 of the
	// vocabulary file (49152 - 256 - 2).
	maxMerges = 49152 - 256 - 2

	// maxVocabBytes bounds the uncompressed size of a vocabulary file.
	maxVocabBytes = 64 << 20

	startOfText = "<|startoftext|>"
	endOfText   = "<|endoftext|>"
)

// ResolvePath returns the vocabulary path to use: flag when it is not
// empty, otherwise the value of LOCO_CLIP_VOCAB.
func ResolvePath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if p := os.Getenv(EnvVocab); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("tokenizer: no CLIP vocabulary given: pass its path (%s, or a folder with vocab.json and merges.txt) or set %s", OpenAIVocabFile, EnvVocab)
}

// LoadDefault loads the vocabulary named by flag, or by LOCO_CLIP_VOCAB
// when flag is empty.
func LoadDefault(flag string) (*Tokenizer, error) {
	p, err := ResolvePath(flag)
	if err != nil {
		return nil, err
	}
	return Load(p)
}

// Load reads a CLIP vocabulary from path, which may be
//   - a file in OpenAI's format (bpe_simple_vocab_16e6.txt.gz, gzipped or
//     not: a header line, then one merge per line),
//   - a Hugging Face vocab.json or merges.txt (the other one must be next to it),
//   - a folder holding vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz,
//   - a diffusers model folder, whose tokenizer/ sub-folder holds vocab.json
//     and merges.txt.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !st.IsDir() {
		switch filepath.Base(path) {
		case "vocab.json":
			return LoadHF(path, filepath.Join(filepath.Dir(path), "merges.txt"))
		case "merges.txt":
			return LoadHF(filepath.Join(filepath.Dir(path), "vocab.json"), path)
		}
		return LoadOpenAI(path)
	}
	for _, dir := range []string{path, filepath.Join(path, "tokenizer")} {
		v, m := filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
		if isFile(v) && isFile(m) {
			return LoadHF(v, m)
		}
	}
	if p := filepath.Join(path, OpenAIVocabFile); isFile(p) {
		return LoadOpenAI(p)
	}
	return nil, fmt.Errorf("tokenizer: %s: no CLIP vocabulary in this folder (looked for vocab.json + merges.txt, tokenizer/vocab.json + tokenizer/merges.txt, %s)", path, OpenAIVocabFile)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// LoadOpenAI reads OpenAI's vocabulary file (gzip-compressed or plain).
// The vocabulary is built as CLIP builds it: the 256 byte symbols, the same
// with "</w>", one token per merge, then <|startoftext|> and <|endoftext|>.
func LoadOpenAI(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return parseOpenAI(path, data)
}

// parseOpenAI builds a tokenizer from the bytes of an OpenAI vocabulary
// file; path is for messages.
func parseOpenAI(path string, data []byte) (*Tokenizer, error) {
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %v", path, err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, maxVocabBytes))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: corrupt gzip data: %v", path, err)
		}
	}
	merges, err := parseMerges(path, data)
	if err != nil {
		return nil, err
	}
	vocab := make([]string, 0, 512+len(merges)+2)
	for _, s := range byteSymbols {
		vocab = append(vocab, s)
	}
	for _, s := range byteSymbols {
		vocab = append(vocab, s+"</w>")
	}
	for _, m := range merges {
		vocab = append(vocab, m[0]+m[1])
	}
	vocab = append(vocab, startOfText, endOfText)
	encoder := make(map[string]int32, len(vocab))
	for i, s := range vocab {
		encoder[s] = int32(i) // a repeated token keeps its last id, as dict(zip()) does
	}
	return newTokenizer(path, encoder, merges)
}

// LoadHF reads a Hugging Face CLIPTokenizer vocabulary: vocab.json (token
// to id) and merges.txt (a "#version" line, then one merge per line).
func LoadHF(vocabPath, mergesPath string) (*Tokenizer, error) {
	vdata, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var raw map[string]int64
	if err := json.Unmarshal(vdata, &raw); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a JSON object of token ids: %v", vocabPath, err)
	}
	encoder := make(map[string]int32, len(raw))
	for tok, id := range raw {
		if id < 0 || id >= 1<<31 {
			return nil, fmt.Errorf("tokenizer: %s: token %q has id %d, out of range", vocabPath, tok, id)
		}
		encoder[tok] = int32(id)
	}
	mdata, err := os.ReadFile(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	merges, err := parseMerges(mergesPath, mdata)
	if err != nil {
		return nil, err
	}
	return newTokenizer(vocabPath, encoder, merges)
}

// parseMerges reads the merge lines that CLIP uses: the first line is a
// header and is skipped, then at most maxMerges lines of two symbols.
func parseMerges(path string, data []byte) ([][2]string, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: empty vocabulary file", path)
	}
	// Like Python's str.split(), ignore trailing blank lines and a '\r'
	// before each '\n'.
	data = bytes.TrimRight(data, "\r\n \t")
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var merges [][2]string
	line := 0
	for sc.Scan() && len(merges) < maxMerges {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 {
			if !strings.Contains(text, "#version") {
				return nil, fmt.Errorf("tokenizer: %s: line 1: want a \"#version\" header, found %.40q", path, text)
			}
			continue
		}
		a, b, ok := strings.Cut(text, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, fmt.Errorf("tokenizer: %s: line %d: want two symbols separated by one space, found %.40q", path, line, text)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: line %d: %v", path, line+1, err)
	}
	if len(merges) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: no merges after the header", path)
	}
	return merges, nil
}
