package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
	"loco/pkg/tensor"
	"loco/pkg/train"
	"loco/pkg/train/traintest"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/*.txtar")

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// mknet writes a network for the model at path with random (non-zero)
// factors: mode locon (rank 4, conv rank 2), tucker, loha, sdxl (module
// names of another model) or badshape (one lora_down one column too wide).
func mknet(model, out, mode string, seed uint64) error {
	e := tensor.NewEngine(cpu.New())
	m, _, _, err := train.LoadModels(model, e, tensor.F32, nil)
	if err != nil {
		return err
	}
	ul, uc := m.UNet.Layers()
	lins, convs, err := lycoris.SelectUNet(lycoris.PresetFull, ul, uc)
	if err != nil {
		return err
	}
	for _, nl := range m.TE.Linears() {
		lins = append(lins, nl.L)
	}
	cfg := lycoris.Config{Dim: 4, Alpha: 2, ConvDim: 2, ConvAlpha: 1, Tucker: mode == "tucker"}
	if mode == "loha" {
		cfg.Algo = lycoris.AlgoLoHa
	}
	net, err := lycoris.New(e, cfg, lins, convs, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 2))
	for _, en := range net.Entries {
		v := make([]float32, en.Shape.Numel())
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.2)
		}
		if err := net.SetValues(en.Key, v); err != nil {
			return err
		}
	}
	ts, err := net.Tensors(safetensors.F16)
	if err != nil {
		return err
	}
	switch mode {
	case "sdxl":
		for i := range ts {
			ts[i].Name = strings.Replace(ts[i].Name, "lora_unet_", "lora_unet_input_blocks_4_1_", 1)
		}
	case "badshape":
		for i, t := range ts {
			if strings.HasSuffix(t.Name, ".lora_down.weight") && len(t.Shape) == 2 {
				sh := []int{t.Shape[0], t.Shape[1] + 1}
				ts[i], err = safetensors.FromFloat32(t.Name, safetensors.F16, sh, make([]float32, sh[0]*sh[1]))
				break
			}
		}
	}
	if err != nil {
		return err
	}
	return safetensors.WriteFile(out, ts, map[string]string{"ss_network_module": "lycoris.kohya"})
}

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"loco-sample": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// mkmodel PATH SEED writes a tiny SD 1.x checkpoint (fp16).
		"mkmodel": func() {
			var seed uint64
			fmt.Sscan(os.Args[2], &seed)
			fail(traintest.WriteCheckpoint(os.Args[1], seed, safetensors.F16))
		},
		// mknet MODEL OUT MODE SEED writes a random network for MODEL.
		"mknet": func() {
			var seed uint64
			fmt.Sscan(os.Args[4], &seed)
			fail(mknet(os.Args[1], os.Args[2], os.Args[3], seed))
		},
	})
}

func TestScripts(t *testing.T) {
	vocab, ok := golden.Shared("clip/bpe_simple_vocab_16e6.txt.gz")
	if !ok {
		t.Skip("../shared/clip not found: skipping the loco-sample scripts")
	}
	testscript.Run(t, testscript.Params{Dir: "testdata", UpdateScripts: *update, Setup: func(env *testscript.Env) error {
		env.Setenv("VOCAB", vocab)
		return nil
	}})
}
