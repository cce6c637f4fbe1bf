package lycoris

import (
	"fmt"
	"strconv"
	"strings"
)

// Key prefixes of a single-file SD 1.x checkpoint.
const (
	UNetPrefix = "model.diffusion_model."
	TEPrefix   = "cond_stage_model.transformer."
)

// resnetNames maps LDM ResBlock children to diffusers ResnetBlock2D names.
var resnetNames = map[string]string{
	"in_layers.0":     "norm1",
	"in_layers.2":     "conv1",
	"emb_layers.1":    "time_emb_proj",
	"out_layers.0":    "norm2",
	"out_layers.3":    "conv2",
	"skip_connection": "conv_shortcut",
}

// DiffusersUNetPath converts an LDM UNet module path (without the
// "model.diffusion_model." prefix, e.g. "input_blocks.4.1.proj_in") into
// the diffusers module path kohya names are made from
// ("down_blocks.1.attentions.0.proj_in"), for SD 1.x with two ResBlocks per
// level (spec/locon.md, golden/sd15/unet_ldm_to_diffusers.tsv).
func DiffusersUNetPath(ldm string) (string, error) {
	bad := func() (string, error) { return "", fmt.Errorf("lycoris: no diffusers name for UNet module %q", ldm) }
	parts := strings.Split(ldm, ".")
	switch {
	case ldm == "time_embed.0":
		return "time_embedding.linear_1", nil
	case ldm == "time_embed.2":
		return "time_embedding.linear_2", nil
	case ldm == "out.0":
		return "conv_norm_out", nil
	case ldm == "out.2":
		return "conv_out", nil
	case ldm == "input_blocks.0.0":
		return "conv_in", nil
	}
	if len(parts) < 2 {
		return bad()
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		return bad()
	}
	m, rest := 0, parts[2:]
	if parts[0] != "middle_block" { // middle_block.N.<child>; the others have two indices
		if len(parts) < 3 {
			return bad()
		}
		if m, err = strconv.Atoi(parts[2]); err != nil {
			return bad()
		}
		rest = parts[3:]
	}
	resnet := func(base string) (string, error) {
		if len(rest) == 0 {
			return base, nil
		}
		inner := strings.Join(rest, ".")
		name, ok := resnetNames[inner]
		if !ok {
			return bad()
		}
		return base + "." + name, nil
	}
	attn := func(base string) (string, error) {
		if len(rest) == 0 {
			return base, nil
		}
		return base + "." + strings.Join(rest, "."), nil
	}
	switch parts[0] {
	case "input_blocks":
		if n < 1 {
			return bad()
		}
		if n%3 == 0 { // downsampler: input_blocks.{3+3i}.0.op
			if m != 0 || strings.Join(rest, ".") != "op" {
				return bad()
			}
			return fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", n/3-1), nil
		}
		i, j := (n-1)/3, (n-1)%3
		switch m {
		case 0:
			return resnet(fmt.Sprintf("down_blocks.%d.resnets.%d", i, j))
		case 1:
			return attn(fmt.Sprintf("down_blocks.%d.attentions.%d", i, j))
		}
	case "middle_block":
		switch n {
		case 0:
			return resnet("mid_block.resnets.0")
		case 1:
			return attn("mid_block.attentions.0")
		case 2:
			return resnet("mid_block.resnets.1")
		}
	case "output_blocks":
		i, j := n/3, n%3
		switch {
		case m == 0:
			return resnet(fmt.Sprintf("up_blocks.%d.resnets.%d", i, j))
		case len(rest) == 1 && rest[0] == "conv": // upsampler, index 1 or 2
			return fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", i), nil
		case m == 1:
			return attn(fmt.Sprintf("up_blocks.%d.attentions.%d", i, j))
		}
	}
	return bad()
}

// KohyaName is the LoCon module name of a layer given its full checkpoint
// module key: "lora_unet_" + diffusers path, or "lora_te_" + the Hugging
// Face path under CLIPTextModel, with dots replaced by underscores.
func KohyaName(moduleKey string) (string, error) {
	switch {
	case strings.HasPrefix(moduleKey, UNetPrefix):
		p, err := DiffusersUNetPath(strings.TrimPrefix(moduleKey, UNetPrefix))
		if err != nil {
			return "", err
		}
		return "lora_unet_" + strings.ReplaceAll(p, ".", "_"), nil
	case strings.HasPrefix(moduleKey, TEPrefix):
		return "lora_te_" + strings.ReplaceAll(strings.TrimPrefix(moduleKey, TEPrefix), ".", "_"), nil
	}
	return "", fmt.Errorf("lycoris: module %q is neither UNet nor text encoder", moduleKey)
}
