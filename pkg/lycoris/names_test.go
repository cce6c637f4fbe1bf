package lycoris

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/golden"
)

func TestDiffusersUNetPathTable(t *testing.T) {
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found: skipping the LDM→diffusers table")
	}
	f, err := os.Open(filepath.Join(root, "sd15", "unet_ldm_to_diffusers.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		if len(fields) != 2 {
			continue
		}
		n++
		got, err := DiffusersUNetPath(strings.TrimPrefix(fields[0], UNetPrefix))
		if err != nil || got != fields[1] {
			t.Errorf("%s: got %q (%v), want %q", fields[0], got, err, fields[1])
		}
	}
	if n != 282 {
		t.Errorf("table has %d rows, want 282", n)
	}
}

func TestKohyaNameErrors(t *testing.T) {
	for _, k := range []string{"first_stage_model.encoder.conv_in", "model.diffusion_model.input_blocks.x.0", "model.diffusion_model.input_blocks.3.1.foo"} {
		if _, err := KohyaName(k); err == nil {
			t.Errorf("%s: no error", k)
		}
	}
	got, err := KohyaName("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1")
	if err != nil || got != "lora_te_text_model_encoder_layers_3_mlp_fc1" {
		t.Errorf("TE name: %q %v", got, err)
	}
}
