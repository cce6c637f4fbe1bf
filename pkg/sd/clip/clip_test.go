package clip_test

import (
	"encoding/json"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

func TestKeysSD15(t *testing.T) {
	path, ok := golden.Shared("golden/sd15/clip_keys.tsv")
	if !ok {
		t.Skip("../shared/golden/sd15/clip_keys.tsv not found")
	}
	var want []string
	for _, l := range sdtest.ReadKeyList(t, path) {
		optional := false
		for _, k := range clip.OptionalKeys {
			optional = optional || strings.HasPrefix(l, clip.Prefix+k+"\t")
		}
		if !optional {
			want = append(want, l)
		}
	}
	b := nn.NewBuilder(clip.Prefix, nil)
	m := clip.New(b, clip.DefaultConfig())
	got := sdtest.SpecLines(b.Params())
	if len(got) != len(want) {
		t.Errorf("declared %d keys, list has %d (without optional keys)", len(got), len(want))
	}
	sdtest.DiffLists(t, "clip keys", got, want)

	// The Linear layers: six per layer, with their module paths, matching
	// their checkpoint keys.
	lin := m.Linears()
	if len(lin) != 6*12 {
		t.Fatalf("%d Linear layers, want 72", len(lin))
	}
	for _, nl := range lin {
		if clip.Prefix+strings.TrimPrefix(nl.Path, "text_model.") != nl.L.Key {
			t.Errorf("Linear %s has key %s", nl.Path, nl.L.Key)
		}
	}
	if lin[0].Path != "text_model.encoder.layers.0.self_attn.q_proj" || lin[71].Path != "text_model.encoder.layers.11.mlp.fc2" {
		t.Errorf("paths %s ... %s", lin[0].Path, lin[71].Path)
	}
}

func idsOf(t *testing.T, c *golden.Case, name string) [][]int32 {
	t.Helper()
	sh := c.Shape(name)
	if len(sh) != 2 {
		t.Fatalf("%s: %s has shape %v, want [B,T]", c.Name, name, sh)
	}
	flat := c.Int64(t, name)
	out := make([][]int32, sh[0])
	for i := range out {
		out[i] = make([]int32, sh[1])
		for j := range out[i] {
			out[i][j] = int32(flat[i*sh[1]+j])
		}
	}
	return out
}

func TestGolden(t *testing.T) {
	golden.ForEach(t, "clip_text", func(t *testing.T, c *golden.Case) {
		cfg, err := clip.ParseConfig(c.Config)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		prefix := clip.Prefix
		if raw, ok := c.Raw["model_key_prefix"]; ok {
			if err := json.Unmarshal(raw, &prefix); err != nil {
				t.Fatal(err)
			}
		}
		e := tensor.NewEngine(cpu.New())
		f, err := safetensors.Open(c.Path("model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		src := sd.NewFileSource(f, e, tensor.F32)
		b := nn.NewBuilder(prefix, src)
		m := clip.New(b, cfg)
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range src.Unused(prefix) {
			optional := false
			for _, o := range clip.OptionalKeys {
				optional = optional || k == prefix+o
			}
			if !optional {
				t.Errorf("%s: unexpected tensor %s", c.Name, k)
			}
		}

		ids := idsOf(t, c, "ids")
		outs := map[string][]float32{}
		e.NoGrad(func() {
			out := m.Forward(ids)
			var all []float32
			for _, h := range out.Hidden {
				all = append(all, h.Float32s()...)
			}
			outs["hidden_states"] = all
			outs["last"] = out.Last.Float32s()
			outs["penultimate"] = m.Skip(out, 2).Float32s()
			// Encode computes the same through fewer layers.
			golden.CheckRel(t, c.Name+"/Encode(1)", m.Encode(ids, 1).Float32s(), outs["last"], 0)
			golden.CheckRel(t, c.Name+"/Encode(2)", m.Encode(ids, 2).Float32s(), outs["penultimate"], 0)
		})
		e.EndStep()
		checked := 0
		for _, name := range []string{"last", "penultimate", "hidden_states"} {
			if _, ok := c.Tensors[name]; !ok {
				continue
			}
			rel := c.Check(t, name, outs[name])
			t.Logf("%s: %-13s rel L2 %.2e (tol %.0e)", c.Name, name, rel, c.Tol(name))
			checked++
		}
		for name, spec := range c.Tensors {
			if _, ok := outs[name]; spec.Role == "output" && !ok {
				t.Errorf("%s: output %s is not computed by this test", c.Name, name)
			}
		}
		if checked == 0 {
			t.Errorf("%s: no output checked", c.Name)
		}
	})
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		ok         bool
	}{
		{"tiny", `{"vocab_size":49408,"context_length":77,"width":64,"layers":3,"heads":4,"hidden_act":"quick_gelu","layer_norm_eps":1e-05,"causal_mask":true}`, true},
		{"gelu", `{"vocab_size":49408,"context_length":77,"width":64,"layers":3,"heads":4,"hidden_act":"gelu"}`, false},
		{"heads", `{"vocab_size":49408,"context_length":77,"width":64,"layers":3,"heads":5}`, false},
		{"nocausal", `{"vocab_size":49408,"context_length":77,"width":64,"layers":3,"heads":4,"causal_mask":false}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := clip.ParseConfig([]byte(tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && (c.MLP != 256 || c.Eps != 1e-5) {
				t.Errorf("defaults not filled: %+v", c)
			}
		})
	}
}

// TestShortSequence checks that T < ContextLength uses positions 0..T-1:
// with a causal mask, the first T outputs of a full sequence equal the
// outputs of its first T tokens.
func TestShortSequence(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	cfg := clip.Config{VocabSize: 40, ContextLength: 10, Width: 16, Layers: 2, Heads: 2}
	b := nn.NewBuilder(clip.Prefix, sdtest.RandSource{E: e, Seed: 9})
	m := clip.New(b, cfg)
	full := [][]int32{{1, 5, 7, 3, 2, 9, 9, 9, 9, 9}}
	short := [][]int32{full[0][:4]}
	e.NoGrad(func() {
		a := m.Encode(full, 1).Float32s()
		s := m.Encode(short, 1).Float32s()
		golden.CheckRel(t, "prefix of full sequence", s, a[:4*16], 1e-6)
	})
	if err := tensor.Catch(func() { m.Encode([][]int32{{1, 40}}, 1) }); err == nil || !strings.Contains(err.Error(), "outside table") {
		t.Errorf("id 40 of 40: error %v", err)
	}
	if err := tensor.Catch(func() { m.Encode([][]int32{{1, 2}, {1}}, 1) }); err == nil {
		t.Error("ragged batch: no error")
	}
	if err := tensor.Catch(func() { m.Encode(full, 3) }); err == nil {
		t.Error("clip skip 3 of 2 layers: no error")
	}
}
