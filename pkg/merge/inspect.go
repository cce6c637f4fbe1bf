package merge

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"loco/pkg/safetensors"
	"loco/pkg/sd"
)

// Info describes a network or checkpoint file (loco-merge inspect).
type Info struct {
	Path     string            `json:"path"`
	Kind     string            `json:"kind"` // "network" or "checkpoint"
	Tensors  int               `json:"tensors"`
	DTypes   map[string]int    `json:"dtypes"` // dtype → tensor count
	Metadata map[string]string `json:"metadata"`

	// Network files.
	Algorithm string         `json:"algorithm,omitempty"` // LoCon, LoCon+Tucker, LoHa, LoKr (joined with " + ")
	Modules   int            `json:"modules,omitempty"`
	Groups    []*Group       `json:"groups,omitempty"`
	NotSD1    []string       `json:"not_sd1,omitempty"` // modules that would not apply to SD 1.x, with why
	Params    int64          `json:"params"`
	Other     map[string]int `json:"other_keys,omitempty"` // keys loco-merge does not handle, by suffix

	// Checkpoints.
	Parts []*Part `json:"parts,omitempty"`
	SD1   string  `json:"sd1,omitempty"` // "ok" or why loco would refuse it
}

// Group summarises the modules of one kind (TE Linear, UNet Linear, UNet
// conv 1×1, UNet conv 3×3, …).
type Group struct {
	Name    string         `json:"name"`
	Modules int            `json:"modules"`
	Ranks   map[int]int    `json:"ranks"`  // rank → modules
	Alphas  map[string]int `json:"alphas"` // alpha (as printed) → modules
	Tucker  int            `json:"tucker,omitempty"`
}

// Part summarises one model of a checkpoint.
type Part struct {
	Name    string         `json:"name"`
	Prefix  string         `json:"prefix"`
	Tensors int            `json:"tensors"`
	Params  int64          `json:"params"`
	DTypes  map[string]int `json:"dtypes"`
}

var locoSuffixes = []string{".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".alpha",
	".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b"}

// Inspect reads a file's header (and a network's alpha values).
func Inspect(path string) (*Info, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info := &Info{Path: path, DTypes: map[string]int{}, Metadata: f.Metadata()}
	names := f.Names()
	info.Tensors = len(names)
	isNet := false
	for _, k := range names {
		ti, _ := f.Info(k)
		info.DTypes[string(ti.DType)]++
		info.Params += int64(ti.NumElements())
		if strings.HasPrefix(k, "lora_") || strings.Contains(k, ".hada_") || strings.Contains(k, ".lokr_") {
			isNet = true
		}
	}
	if isNet {
		return info, inspectNetwork(f, info)
	}
	info.Kind = "checkpoint"
	parts := []*Part{
		{Name: "UNet", Prefix: sd.UNetPrefix}, {Name: "text encoder", Prefix: "cond_stage_model."},
		{Name: "VAE", Prefix: sd.VAEPrefix}, {Name: "EMA", Prefix: "model_ema."}, {Name: "other", Prefix: ""},
	}
	for _, p := range parts {
		p.DTypes = map[string]int{}
	}
	for _, k := range names {
		ti, _ := f.Info(k)
		for _, p := range parts {
			if strings.HasPrefix(k, p.Prefix) {
				p.Tensors++
				p.Params += int64(ti.NumElements())
				p.DTypes[string(ti.DType)]++
				break
			}
		}
	}
	for _, p := range parts {
		if p.Tensors > 0 {
			info.Parts = append(info.Parts, p)
		}
	}
	info.SD1 = "ok"
	if ck, err := sd.OpenCheckpoint(path); err != nil {
		info.SD1 = err.Error()
	} else {
		if _, err := CheckpointTable(ck.F); err != nil {
			info.SD1 = err.Error()
		}
		ck.Close()
	}
	return info, nil
}

func inspectNetwork(f *safetensors.File, info *Info) error {
	info.Kind = "network"
	info.Other = map[string]int{}
	type mod struct {
		down, up, mid []int
		w1a, w1b      []int // LoHa (hada_w1_a [out, r], hada_w1_b [r, in·k·k])
		alpha         string
	}
	mods := map[string]*mod{}
	get := func(n string) *mod {
		if mods[n] == nil {
			mods[n] = &mod{}
		}
		return mods[n]
	}
	algos := map[string]bool{}
	for _, k := range f.Names() {
		ti, _ := f.Info(k)
		matched := false
		for _, s := range locoSuffixes {
			if !strings.HasSuffix(k, s) {
				continue
			}
			matched = true
			m := get(strings.TrimSuffix(k, s))
			switch s {
			case ".lora_down.weight":
				m.down = ti.Shape
			case ".lora_up.weight":
				m.up = ti.Shape
			case ".lora_mid.weight":
				m.mid = ti.Shape
			case ".hada_w1_a":
				m.w1a = ti.Shape
			case ".hada_w1_b":
				m.w1b = ti.Shape
			case ".alpha":
				if v, err := f.ReadFloat32(k); err == nil && len(v) == 1 {
					m.alpha = pyFloat(float64(v[0]))
				} else if iv, err := f.ReadInt64(k); err == nil && len(iv) == 1 {
					m.alpha = fmt.Sprint(iv[0])
				}
			}
		}
		if !matched {
			suf := k
			if i := strings.IndexByte(k, '.'); i >= 0 {
				suf = k[i+1:]
			}
			info.Other[suf]++
			switch {
			case strings.HasPrefix(suf, "hada_"):
				algos["LoHa"] = true
			case strings.HasPrefix(suf, "lokr_"):
				algos["LoKr"] = true
			}
		}
	}
	tab := SD15Table()
	groups := map[string]*Group{}
	var notSD1 []string
	for _, n := range sortedNames(mods) {
		m := mods[n]
		part := "UNet"
		if strings.HasPrefix(n, "lora_te") {
			part = "TE"
		}
		if m.w1a != nil || m.w1b != nil {
			if m.w1a == nil || m.w1b == nil || len(m.w1a) != 2 || len(m.w1b) != 2 {
				notSD1 = append(notSD1, n+": incomplete LoHa module")
				continue
			}
			info.Modules++
			algos["LoHa"] = true
			g := part + " LoHa"
			gr := groups[g]
			if gr == nil {
				gr = &Group{Name: g, Ranks: map[int]int{}, Alphas: map[string]int{}}
				groups[g] = gr
			}
			gr.Modules++
			gr.Ranks[m.w1b[0]]++
			a := m.alpha
			if a == "" {
				a = "none (= rank)"
			}
			gr.Alphas[a]++
			if l := tab.Layers[n]; l == nil {
				notSD1 = append(notSD1, n+": no SD 1.x layer of that name")
			} else if m.w1a[0] != l.Out() || m.w1b[1] != l.Cols() {
				notSD1 = append(notSD1, fmt.Sprintf("%s: LoHa shapes %v, %v do not fit layer %s %v", n, m.w1a, m.w1b, l.Key, l.Shape))
			}
			continue
		}
		if m.down == nil || m.up == nil {
			if m.down != nil || m.up != nil || m.mid != nil {
				notSD1 = append(notSD1, n+": lacks lora_down or lora_up")
			}
			continue
		}
		info.Modules++
		algos["LoCon"] = true
		if m.mid != nil {
			algos["LoCon+Tucker"] = true
		}
		g := part + " Linear"
		if len(m.down) == 4 {
			k := m.down[2]
			if m.mid != nil {
				k = m.mid[2]
			}
			g = fmt.Sprintf("%s conv %d×%d", part, k, k)
		}
		gr := groups[g]
		if gr == nil {
			gr = &Group{Name: g, Ranks: map[int]int{}, Alphas: map[string]int{}}
			groups[g] = gr
		}
		gr.Modules++
		gr.Ranks[m.down[0]]++
		a := m.alpha
		if a == "" {
			a = "none (= rank)"
		}
		gr.Alphas[a]++
		if m.mid != nil {
			gr.Tucker++
		}
		l := tab.Layers[n]
		if l == nil {
			notSD1 = append(notSD1, n+": no SD 1.x layer of that name")
			continue
		}
		fm := &moduleShapes{down: m.down, up: m.up, mid: m.mid}
		if err := fm.check(n, l); err != nil {
			notSD1 = append(notSD1, err.Error())
		}
	}
	if algos["LoCon+Tucker"] {
		delete(algos, "LoCon")
	}
	info.Algorithm = strings.Join(sortedNames(algos), " + ")
	for _, g := range sortedNames(groups) {
		info.Groups = append(info.Groups, groups[g])
	}
	info.NotSD1 = notSD1
	if len(info.Other) == 0 {
		info.Other = nil
	}
	return nil
}

type moduleShapes struct{ down, up, mid []int }

// check tests shapes against an SD 1.x layer as FactorsFor would, without
// reading the data.
func (s *moduleShapes) check(name string, l *Layer) error {
	r := s.down[0]
	wantUp := numel(s.up) == l.Out()*r && s.up[0] == l.Out()
	var wantDown bool
	if s.mid != nil {
		wantDown = l.Conv && l.Kernel > 1 && slices.Equal(s.down, []int{r, l.In(), 1, 1}) && slices.Equal(s.mid, []int{r, r, l.Kernel, l.Kernel})
	} else {
		wantDown = numel(s.down) == r*l.Cols() && s.down[1] == l.In() && l.Conv == (len(s.down) == 4)
	}
	if !wantUp || !wantDown {
		return fmt.Errorf("%s: lora_down %v, lora_up %v do not fit the SD 1.x weight %s %v", name, s.down, s.up, l.Key, l.Shape)
	}
	return nil
}

// WriteText prints the info for people.
func (info *Info) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s: %s, %d tensors, %d values, dtypes %s\n", info.Path, info.Kind, info.Tensors, info.Params, countList(info.DTypes))
	if info.Kind == "network" {
		fmt.Fprintf(w, "algorithm: %s, %d modules\n", info.Algorithm, info.Modules)
		for _, g := range info.Groups {
			ranks := make([]string, 0, len(g.Ranks))
			rs := make([]int, 0, len(g.Ranks))
			for r := range g.Ranks {
				rs = append(rs, r)
			}
			sort.Ints(rs)
			for _, r := range rs {
				ranks = append(ranks, fmt.Sprintf("%d (%d)", r, g.Ranks[r]))
			}
			t := ""
			if g.Tucker > 0 {
				t = fmt.Sprintf(", %d Tucker", g.Tucker)
			}
			fmt.Fprintf(w, "  %-16s %4d modules, rank %s, alpha %s%s\n", g.Name, g.Modules, strings.Join(ranks, ", "), countList(g.Alphas), t)
		}
		if len(info.Other) > 0 {
			fmt.Fprintf(w, "keys loco-merge does not handle: %s\n", countList(info.Other))
		}
		if len(info.NotSD1) == 0 {
			fmt.Fprintf(w, "SD 1.x: every module matches an SD 1.x layer\n")
		} else {
			fmt.Fprintf(w, "SD 1.x: %d module(s) would not apply:\n", len(info.NotSD1))
			for _, s := range info.NotSD1 {
				fmt.Fprintf(w, "  %s\n", s)
			}
		}
	} else {
		for _, p := range info.Parts {
			fmt.Fprintf(w, "  %-13s %5d tensors, %11d values, %s\n", p.Name, p.Tensors, p.Params, countList(p.DTypes))
		}
		fmt.Fprintf(w, "SD 1.x: %s\n", info.SD1)
	}
	if len(info.Metadata) > 0 {
		fmt.Fprintf(w, "metadata:\n")
		for _, k := range sortedNames(info.Metadata) {
			v := info.Metadata[k]
			if len(v) > 200 {
				v = v[:200] + fmt.Sprintf("… (%d bytes)", len(v))
			}
			fmt.Fprintf(w, "  %s = %s\n", k, v)
		}
	}
}

func countList(m map[string]int) string {
	var parts []string
	for _, k := range sortedNames(m) {
		parts = append(parts, fmt.Sprintf("%s (%d)", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
