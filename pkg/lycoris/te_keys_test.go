package lycoris

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// teWant is the text-encoder inventory of spec/locon.md §3.3 for SD 1.5's
// CLIP-L: per encoder layer, the four attention projections (768→768) and
// the MLP (768→3072, 3072→768), all Linear at rank network_dim.
func teWant(dim int) map[string][2][]int {
	want := map[string][2][]int{}
	for i := 0; i < 12; i++ {
		p := fmt.Sprintf("lora_te_text_model_encoder_layers_%d_", i)
		for _, q := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			want[p+"self_attn_"+q] = [2][]int{{dim, 768}, {768, dim}}
		}
		want[p+"mlp_fc1"] = [2][]int{{dim, 768}, {3072, dim}}
		want[p+"mlp_fc2"] = [2][]int{{dim, 3072}, {768, dim}}
	}
	return want
}

func teLinears(t *testing.T) []*nn.Linear {
	t.Helper()
	b := nn.NewBuilder(sd.TEPrefix, nil)
	m := clip.New(b, clip.DefaultConfig())
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	var out []*nn.Linear
	for _, nl := range m.Linears() {
		out = append(out, nl.L)
	}
	return out
}

// TestSD15TextEncoderKeys builds the LoCon on the shape-only SD 1.5 text
// encoder and checks the 72 modules of spec/locon.md §3.3: names, shapes,
// ranks and alphas, and the 1,327,104 trainable values of dim 8 (§3.3's
// 1,327,176 counts the 72 alphas too).
func TestSD15TextEncoderKeys(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, teLinears(t), nil, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := teWant(8)
	if len(net.Modules) != 72 || len(want) != 72 {
		t.Fatalf("%d modules, want 72", len(net.Modules))
	}
	for _, m := range net.Modules {
		w, ok := want[m.Name]
		if !ok {
			t.Errorf("unexpected module %s (layer %s)", m.Name, m.Layer)
			continue
		}
		delete(want, m.Name)
		if m.Conv || m.Rank != 8 || m.Alpha != 4 {
			t.Errorf("%s: conv %v rank %d alpha %g, want Linear rank 8 alpha 4", m.Name, m.Conv, m.Rank, m.Alpha)
		}
		for i, suf := range []string{sufDown, sufUp} {
			en, ok := net.Entry(m.Name + suf)
			if !ok {
				t.Errorf("no %s%s", m.Name, suf)
				continue
			}
			if !en.Shape.Equal(w[i]) {
				t.Errorf("%s%s: shape %v, want %v", m.Name, suf, en.Shape, w[i])
			}
		}
		if _, ok := net.Entry(m.Name + sufMid); ok {
			t.Errorf("%s has a lora_mid", m.Name)
		}
	}
	for n := range want {
		t.Errorf("missing module %s", n)
	}
	if net.Len()+72 != 1327176 {
		t.Errorf("%d trainable values + 72 alphas, want 1,327,176", net.Len())
	}
	if len(net.Entries) != 144 {
		t.Errorf("%d tensors besides the alphas, want 144", len(net.Entries))
	}
}

// TestSD15FullKeySetHashes builds TE + UNet networks for both presets and
// compares the sha256 of the sorted key names with the check values of
// spec/locon.md §3.3 (1050 and 1062 keys) and the value counts given there.
func TestSD15FullKeySetHashes(t *testing.T) {
	for _, tc := range []struct {
		preset Preset
		keys   int
		values int // without alphas
		sum    string
	}{
		{Preset2023, 1050, 7557982 - 350, "4ea5d01fa5f2664e741e0a829821affd8f1a86f666e9dfc17a47bedc2b0c8132"},
		{PresetFull, 1062, 7604226 - 354, "76870f1f9caf27262e91025e16886f1af7e7dbe2ab7de749fea7a2a8c8ee0cfb"},
	} {
		t.Run(string(tc.preset), func(t *testing.T) {
			u, err := unet.New(nn.NewBuilder(UNetPrefix, nil), unet.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			lin, conv := u.Layers()
			lin, conv, err = SelectUNet(tc.preset, lin, conv)
			if err != nil {
				t.Fatal(err)
			}
			lin = append(teLinears(t), lin...)
			e := tensor.NewEngine(cpu.New())
			net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, en := range net.Entries {
				keys = append(keys, en.Key)
			}
			for _, m := range net.Modules {
				keys = append(keys, m.Name+sufAlpha)
			}
			sort.Strings(keys)
			if len(keys) != tc.keys {
				t.Errorf("%d keys, want %d", len(keys), tc.keys)
			}
			sum := sha256.Sum256([]byte(strings.Join(keys, "\n") + "\n"))
			if got := hex.EncodeToString(sum[:]); got != tc.sum {
				t.Errorf("sha256 of the sorted key names %s, want %s", got, tc.sum)
			}
			if net.Len() != tc.values {
				t.Errorf("%d trainable values, want %d (spec/locon.md §3.3, alphas excluded)", net.Len(), tc.values)
			}
		})
	}
}
