package train

import (
	"fmt"
	"sort"
	"strings"

	"loco/pkg/lycoris"
	"loco/pkg/nn"
)

// WeightsReport says what LoadNetworkWeights did.
type WeightsReport struct {
	Path       string
	Loaded     int      // modules taken from the file
	Missing    []string // network modules not in the file (initialised as usual)
	Unexpected []string // file modules this network does not have (ignored)
	// Alphas lists the modules whose alpha the file changed ("name: a → b").
	Alphas []string
}

func (w *WeightsReport) String() string {
	s := fmt.Sprintf("network weights %s: %d modules loaded", w.Path, w.Loaded)
	if n := len(w.Missing); n > 0 {
		s += fmt.Sprintf(", %d not in the file (freshly initialised, e.g. %s)", n, w.Missing[0])
	}
	if n := len(w.Unexpected); n > 0 {
		s += fmt.Sprintf(", %d in the file but not in this network (ignored, e.g. %s)", n, w.Unexpected[0])
	}
	if n := len(w.Alphas); n > 0 {
		s += fmt.Sprintf("; %d take the file's alpha instead of the configured one (e.g. %s; sd-scripts would train them at the configured alpha/rank but save the file's alpha)", n, w.Alphas[0])
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
			if fm.Alpha != m.Alpha {
				rep.Alphas = append(rep.Alphas, fmt.Sprintf("%s: %s → %s", m.Name, trimFloat(float64(m.Alpha)), trimFloat(float64(fm.Alpha))))
			}
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

// DimsFromWeights does kohya's --dim_from_weights for opt (when
// opt.DimFromWeights is set): like LyCORIS' and networks.lora's
// create_network_from_weights, the network is built as the NetworkWeights
// file is — ranks from each module's lora_down (hada_w1_b for LoHa),
// alphas from its alpha tensor (alpha = rank where a module has none), the
// algorithm (LoCon or LoHa) and the Tucker layout (lora_mid) from its
// tensors, and no dropout (those builders pass none). It runs before New,
// on the models New will wrap, and rewrites opt: NetworkDim, ConvDim
// (network_dim covers Linear and 1×1 conv modules, conv_dim k×k ones),
// NetworkAlpha and ConvAlpha (the file's alpha when every module of the
// kind has the same one, else 0 = rank, the others being set per module by
// LoadNetworkWeights), Algo, Tucker, the dropouts, and the part learning
// rates: a part (UNet, text encoder) without modules in the file gets none
// (its LR set to 0), as those builders create modules only for the file's
// names. The configured values are kept for the metadata.
//
// When ranks differ between modules of one kind (a dynamically resized
// network), or the file covers only part of the selected layers of a
// trained part (and is not exactly another preset's set — full, 2023 or
// lora; for networks.lora 2023 or lora —, which is then selected, so a
// plain kohya LoRA file is built as preset lora), opt.ModuleRanks limits the network to the file's modules at
// their ranks. Errors name modules: LoCon and LoHa modules mixed, Tucker
// and plain k×k modules mixed, and file modules of a trained part that
// match no layer of the preset. The returned notes say what was taken.
func DimsFromWeights(opt *Options, m Models) ([]string, error) {
	if !opt.DimFromWeights {
		return nil, nil
	}
	if opt.NetworkWeights == "" {
		return nil, fmt.Errorf("dim_from_weights needs network_weights")
	}
	path := opt.NetworkWeights
	f, err := lycoris.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--dim-from-weights: %w", err)
	}
	conf := *opt
	conf.configured = nil
	var notes []string
	inFile := map[string]*lycoris.FileModule{}
	hasTE, hasUNet := false, false
	for _, fm := range f.Modules {
		inFile[fm.Name] = fm
		hasTE = hasTE || strings.HasPrefix(fm.Name, "lora_te_")
		hasUNet = hasUNet || strings.HasPrefix(fm.Name, "lora_unet_")
	}
	uLR, teLR := opt.LRs()
	if teLR > 0 && !hasTE {
		opt.TextEncoderLR, teLR = 0, 0
		notes = append(notes, "the file has no text-encoder modules: the text encoder is not trained (as create_network_from_weights builds none)")
	}
	if uLR > 0 && !hasUNet {
		opt.UNetLR, uLR = 0, 0
		notes = append(notes, "the file has no UNet modules: the UNet is not trained (as create_network_from_weights builds none)")
	}
	if uLR == 0 && teLR == 0 {
		return nil, fmt.Errorf("%s: --dim-from-weights: the file has no modules for the parts with a learning rate", path)
	}
	// The layers New will wrap, by kohya name, with their kernel size.
	type layer struct {
		name   string
		kernel int
	}
	named := func(lins []*nn.Linear, convs []*nn.Conv2d) ([]layer, error) {
		var out []layer
		for _, l := range lins {
			n, err := lycoris.KohyaName(l.Key)
			if err != nil {
				return nil, err
			}
			out = append(out, layer{n, 1})
		}
		for _, c := range convs {
			n, err := lycoris.KohyaName(c.Key)
			if err != nil {
				return nil, err
			}
			out = append(out, layer{n, c.Kernel})
		}
		return out, nil
	}
	// unetExtra counts the file's UNet modules that are not among ls.
	unetExtra := func(ls []layer) int {
		in := map[string]bool{}
		for _, l := range ls {
			in[l.name] = true
		}
		n := 0
		for _, fm := range f.Modules {
			if strings.HasPrefix(fm.Name, "lora_unet_") && !in[fm.Name] {
				n++
			}
		}
		return n
	}
	missing := func(ls []layer) (miss []string) {
		for _, l := range ls {
			if inFile[l.name] == nil {
				miss = append(miss, l.name)
			}
		}
		return miss
	}
	var layers []layer
	partial := false // some selected layers have no module in the file
	if uLR > 0 {
		l, c := m.UNet.Layers()
		var sel []layer
		var miss []string
		for i, p := range presetCandidates(opt) {
			sl, sc, err := lycoris.SelectUNet(lycoris.Preset(p), l, c)
			if err != nil {
				return nil, err
			}
			ls, err := named(sl, sc)
			if err != nil {
				return nil, err
			}
			mi := missing(ls)
			if i == 0 {
				sel, miss = ls, mi
			}
			if len(mi) == 0 && unetExtra(ls) == 0 {
				sel, miss = ls, nil
				if p != opt.Preset {
					notes = append(notes, fmt.Sprintf("the file's UNet modules are preset %s's set: preset %s", p, p))
					opt.Preset = p
				}
				break
			}
		}
		if len(miss) > 0 {
			partial = true
			notes = append(notes, fmt.Sprintf("%d of the %d UNet layers of preset %s have no module in the file (e.g. %s): they get none, as create_network_from_weights builds only the file's modules",
				len(miss), len(sel), opt.Preset, miss[0]))
		}
		layers = append(layers, sel...)
	}
	if teLR > 0 {
		var lins []*nn.Linear
		for _, nl := range m.TE.Linears() {
			lins = append(lins, nl.L)
		}
		ls, err := named(lins, nil)
		if err != nil {
			return nil, err
		}
		if miss := missing(ls); len(miss) > 0 {
			partial = true
			notes = append(notes, fmt.Sprintf("%d of the %d text-encoder layers have no module in the file (e.g. %s): they get none, as create_network_from_weights builds only the file's modules",
				len(miss), len(ls), miss[0]))
		}
		layers = append(layers, ls...)
	}
	// One rank (and, where uniform, one alpha) per kind; algorithm and
	// Tucker from the tensors.
	type kind struct {
		first          string
		r              int
		alpha          float32
		alphaSet, same bool
		n              int
	}
	var lin, conv kind
	loha, locon, tucker, plain := "", "", "", ""
	ranks := map[string]int{} // the file's modules on the selected layers
	varied := ""              // a note when ranks differ within a kind
	for _, l := range layers {
		fm := inFile[l.name]
		if fm == nil {
			continue
		}
		ranks[l.name] = fm.Rank()
		k := &lin
		if l.kernel > 1 {
			k = &conv
		}
		r := fm.Rank()
		if k.n == 0 {
			k.r, k.first, k.same = r, l.name, true
			k.alpha, k.alphaSet = fm.Alpha, fm.HasAlpha && fm.Alpha != 0
		} else {
			if r != k.r && varied == "" {
				varied = fmt.Sprintf("ranks differ between modules (%s %d, %s %d): each module takes its own", k.first, k.r, l.name, r)
			}
			if !(fm.HasAlpha && fm.Alpha != 0) || !k.alphaSet || fm.Alpha != k.alpha {
				k.same = false
			}
		}
		k.n++
		if fm.IsLoHa() {
			loha = l.name
		} else {
			locon = l.name
			if l.kernel > 1 {
				if fm.Mid != nil {
					tucker = l.name
				} else {
					plain = l.name
				}
			}
		}
	}
	if loha != "" && locon != "" {
		return nil, fmt.Errorf("%s: --dim-from-weights: LoHa (%s) and LoCon (%s) modules mixed: loco's network has one algorithm", path, loha, locon)
	}
	if tucker != "" && plain != "" {
		return nil, fmt.Errorf("%s: --dim-from-weights: %s has lora_mid (Tucker), %s has not: loco's network is Tucker or not", path, tucker, plain)
	}
	alphaOf := func(k kind) float64 {
		if k.same && k.alphaSet {
			return float64(k.alpha)
		}
		return 0
	}
	if lin.n > 0 {
		opt.NetworkDim, opt.NetworkAlpha = lin.r, alphaOf(lin)
	}
	if conv.n > 0 {
		opt.ConvDim, opt.ConvAlpha = conv.r, alphaOf(conv)
	}
	if lin.n == 0 {
		// No Linear or 1×1 module selected (cannot happen with SD 1.x
		// presets); keep network_dim for New's check.
		opt.NetworkAlpha = 0
	}
	opt.Algo = "locon"
	if loha != "" {
		opt.Algo = "loha"
	}
	opt.Tucker = tucker != ""
	if partial || varied != "" {
		// Only the file's modules, each at its rank (lycoris.Config.Modules).
		opt.ModuleRanks = ranks
		if varied != "" {
			notes = append(notes, varied)
		}
	}
	// Modules of a trained part that match none of its layers (another
	// preset's, or not an SD 1.x layer) would be silently dropped.
	var extra []string
	for _, fm := range f.Modules {
		te := strings.HasPrefix(fm.Name, "lora_te_")
		if _, ok := ranks[fm.Name]; !ok && (te && teLR > 0 || !te && uLR > 0) {
			extra = append(extra, fm.Name)
		}
	}
	if len(extra) > 0 {
		return nil, fmt.Errorf("%s: --dim-from-weights: %d of the file's modules match no layer of preset %s (e.g. %s)", path, len(extra), opt.Preset, extra[0])
	}
	if opt.NetworkDropout > 0 || opt.RankDropout > 0 || opt.ModuleDropout > 0 {
		notes = append(notes, "network_dropout, rank_dropout and module_dropout are off: create_network_from_weights builds modules without dropout")
		opt.NetworkDropout, opt.RankDropout, opt.ModuleDropout = 0, 0, 0
	}
	desc := func(k kind) string {
		if k.same && k.alphaSet {
			return fmt.Sprintf("rank %d, alpha %s", k.r, trimFloat(float64(k.alpha)))
		}
		return fmt.Sprintf("rank %d, alphas per module", k.r)
	}
	s := fmt.Sprintf("--dim-from-weights %s: %s", path, opt.Algo)
	if opt.Tucker {
		s += " (Tucker)"
	}
	if lin.n > 0 {
		s += fmt.Sprintf(", %d Linear/1×1 modules %s", lin.n, desc(lin))
	}
	if conv.n > 0 {
		s += fmt.Sprintf(", %d k×k conv modules %s", conv.n, desc(conv))
	}
	notes = append([]string{s}, notes...)
	opt.configured = &conf
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("%s: --dim-from-weights: %w", path, err)
	}
	return notes, nil
}

// presetCandidates lists the UNet selections DimsFromWeights tries, the
// configured one first: the file's modules pick the one they are exactly.
// networks.lora builds plain LoRA (lora) or Kohya LoCon (2023) only.
func presetCandidates(opt *Options) []string {
	all := []string{string(lycoris.PresetFull), string(lycoris.Preset2023), string(lycoris.PresetLoRA)}
	if opt.NetworkModule == ModuleKohyaLoRA {
		all = all[1:]
	}
	out := []string{opt.Preset}
	for _, p := range all {
		if p != opt.Preset {
			out = append(out, p)
		}
	}
	return out
}
