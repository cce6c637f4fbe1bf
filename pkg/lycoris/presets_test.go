package lycoris

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

func sd15Layers(t *testing.T) ([]*nn.Linear, []*nn.Conv2d) {
	t.Helper()
	u, err := unet.New(nn.NewBuilder(UNetPrefix, nil), unet.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return u.Layers()
}

// TestSD15PresetCounts checks the UNet layer counts of spec/locon.md §3.3
// for every preset on the real-size SD 1.5 UNet: 282 (LyCORIS full), 278
// (LoCon package / LyCORIS < 1.9 / Kohya LoCon), 192 (kohya's plain LoRA:
// 32 1×1 proj_in/proj_out convs and 160 Linears of the 16 transformers).
func TestSD15PresetCounts(t *testing.T) {
	lin, conv := sd15Layers(t)
	for _, tc := range []struct {
		p                 Preset
		lins, convs, k3x3 int
	}{
		{PresetFull, 22 + 160 + 2, 32 + 44 + 14 + 6 + 2, 44 + 6 + 2},
		{Preset2023, 22 + 160, 32 + 44 + 14 + 6, 44 + 6},
		{PresetLoRA, 160, 32, 0},
		// LyCORIS' other presets (spec/locon.md §3.2).
		{PresetAttnMLP, 160, 32, 0},
		{PresetUNetTransformerOnly, 160, 32, 0},
		{PresetAttnOnly, 128, 0, 0},               // attn1/attn2 q, k, v, out of 16 transformers
		{PresetFullLin, 160 + 22 + 2, 32 + 14, 0}, // + time_emb_proj, time_embedding; + conv_shortcut
		{PresetUNetOnly, 22 + 160 + 2, 32 + 44 + 14 + 6 + 2, 44 + 6 + 2},
		{PresetUNetConvblockOnly, 22, 44 + 14 + 6 + 2, 44 + 6 + 2},
	} {
		l, c, err := SelectUNet(tc.p, lin, conv)
		if err != nil {
			t.Fatal(err)
		}
		k3 := 0
		for _, x := range c {
			if x.Kernel > 1 {
				k3++
			}
		}
		if len(l) != tc.lins || len(c) != tc.convs || k3 != tc.k3x3 {
			t.Errorf("preset %s: %d Linears, %d convs (%d k×k), want %d, %d (%d)", tc.p, len(l), len(c), k3, tc.lins, tc.convs, tc.k3x3)
		}
	}
	if _, _, err := SelectUNet("attn", lin, conv); err == nil || !strings.Contains(err.Error(), `unknown preset "attn" (full, 2023, lora, attn-mlp`) {
		t.Errorf("unknown preset: %v", err)
	}
}

// TestSD15LoRAKeyList builds kohya's plain LoRA (preset lora) on the
// real-size SD 1.5 UNet at dim 8, alpha 4 and compares every key and shape
// with the transformer rows of the golden 2023 LoCon list (the same
// modules at the same rank: networks.lora and LyCORIS name and shape them
// alike), then checks module names as A1111, ComfyUI and kohya expect them.
func TestSD15LoRAKeyList(t *testing.T) {
	var want []string
	for _, row := range readTSV(t, "locon_unet_keys_2023.tsv") {
		if strings.Contains(row, "_attentions_") {
			want = append(want, row)
		}
	}
	if len(want) != 3*192 {
		t.Fatalf("golden 2023 list has %d transformer rows, want %d", len(want), 3*192)
	}
	lin, conv := sd15Layers(t)
	lin, conv, err := SelectUNet(PresetLoRA, lin, conv)
	if err != nil {
		t.Fatal(err)
	}
	e := tensor.NewEngine(cpu.New())
	net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(net.Modules) != 192 {
		t.Errorf("%d modules, want 192", len(net.Modules))
	}
	var got []string
	for _, en := range net.Entries {
		d := make([]string, len(en.Shape))
		for i, x := range en.Shape {
			d[i] = strconv.Itoa(x)
		}
		got = append(got, en.Key+"\t"+strings.Join(d, ","))
	}
	perBlock := map[string]int{}
	for _, m := range net.Modules {
		got = append(got, m.Name+".alpha\t")
		if m.Rank != 8 || m.Alpha != 4 {
			t.Errorf("%s: rank %d alpha %g, want 8 and 4", m.Name, m.Rank, m.Alpha)
		}
		i := strings.Index(m.Name, "_attentions_")
		j := strings.Index(m.Name[i+len("_attentions_"):], "_")
		perBlock[m.Name[:i+len("_attentions_")+j]]++
	}
	sort.Strings(got)
	if len(got) != len(want) {
		t.Errorf("%d keys, want %d", len(got), len(want))
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			t.Fatalf("key %d: got %q, want %q", i, got[i], want[i])
		}
	}
	if len(perBlock) != 16 {
		t.Errorf("%d transformer blocks, want 16: %v", len(perBlock), perBlock)
	}
	for b, n := range perBlock {
		if n != 12 {
			t.Errorf("%s: %d modules, want 12 (proj_in, proj_out, attn1/attn2 to_q/k/v/out_0, ff_net_0_proj, ff_net_2)", b, n)
		}
	}
	// Key names and shapes as loaders look them up.
	for key, shape := range map[string][]int{
		"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":                             {8, 320, 1, 1},
		"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight":                               {320, 8, 1, 1},
		"lora_unet_up_blocks_3_attentions_2_proj_out.lora_up.weight":                                {320, 8, 1, 1},
		"lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn2_to_k.lora_down.weight":     {8, 768},
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_up.weight":        {10240, 8},
		"lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_out_0.lora_down.weight":   {8, 1280},
		"lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight":     {8, 1280},
		"lora_unet_up_blocks_2_attentions_0_transformer_blocks_0_ff_net_2.lora_down.weight":         {8, 2560},
		"lora_unet_up_blocks_2_attentions_0_transformer_blocks_0_attn1_to_v.lora_up.weight":         {640, 8},
		"lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_out_0.lora_up.weight":   {320, 8},
		"lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_v.lora_down.weight":     {8, 768},
		"lora_unet_mid_block_attentions_0_proj_out.lora_down.weight":                                {8, 1280, 1, 1},
		"lora_unet_up_blocks_3_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_down.weight":    {8, 320},
		"lora_unet_up_blocks_3_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight":     {320, 8},
		"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k.lora_down.weight":     {8, 640},
		"lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_q.lora_down.weight":       {8, 1280},
		"lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_ff_net_0_proj.lora_up.weight":    {10240, 8},
		"lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_attn2_to_k.lora_up.weight":       {1280, 8},
		"lora_unet_up_blocks_2_attentions_2_transformer_blocks_0_ff_net_0_proj.lora_up.weight":      {5120, 8},
		"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_down.weight": {8, 320},
		"lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_ff_net_2.lora_up.weight":           {1280, 8},
		"lora_unet_up_blocks_3_attentions_1_transformer_blocks_0_attn1_to_q.lora_up.weight":         {320, 8},
		"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight":                             {8, 640, 1, 1},
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v.lora_down.weight":         {8, 768},
		"lora_unet_up_blocks_2_attentions_1_transformer_blocks_0_attn2_to_k.lora_down.weight":       {8, 768},
		"lora_unet_down_blocks_2_attentions_0_proj_in.lora_up.weight":                               {1280, 8, 1, 1},
		"lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight":     {1280, 8},
		"lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_v.lora_up.weight":         {320, 8},
		"lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_ff_net_2.lora_down.weight":       {8, 2560},
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight":           {1280, 8},
		"lora_unet_up_blocks_2_attentions_2_proj_out.lora_down.weight":                              {8, 640, 1, 1},
		"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_down.weight": {8, 320},
	} {
		en, ok := net.Entry(key)
		if !ok {
			t.Errorf("no tensor %s", key)
			continue
		}
		if !en.Shape.Equal(shape) {
			t.Errorf("%s: shape %v, want %v", key, en.Shape, shape)
		}
	}
	for _, m := range net.Modules {
		for _, bad := range []string{"resnets", "samplers", "conv_in", "conv_out", "time_emb"} {
			if strings.Contains(m.Name, bad) {
				t.Errorf("plain LoRA wraps %s", m.Name)
			}
		}
	}
}

// TestTinyLoRAPreset: on the tiny UNet of the golden cases (the same
// module tree as SD 1.5, smaller widths) the plain-LoRA selection is the
// 2023 selection's transformer layers, in the same order.
func TestTinyLoRAPreset(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	lin, conv := tinyUNet(t, e).Layers()
	l23, c23, err := SelectUNet(Preset2023, lin, conv)
	if err != nil {
		t.Fatal(err)
	}
	l, c, err := SelectUNet(PresetLoRA, lin, conv)
	if err != nil {
		t.Fatal(err)
	}
	inTransformer := func(key string) bool {
		return strings.Contains(key, ".1.proj_") || strings.Contains(key, ".transformer_blocks.")
	}
	var wl []*nn.Linear
	var wc []*nn.Conv2d
	for _, x := range l23 {
		if inTransformer(x.Key) {
			wl = append(wl, x)
		}
	}
	for _, x := range c23 {
		if inTransformer(x.Key) {
			wc = append(wc, x)
		}
	}
	if len(l) != 160 || len(c) != 32 || len(wl) != len(l) || len(wc) != len(c) {
		t.Fatalf("lora preset: %d Linears, %d convs; 2023's transformer layers: %d, %d; want 160 and 32", len(l), len(c), len(wl), len(wc))
	}
	for i := range l {
		if l[i] != wl[i] {
			t.Errorf("Linear %d: %s, want %s", i, l[i].Key, wl[i].Key)
		}
	}
	for i := range c {
		if c[i] != wc[i] || c[i].Kernel != 1 {
			t.Errorf("conv %d: %s (kernel %d), want %s", i, c[i].Key, c[i].Kernel, wc[i].Key)
		}
	}
}

// TestSelectTE: the text encoder's 72 Linears for every preset that wraps
// it, its 48 self-attention projections for attn-only, none for unet-*.
func TestSelectTE(t *testing.T) {
	var lins []*nn.Linear
	for i := 0; i < 12; i++ {
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"} {
			lins = append(lins, &nn.Linear{Key: TEPrefix + "text_model.encoder.layers." + strconv.Itoa(i) + "." + n})
		}
	}
	for p, want := range map[Preset]int{PresetFull: 72, Preset2023: 72, PresetLoRA: 72, PresetAttnMLP: 72, PresetFullLin: 72,
		PresetAttnOnly: 48, PresetUNetOnly: 0, PresetUNetTransformerOnly: 0, PresetUNetConvblockOnly: 0} {
		if got := len(SelectTE(p, lins)); got != want || p.WrapsTE() != (want > 0) {
			t.Errorf("preset %s: %d text-encoder layers (WrapsTE %v), want %d", p, got, p.WrapsTE(), want)
		}
	}
}
