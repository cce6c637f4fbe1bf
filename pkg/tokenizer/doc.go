// Package tokenizer is the CLIP byte-level BPE tokenizer that Stable
// Diffusion 1.x uses for its text encoder (openai/clip-vit-large-patch14),
// equal, id for id, to Hugging Face's CLIPTokenizer with ftfy installed.
//
// # Vocabulary
//
// Load takes OpenAI's bpe_simple_vocab_16e6.txt.gz, or Hugging Face's
// vocab.json + merges.txt (a folder holding them, or a diffusers model
// folder whose tokenizer/ holds them). LoadDefault takes a path from a flag
// and falls back to the LOCO_CLIP_VOCAB environment variable. From the
// OpenAI file the vocabulary is built as CLIP builds it: the 256 byte
// symbols, the same with "</w>", one token per merge (the first 48894
// merge lines only), then <|startoftext|> and <|endoftext|>: 49408 ids,
// BOS 49406, EOS 49407.
//
// # Encoding
//
// Encode turns text into token ids, in the reference's order of steps:
//
//  1. The literal strings <|startoftext|> and <|endoftext|> are cut out
//     first and become their special ids; the pieces between are cleaned
//     separately.
//  2. Clean: ftfy.fix_text (see below), whitespace_clean (every run of
//     Unicode whitespace becomes one space; the ends are stripped), and
//     Python's str.lower() (full case mapping: 'İ' gives "i\u0307", a word-
//     final 'Σ' gives 'ς').
//  3. Pre-tokenisation by CLIP's pattern
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (case-insensitive): letter runs, single digits, runs of other
//     symbols; whitespace separates.
//  4. Each pre-token's UTF-8 bytes become GPT-2's byte symbols, the last
//     with "</w>", and are merged by rank (lowest first, every occurrence,
//     left to right). Results are cached per pre-token. Words of 64 or
//     more symbols are merged with a heap in (rank, position) order, which
//     gives the same result when every merge ranks after the merges that
//     make its symbols (true of CLIP's list; checked at load, otherwise the
//     plain loop is used), in O(n log n) instead of O(n²).
//
// Encode neither adds BOS/EOS nor truncates. SD1 gives the 77 ids SD 1.x
// uses: BOS, at most 75 tokens, EOS, EOS padding. Frame does the same for
// any length and pad id (OpenAI's clip.tokenize pads with 0). Chunks
// implements kohya's max_token_length 150/225: the text framed to 152 or
// 227 ids and cut into 2 or 3 sequences of 77, each BOS + 75 ids + the last
// id.
//
// # The ftfy port
//
// The reference cleans text with ftfy 6.1.1's fix_text (default options).
// This package ports, in ftfy's order and repeated until nothing changes,
// line by line: HTML entity unescaping (only while no line so far contained
// '<'; all HTML5 names, upper-cased lower-case names such as &EACUTE;, and
// numeric references decoded as Python's html.unescape does), C1 control
// characters read as windows-1252, Latin ligatures, halfwidth and fullwidth
// forms (and U+3000) to their normal forms, curly quotes to straight ones,
// line breaks, ANSI terminal escapes, the control characters ftfy removes,
// and NFC normalisation (tables generated from Python's unicodedata,
// Unicode 14.0.0, by gen_unicode.py).
//
// Mojibake repair (fix_encoding) is ported only in part: text that
// re-encodes entirely as Latin-1 or windows-1252 and then is valid UTF-8
// is decoded as UTF-8, as ftfy does. Not ported: ftfy's "badness" heuristic
// (here any such text is repaired), the other code pages (windows-1250/
// 1251/1253/1254/1257, ISO-8859-2, MacRoman, cp437), the repair of mojibake
// inside otherwise correct text (decode_inconsistent_utf8), and the lossy
// and byte-A0 variants. Prompts rarely contain such text; where one does,
// the tokens can differ from the reference's. Invalid UTF-8 input bytes
// become U+FFFD before anything else.
//
// Not ported either: ftfy's splitting of lines over 1,000,000 characters.
// The \p{L}/\p{N} classes and simple case mappings come from Go's unicode
// package (Unicode 15), the reference's from Python 3 (Unicode 14 for
// Python 3.11); they differ only on characters added since.
//
// Fuzzing: go test -run '^FuzzEncode$' -fuzz '^FuzzEncode$'
// -fuzzminimizetime 2s (minimising new inputs otherwise stalls the run for
// long stretches).
//
// A Tokenizer is safe for concurrent use.
package tokenizer
