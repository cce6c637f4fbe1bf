package sd

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/golden"
)

// readTSV reads the first two columns of a golden key list.
func readTSV(t *testing.T, name string) [][2]string {
	t.Helper()
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found: skipping the SD 1.5 key tables")
	}
	f, err := os.Open(filepath.Join(root, "sd15", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		a, b, _ := strings.Cut(strings.TrimSpace(sc.Text()), "\t")
		if a != "" {
			out = append(out, [2]string{a, b})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s is empty", name)
	}
	return out
}

// roundTrip checks that every key of the list maps to exactly one
// diffusers key (no two keys share one) and back to itself, and returns
// the map.
func roundTrip(t *testing.T, tab *KeyTable, prefix string, rows [][2]string) map[string]Mapped {
	t.Helper()
	got := map[string]Mapped{}
	seen := map[string]string{}
	for _, r := range rows {
		k, ok := strings.CutPrefix(r[0], prefix)
		if !ok {
			t.Fatalf("key %s lacks the prefix %s", r[0], prefix)
		}
		m, ok := tab.ToDiffusers(k)
		if !ok {
			t.Errorf("%s: no diffusers name", r[0])
			continue
		}
		if prev, dup := seen[m.Key]; dup {
			t.Errorf("%s and %s both map to %s", prev, r[0], m.Key)
		}
		seen[m.Key] = r[0]
		back, ok := tab.FromDiffusers(m.Key)
		if !ok || back.Key != k || back.Squeeze != m.Squeeze {
			t.Errorf("%s -> %s -> %+v (ok %v), want it back", k, m.Key, back, ok)
		}
		if m.Squeeze && !strings.HasSuffix(r[1], ",1,1") {
			t.Errorf("%s (shape %s) marked squeezed but is not a 1×1 kernel", r[0], r[1])
		}
		got[r[0]] = m
	}
	return got
}

func TestDiffusersTablesUNet(t *testing.T) {
	tab, err := UNetTable(SD15UNetLayout())
	if err != nil {
		t.Fatal(err)
	}
	keys := readTSV(t, "unet_keys.tsv")
	got := roundTrip(t, tab, UNetPrefix, keys)
	if len(got) != 686 {
		t.Errorf("mapped %d UNet keys, want 686", len(got))
	}
	// The module table of the golden set (LoCon-bearing layers) must agree.
	mods := readTSV(t, "unet_ldm_to_diffusers.tsv")
	for _, r := range mods {
		for _, suffix := range []string{".weight", ".bias"} {
			m, ok := got[r[0]+suffix]
			if !ok {
				continue // e.g. proj_in/out weights only
			}
			if m.Key != r[1]+suffix {
				t.Errorf("%s%s -> %s, golden table says %s%s", r[0], suffix, m.Key, r[1], suffix)
			}
		}
		if _, ok := got[r[0]+".weight"]; !ok {
			t.Errorf("golden module %s has no weight in the key list", r[0])
		}
	}
	// Spot checks of names the golden module table does not cover.
	for ldm, hf := range map[string]string{
		"input_blocks.1.0.in_layers.0.weight":                      "down_blocks.0.resnets.0.norm1.weight",
		"output_blocks.3.0.out_layers.0.bias":                      "up_blocks.1.resnets.0.norm2.bias",
		"input_blocks.4.0.skip_connection.weight":                  "down_blocks.1.resnets.0.conv_shortcut.weight",
		"middle_block.1.transformer_blocks.0.norm3.weight":         "mid_block.attentions.0.transformer_blocks.0.norm3.weight",
		"middle_block.2.emb_layers.1.bias":                         "mid_block.resnets.1.time_emb_proj.bias",
		"output_blocks.11.1.norm.weight":                           "up_blocks.3.attentions.2.norm.weight",
		"out.0.weight":                                             "conv_norm_out.weight",
		"output_blocks.2.1.conv.bias":                              "up_blocks.0.upsamplers.0.conv.bias",
		"input_blocks.7.1.transformer_blocks.0.ff.net.0.proj.bias": "down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj.bias",
	} {
		if m, ok := tab.ToDiffusers(ldm); !ok || m.Key != hf || m.Squeeze {
			t.Errorf("%s -> %+v, want %s", ldm, m, hf)
		}
	}
	for _, bad := range []string{"input_blocks.1.0.in_layers.1.weight", "nothing.weight", "input_blocks.12.0.op.weight"} {
		if m, ok := tab.ToDiffusers(bad); ok {
			t.Errorf("%s mapped to %s, want no mapping", bad, m.Key)
		}
	}
	if m, ok := tab.FromDiffusers("down_blocks.0.resnets.0.norm3.weight"); ok {
		t.Errorf("unknown diffusers child mapped to %s", m.Key)
	}
}

func TestDiffusersTablesVAE(t *testing.T) {
	tab, err := VAETable(SD15VAELayout())
	if err != nil {
		t.Fatal(err)
	}
	keys := readTSV(t, "vae_keys.tsv")
	got := roundTrip(t, tab, VAEPrefix, keys)
	if len(got) != len(keys) {
		t.Errorf("mapped %d of %d VAE keys", len(got), len(keys))
	}
	squeezed := 0
	for _, m := range got {
		if m.Squeeze {
			squeezed++
		}
	}
	if squeezed != 8 { // q, k, v, proj_out weights of two mid attentions
		t.Errorf("%d squeezed weights, want 8", squeezed)
	}
	for ldm, hf := range map[string]string{
		"decoder.up.3.block.0.conv1.weight":          "decoder.up_blocks.0.resnets.0.conv1.weight",
		"decoder.up.0.block.2.norm2.bias":            "decoder.up_blocks.3.resnets.2.norm2.bias",
		"decoder.up.3.upsample.conv.weight":          "decoder.up_blocks.0.upsamplers.0.conv.weight",
		"decoder.up.1.upsample.conv.bias":            "decoder.up_blocks.2.upsamplers.0.conv.bias",
		"encoder.down.2.downsample.conv.weight":      "encoder.down_blocks.2.downsamplers.0.conv.weight",
		"encoder.down.1.block.0.nin_shortcut.weight": "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
		"encoder.mid.attn_1.proj_out.weight":         "encoder.mid_block.attentions.0.to_out.0.weight",
		"decoder.mid.attn_1.norm.bias":               "decoder.mid_block.attentions.0.group_norm.bias",
		"decoder.mid.block_2.conv2.weight":           "decoder.mid_block.resnets.1.conv2.weight",
		"encoder.norm_out.weight":                    "encoder.conv_norm_out.weight",
		"quant_conv.weight":                          "quant_conv.weight",
	} {
		if m, ok := tab.ToDiffusers(ldm); !ok || m.Key != hf {
			t.Errorf("%s -> %+v, want %s", ldm, m, hf)
		}
	}
	// Older diffusers names of the attention.
	for hf, ldm := range map[string]string{
		"encoder.mid_block.attentions.0.query.weight":   "encoder.mid.attn_1.q.weight",
		"decoder.mid_block.attentions.0.proj_attn.bias": "decoder.mid.attn_1.proj_out.bias",
	} {
		if m, ok := tab.FromDiffusers(hf); !ok || m.Key != ldm {
			t.Errorf("%s -> %+v, want %s", hf, m, ldm)
		}
	}
	if a := tab.aliasesOf("decoder.mid.attn_1.k.weight"); len(a) != 1 || a[0] != "decoder.mid_block.attentions.0.key.weight" {
		t.Errorf("aliases %v", a)
	}
}

func TestDiffusersTablesCLIP(t *testing.T) {
	tab := CLIPTable()
	keys := readTSV(t, "clip_keys.tsv")
	got := roundTrip(t, tab, CLIPModelPrefix, keys)
	for ldm, m := range got {
		if "cond_stage_model.transformer."+m.Key != ldm || m.Squeeze {
			t.Errorf("%s -> %+v, want the same name below the prefix", ldm, m)
		}
	}
	if _, ok := tab.ToDiffusers("vision_model.post_layernorm.weight"); ok {
		t.Error("a vision-tower key mapped")
	}
}

// A layout other than SD 1.5's still gives a one-to-one table.
func TestDiffusersTablesOtherLayout(t *testing.T) {
	tab, err := UNetTable(UNetLayout{Levels: 3, ResBlocks: 1, Attn: []bool{false, true, true}})
	if err != nil {
		t.Fatal(err)
	}
	for ldm, hf := range map[string]string{
		"input_blocks.2.0.op.weight":           "down_blocks.0.downsamplers.0.conv.weight",
		"input_blocks.3.1.proj_in.weight":      "down_blocks.1.attentions.0.proj_in.weight",
		"output_blocks.1.2.conv.weight":        "up_blocks.0.upsamplers.0.conv.weight",
		"output_blocks.5.0.in_layers.2.weight": "up_blocks.2.resnets.1.conv1.weight",
		"output_blocks.3.2.conv.weight":        "up_blocks.1.upsamplers.0.conv.weight",
	} {
		if m, ok := tab.ToDiffusers(ldm); !ok || m.Key != hf {
			t.Errorf("%s -> %+v, want %s", ldm, m, hf)
		}
	}
	if _, err := UNetTable(UNetLayout{Levels: 2, ResBlocks: 2, Attn: []bool{true}}); err == nil {
		t.Error("inconsistent layout accepted")
	}
}
