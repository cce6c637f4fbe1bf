package lycoris

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

func readTSV(t *testing.T, name string) []string {
	t.Helper()
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found")
	}
	f, err := os.Open(filepath.Join(root, "sd15", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) >= 2 {
			out = append(out, fields[0]+"\t"+fields[1])
		}
	}
	sort.Strings(out)
	return out
}

// TestSD15KeyLists builds the LoCon on the shape-only SD 1.5 UNet with the
// recipe's ranks and compares every key and shape with the golden lists of
// both presets.
func TestSD15KeyLists(t *testing.T) {
	for _, tc := range []struct {
		preset Preset
		file   string
		layers int
	}{{PresetFull, "locon_unet_keys.tsv", 282}, {Preset2023, "locon_unet_keys_2023.tsv", 278}} {
		t.Run(string(tc.preset), func(t *testing.T) {
			want := readTSV(t, tc.file)
			u, err := unet.New(nn.NewBuilder(UNetPrefix, nil), unet.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			lin, conv := u.Layers()
			lin, conv, err = SelectUNet(tc.preset, lin, conv)
			if err != nil {
				t.Fatal(err)
			}
			e := tensor.NewEngine(cpu.New())
			net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if len(net.Modules) != tc.layers {
				t.Errorf("%d modules, want %d", len(net.Modules), tc.layers)
			}
			var got []string
			dims := func(s []int) string {
				p := make([]string, len(s))
				for i, d := range s {
					p[i] = strconv.Itoa(d)
				}
				return strings.Join(p, ",")
			}
			for _, en := range net.Entries {
				got = append(got, en.Key+"\t"+dims(en.Shape))
			}
			for _, m := range net.Modules {
				got = append(got, m.Name+".alpha\t")
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
		})
	}
}

func tinyUNet(t *testing.T, e *tensor.Engine) *unet.UNet {
	t.Helper()
	cfg := unet.Config{InChannels: 4, OutChannels: 4, ModelChannels: 32, AttentionResolutions: []int{4, 2, 1},
		NumResBlocks: 2, ChannelMult: []int{1, 2, 4, 4}, NumHeads: 8, TransformerDepth: 1, ContextDim: 32}
	u, err := unet.New(nn.NewBuilder(UNetPrefix, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSaveReadLoadRoundTrip(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	for _, tucker := range []bool{false, true} {
		u := tinyUNet(t, e)
		lin, conv := u.Layers()
		net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 2, Tucker: tucker}, lin, conv, rand.New(rand.NewPCG(5, 5)))
		if err != nil {
			t.Fatal(err)
		}
		// Non-zero up weights so that the round trip is not of zeros.
		r := rand.New(rand.NewPCG(6, 6))
		vals := make([]float32, net.Len())
		for i := range vals {
			vals[i] = float32(r.NormFloat64())
		}
		e.B.Upload(net.Params, vals)
		path := filepath.Join(t.TempDir(), "net.safetensors")
		md := map[string]string{"ss_network_dim": "8", "ss_output_name": "x"}
		if err := net.Save(path, safetensors.F32, md); err != nil {
			t.Fatal(err)
		}
		f, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["ss_output_name"] != "x" || len(f.Modules) != len(net.Modules) {
			t.Fatalf("metadata %v, %d modules", f.Metadata, len(f.Modules))
		}
		// sshs_model_hash is the sha256 of the file's data section.
		raw, _ := os.ReadFile(path)
		n := binary.LittleEndian.Uint64(raw[:8])
		sum := sha256.Sum256(raw[8+n:])
		if f.Metadata["sshs_model_hash"] != hex.EncodeToString(sum[:]) {
			t.Errorf("sshs_model_hash %s, data section %x", f.Metadata["sshs_model_hash"], sum)
		}
		if len(f.Metadata["sshs_legacy_hash"]) != 8 {
			t.Errorf("legacy hash %q", f.Metadata["sshs_legacy_hash"])
		}
		// Load into a fresh network and compare every value.
		u2 := tinyUNet(t, e)
		lin2, conv2 := u2.Layers()
		net2, err := New(e, Config{Dim: 8, Alpha: 1, ConvDim: 4, ConvAlpha: 1, Tucker: tucker}, lin2, conv2, rand.New(rand.NewPCG(7, 7)))
		if err != nil {
			t.Fatal(err)
		}
		if err := net2.Load(f); err != nil {
			t.Fatal(err)
		}
		for _, en := range net.Entries {
			a, _ := net.Values(en.Key, false)
			b, _ := net2.Values(en.Key, false)
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("%s[%d]: %v != %v", en.Key, i, a[i], b[i])
				}
			}
		}
		for i, m := range net2.Modules {
			if m.Alpha != net.Modules[i].Alpha {
				t.Fatalf("%s: alpha %v, want %v", m.Name, m.Alpha, net.Modules[i].Alpha)
			}
		}
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ts map[string][]int) string {
		var list []safetensors.Tensor
		for k, s := range ts {
			n := 1
			for _, d := range s {
				n *= d
			}
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i) + 1
			}
			x, _ := safetensors.FromFloat32(k, safetensors.F16, s, v)
			list = append(list, x)
		}
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, list, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, tc := range map[string]struct {
		ts   map[string][]int
		want string
	}{
		"lokr":     {map[string][]int{"lora_unet_x.lokr_w1": {4, 2}}, "not a LoCon"},
		"loha":     {map[string][]int{"lora_unet_x.hada_w1_a": {4, 2}}, "lacks one of"},
		"mixed":    {map[string][]int{"lora_unet_x.hada_w1_a": {4, 2}, "lora_unet_x.lora_down.weight": {2, 3}}, "mixes"},
		"noup":     {map[string][]int{"lora_unet_x.lora_down.weight": {4, 2}}, "lacks"},
		"mismatch": {map[string][]int{"lora_unet_x.lora_down.weight": {4, 2}, "lora_unet_x.lora_up.weight": {3, 5}}, "does not match"},
	} {
		_, err := ReadFile(write(name+".safetensors", tc.ts))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestReadGoldenFile reads the golden LoCon and loads it into the tiny UNet's network.
func TestReadGoldenFile(t *testing.T) {
	golden.ForEach(t, "locon_unet", func(t *testing.T, c *golden.Case) {
		f, err := ReadFile(c.Path("locon.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["ss_network_module"] != "lycoris.kohya" || len(f.Modules) != 282 {
			t.Errorf("metadata %q, %d modules", f.Metadata["ss_network_module"], len(f.Modules))
		}
		e := tensor.NewEngine(cpu.New())
		u := tinyUNet(t, e)
		lin, conv := u.Layers()
		net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := net.Load(f); err != nil {
			t.Fatal(err)
		}
	})
}
