package tokenizer_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"loco/pkg/tokenizer"
)

// A vocabulary in OpenAI's format is a header line and one merge per line;
// this small one of its own knows "hello" as one token. Real use loads
// bpe_simple_vocab_16e6.txt.gz, or a diffusers folder, the same way.
func Example() {
	dir, err := os.MkdirTemp("", "vocab")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "vocab.txt")
	merges := "#version: 0.2\nh e\nl l\nhe ll\nhell o</w>\n"
	if err := os.WriteFile(path, []byte(merges), 0o644); err != nil {
		log.Fatal(err)
	}

	tok, err := tokenizer.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("  HELLO,\thello!  ")
	fmt.Println("clean:", tokenizer.Clean("  HELLO,\thello!  "))
	fmt.Println("tokens:", ids, "->", tok.Decode(ids))
	fmt.Println("BOS, EOS:", tok.BOS(), tok.EOS())
	fmt.Println("SD 1.x ids:", tok.SD1("hello")[:5], "... 77 in all")
	// Output:
	// clean: hello, hello!
	// tokens: [515 267 515 256] -> hello , hello !
	// BOS, EOS: 516 517
	// SD 1.x ids: [516 515 517 517 517] ... 77 in all
}

// LoadDefault takes the tools' --vocab flag, or LOCO_CLIP_VOCAB when the
// flag is empty; Chunks gives kohya's max_token_length sequences. (Compiled
// but not run: it needs the real vocabulary.)
func ExampleLoadDefault() {
	tok, err := tokenizer.LoadDefault("")
	if err != nil {
		log.Fatal(err)
	}
	chunks, err := tok.Chunks("pralyco woman, a photo of a woman", 225)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(chunks), len(chunks[0]))
}
