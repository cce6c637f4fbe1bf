package clip_test

import (
	"fmt"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

// A text encoder is built from a config and a weight source (here random
// weights; sd.FileSource reads a checkpoint), then encodes token ids with
// clip skip 2.
func ExampleModel_Encode() {
	e := tensor.NewEngine(cpu.New())
	cfg := clip.Config{VocabSize: 100, ContextLength: 77, Width: 32, Layers: 4, Heads: 4}
	b := nn.NewBuilder(clip.Prefix, sdtest.RandSource{E: e, Seed: 1})
	m := clip.New(b, cfg)
	if err := b.Err(); err != nil {
		panic(err)
	}
	ids := make([]int32, 77) // BOS, tokens, EOS and padding in real use
	e.NoGrad(func() {
		cond := m.Encode([][]int32{ids, ids}, 2)
		fmt.Println(cond.Shape())
	})
	fmt.Println(len(m.Linears()), m.Linears()[0].Path)
	// Output:
	// [2,77,32]
	// 24 text_model.encoder.layers.0.self_attn.q_proj
}
