package sd_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// TestOpen opens both kinds of base model through sd.Open and checks that a
// diffusers folder written from the golden models shows exactly the golden
// single-file names and shapes.
func TestOpen(t *testing.T) {
	uc, vc, cc := tinyCases(t)
	dir := t.TempDir()
	writeDiffusers(t, dir, uc, vc, cc, folderOpts{})
	m, err := sd.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Diffusers == nil || m.Checkpoint != nil {
		t.Fatalf("Open(%s) = %+v, want a diffusers model", dir, m)
	}
	var want []string
	shapes := map[string][]int{}
	for _, c := range []string{uc.Path("model.safetensors"), vc.Path("model.safetensors"), cc.Path("model.safetensors")} {
		f, err := safetensors.Open(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range f.Names() {
			i, _ := f.Info(k)
			shapes[k] = i.Shape
		}
		want = append(want, f.Names()...)
		f.Close()
	}
	slices.Sort(want)
	got := m.Names()
	if !slices.Equal(got, want) {
		t.Fatalf("Names: %d keys, want the %d golden keys", len(got), len(want))
	}
	for _, k := range got {
		i, ok := m.Info(k)
		if !ok || !slices.Equal(i.Shape, shapes[k]) {
			t.Errorf("Info(%s) = %v, %v; want shape %v", k, i.Shape, ok, shapes[k])
		}
	}

	// The single file of the golden UNet opens as a checkpoint.
	ck, err := sd.Open(uc.Path("model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if ck.Checkpoint == nil {
		t.Fatal("a single file did not open as a checkpoint")
	}
	var cfg unet.Config
	cfg.InChannels, cfg.OutChannels, cfg.ModelChannels, cfg.NumResBlocks = 4, 4, 32, 2
	cfg.AttentionResolutions, cfg.ChannelMult, cfg.NumHeads, cfg.TransformerDepth, cfg.ContextDim = []int{4, 2, 1}, []int{1, 2, 4, 4}, 8, 1, 32
	for _, mm := range []*sd.Model{m, ck} {
		src := mm.Source(tensor.NewEngine(cpu.New()), tensor.F32)
		if _, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), cfg); err != nil {
			t.Fatal(err)
		}
		if un := src.Unexpected(sd.UNetPrefix); len(un) > 0 {
			t.Errorf("%s: unexpected %v", mm.Path, un)
		}
	}

	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "readme.txt"), []byte("x"), 0o644)
	if _, err := sd.Open(empty); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("Open(a plain folder): %v", err)
	}
}
