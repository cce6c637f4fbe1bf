package train

import (
	"fmt"
	"sort"
	"strings"

	"loco/pkg/lycoris"
)

// WeightsReport says what LoadNetworkWeights did.
type WeightsReport struct {
	Path       string
	Loaded     int      // modules taken from the file
	Missing    []string // network modules not in the file (initialised as usual)
	Unexpected []string // file modules this network does not have (ignored)
}

func (w *WeightsReport) String() string {
	s := fmt.Sprintf("network weights %s: %d modules loaded", w.Path, w.Loaded)
	if n := len(w.Missing); n > 0 {
		s += fmt.Sprintf(", %d not in the file (freshly initialised, e.g. %s)", n, w.Missing[0])
	}
	if n := len(w.Unexpected); n > 0 {
		s += fmt.Sprintf(", %d in the file but not in this network (ignored, e.g. %s)", n, w.Unexpected[0])
	}
	return s
}

// LoadNetworkWeights starts net from the network file at path as kohya's
// --network_weights does (load_state_dict with strict=False into a freshly
// built network): a module present in both takes the file's factors and
// alpha; its tensors must have exactly the network's shapes (same ranks,
// Tucker or not, LoCon or LoHa), else it is an error naming the tensor.
// Modules only in the network keep their initialisation and modules only
// in the file are ignored; both are listed in the report. A file sharing
// no module with the network is an error.
func LoadNetworkWeights(net *lycoris.Network, path string) (*WeightsReport, error) {
	f, err := lycoris.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--network-weights: %w", err)
	}
	rep := &WeightsReport{Path: path}
	inNet := map[string]bool{}
	for _, m := range net.Modules {
		inNet[m.Name] = true
		fm, ok := f.Module(m.Name)
		if !ok {
			rep.Missing = append(rep.Missing, m.Name)
			continue
		}
		type part struct {
			suffix string
			v      []float32
			shape  []int
		}
		var parts []part
		if fm.IsLoHa() {
			parts = []part{{".hada_w1_a", fm.W1a, fm.W1aShape}, {".hada_w1_b", fm.W1b, fm.W1bShape},
				{".hada_w2_a", fm.W2a, fm.W2aShape}, {".hada_w2_b", fm.W2b, fm.W2bShape}}
		} else {
			parts = []part{{".lora_down.weight", fm.Down, fm.DownShape}, {".lora_up.weight", fm.Up, fm.UpShape}}
			if fm.Mid != nil {
				parts = append(parts, part{".lora_mid.weight", fm.Mid, fm.MidShape})
			}
		}
		// The file's tensors must be exactly the module's.
		nNet := 0
		for _, en := range net.Entries {
			if strings.HasPrefix(en.Key, m.Name+".") {
				nNet++
			}
		}
		if len(parts) != nNet {
			return nil, fmt.Errorf("%s: module %s has %d tensors (%s), this network's has %d (check algo and use_tucker)",
				path, m.Name, len(parts), suffixes(parts, func(p part) string { return p.suffix }), nNet)
		}
		for _, p := range parts {
			en, ok := net.Entry(m.Name + p.suffix)
			if !ok {
				return nil, fmt.Errorf("%s: %s%s: this network's module has no such tensor (check algo and use_tucker)", path, m.Name, p.suffix)
			}
			if !en.Shape.Equal(p.shape) {
				return nil, fmt.Errorf("%s: %s%s has shape %v, this network wants %v (check network_dim and conv_dim)", path, m.Name, p.suffix, p.shape, []int(en.Shape))
			}
			if err := net.SetValues(m.Name+p.suffix, p.v); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		if fm.HasAlpha && fm.Alpha > 0 {
			m.Alpha = fm.Alpha
		}
		rep.Loaded++
	}
	for _, fm := range f.Modules {
		if !inNet[fm.Name] {
			rep.Unexpected = append(rep.Unexpected, fm.Name)
		}
	}
	sort.Strings(rep.Missing)
	if rep.Loaded == 0 {
		return nil, fmt.Errorf("%s: none of its %d modules is in this network (is it an SD 1.x LoCon of the same parts, UNet/text encoder?)", path, len(f.Modules))
	}
	return rep, nil
}

func suffixes[T any](xs []T, f func(T) string) string {
	var s []string
	for _, x := range xs {
		s = append(s, strings.TrimPrefix(f(x), "."))
	}
	return strings.Join(s, ", ")
}
