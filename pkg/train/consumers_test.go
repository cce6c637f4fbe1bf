package train

// The checklist of spec/consumers.md §5, run on network files written by
// the trainer's own save path: a trained tiny-model file in each save
// precision, and a real-size SD 1.5 file (shape-only models, no training
// step) for the checks that need SD 1.5's key names.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/half"
	"loco/pkg/lycoris"
	"loco/pkg/merge"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
	"loco/pkg/train/traintest"
)

// stTensor is one header entry of a safetensors file.
type stTensor struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// stFile is a safetensors file parsed independently of pkg/safetensors.
type stFile struct {
	raw     []byte
	n       int // header length
	meta    map[string]string
	tensors map[string]stTensor
	data    []byte
}

var dtypeSize = map[string]int{"F16": 2, "BF16": 2, "F32": 4}

// parseContainer is check 1: N ≤ 1e8, header UTF-8 JSON starting `{"`,
// N % 8 == 0, every metadata value a string, offsets tiling the data
// section from 0, sizes = numel × dtype size, end = file size.
func parseContainer(t *testing.T, raw []byte) *stFile {
	t.Helper()
	if len(raw) < 8 {
		t.Fatalf("file of %d bytes", len(raw))
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > 1e8 || 8+n > uint64(len(raw)) {
		t.Fatalf("header length %d (file %d bytes)", n, len(raw))
	}
	hdr := raw[8 : 8+n]
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	if !bytes.HasPrefix(hdr, []byte(`{"`)) {
		t.Errorf("header starts with %q, not {\"", hdr[:min(len(hdr), 2)])
	}
	if !utf8.Valid(hdr) {
		t.Error("header is not UTF-8")
	}
	if tail := bytes.TrimRight(hdr, " "); !bytes.HasSuffix(tail, []byte("}")) {
		t.Error("header padding is not spaces after the JSON object")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &top); err != nil {
		t.Fatalf("header is not a JSON object: %v", err)
	}
	f := &stFile{raw: raw, n: int(n), meta: map[string]string{}, tensors: map[string]stTensor{}, data: raw[8+n:]}
	if m, ok := top["__metadata__"]; ok {
		var any map[string]any
		if err := json.Unmarshal(m, &any); err != nil {
			t.Fatalf("__metadata__: %v", err)
		}
		for k, v := range any {
			s, ok := v.(string)
			if !ok {
				t.Errorf("metadata %s is %T, not a string", k, v)
			}
			f.meta[k] = s
		}
	}
	var list []stTensor
	for k, v := range top {
		if k == "__metadata__" {
			continue
		}
		var st stTensor
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("tensor %s: %v", k, err)
		}
		f.tensors[k] = st
		list = append(list, st)
		numel := 1
		for _, d := range st.Shape {
			numel *= d
		}
		sz, ok := dtypeSize[st.DType]
		if !ok {
			t.Errorf("%s: dtype %s is not a float dtype", k, st.DType)
		}
		if st.Offsets[1]-st.Offsets[0] != numel*sz {
			t.Errorf("%s: %d bytes for %v × %s", k, st.Offsets[1]-st.Offsets[0], st.Shape, st.DType)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Offsets[0] < list[j].Offsets[0] })
	end := 0
	for _, st := range list {
		if st.Offsets[0] != end {
			t.Fatalf("data offsets not contiguous: a tensor begins at %d, the previous ends at %d", st.Offsets[0], end)
		}
		end = st.Offsets[1]
	}
	if end != len(f.data) {
		t.Errorf("data ends at %d, data section is %d bytes", end, len(f.data))
	}
	return f
}

// value decodes tensor k of f to float64s.
func (f *stFile) value(k string) []float64 {
	st := f.tensors[k]
	b := f.data[st.Offsets[0]:st.Offsets[1]]
	var out []float64
	switch st.DType {
	case "F32":
		for i := 0; i < len(b); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
		}
	case "F16":
		for i := 0; i < len(b); i += 2 {
			out = append(out, float64(half.F16ToF32(binary.LittleEndian.Uint16(b[i:]))))
		}
	case "BF16":
		for i := 0; i < len(b); i += 2 {
			out = append(out, float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[i:]))<<16)))
		}
	}
	return out
}

// roundTo rounds v to dtype dt as a save would.
func roundTo(v float64, dt string) float64 {
	switch dt {
	case "F16":
		return float64(half.F16ToF32(half.F32ToF16(float32(v))))
	case "BF16":
		return float64(half.BF16ToF32(half.F32ToBF16(float32(v))))
	}
	return float64(float32(v))
}

// baseModel is what the consumers see of the checkpoint: weight keys and
// shapes, the A1111 module map and the ComfyUI key map.
type baseModel struct {
	shapes map[string][]int  // checkpoint key → shape
	a1111  map[string]string // underscore module name → weight key
	comfy  map[string]string // lora name → weight key
}

func underscore(s string) string { return strings.ReplaceAll(s, ".", "_") }

// newBaseModel builds both consumers' maps from the checkpoint's keys:
// A1111's map of all modules by dotted path with "." → "_" (UNet under
// diffusion_model_, text encoder under transformer_text_model_), and
// ComfyUI's map built forward from the block structure (the golden LDM →
// diffusers table, kept where the model has the weight) plus the CLIP
// layer list.
func newBaseModel(t *testing.T, shapes map[string][]int) *baseModel {
	t.Helper()
	b := &baseModel{shapes: shapes, a1111: map[string]string{}, comfy: map[string]string{}}
	for k := range shapes {
		mod, ok := strings.CutSuffix(k, ".weight")
		if !ok {
			continue
		}
		if rest, ok := strings.CutPrefix(mod, sd.UNetPrefix); ok {
			b.a1111["diffusion_model_"+underscore(rest)] = k
		}
		if rest, ok := strings.CutPrefix(mod, sd.TEPrefix); ok {
			b.a1111["transformer_text_model_"+underscore(rest)] = k
		}
	}
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found: the ComfyUI-style table needs sd15/unet_ldm_to_diffusers.tsv")
	}
	fh, err := os.Open(filepath.Join(root, "sd15", "unet_ldm_to_diffusers.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 2 {
			continue
		}
		if _, ok := shapes[f[0]+".weight"]; ok {
			b.comfy["lora_unet_"+underscore(f[1])] = f[0] + ".weight"
		}
	}
	for l := 0; ; l++ {
		if _, ok := shapes[fmt.Sprintf("%sencoder.layers.%d.mlp.fc1.weight", sd.TEPrefix, l)]; !ok {
			break
		}
		for _, c := range []string{"mlp.fc1", "mlp.fc2", "self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj", "self_attn.out_proj"} {
			b.comfy[fmt.Sprintf("lora_te_text_model_encoder_layers_%d_%s", l, underscore(c))] = fmt.Sprintf("%sencoder.layers.%d.%s.weight", sd.TEPrefix, l, c)
		}
	}
	return b
}

// A1111's conversion of kohya (diffusers) names to its module names.
var a1111Rules = []struct {
	re  *regexp.Regexp
	out func(m []string) string
}{
	{regexp.MustCompile(`^lora_unet_conv_in(.*)$`), func(m []string) string { return "diffusion_model_input_blocks_0_0" + m[1] }},
	{regexp.MustCompile(`^lora_unet_conv_out(.*)$`), func(m []string) string { return "diffusion_model_out_2" + m[1] }},
	{regexp.MustCompile(`^lora_unet_time_embedding_linear_(\d+)(.*)$`), func(m []string) string {
		return fmt.Sprintf("diffusion_model_time_embed_%d%s", 2*(atoi(m[1])-1), m[2])
	}},
	{regexp.MustCompile(`^lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$`), func(m []string) string {
		return fmt.Sprintf("diffusion_model_input_blocks_%d_%d_%s", 1+atoi(m[1])*3+atoi(m[3]), b2i(m[2] == "attentions"), resnetSuffix(m[4]))
	}},
	{regexp.MustCompile(`^lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)$`), func(m []string) string {
		i := atoi(m[2]) * 2
		if m[1] == "attentions" {
			i = 1
		}
		return fmt.Sprintf("diffusion_model_middle_block_%d_%s", i, resnetSuffix(m[3]))
	}},
	{regexp.MustCompile(`^lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$`), func(m []string) string {
		return fmt.Sprintf("diffusion_model_output_blocks_%d_%d_%s", atoi(m[1])*3+atoi(m[3]), b2i(m[2] == "attentions"), resnetSuffix(m[4]))
	}},
	{regexp.MustCompile(`^lora_unet_down_blocks_(\d+)_downsamplers_0_conv$`), func(m []string) string {
		return fmt.Sprintf("diffusion_model_input_blocks_%d_0_op", 3+atoi(m[1])*3)
	}},
	{regexp.MustCompile(`^lora_unet_up_blocks_(\d+)_upsamplers_0_conv$`), func(m []string) string {
		slot := 2
		if atoi(m[1]) == 0 {
			slot = 1
		}
		return fmt.Sprintf("diffusion_model_output_blocks_%d_%d_conv", 2+atoi(m[1])*3, slot)
	}},
	{regexp.MustCompile(`^lora_te_text_model_encoder_layers_(\d+)_(.+)$`), func(m []string) string {
		return "transformer_text_model_encoder_layers_" + m[1] + "_" + m[2]
	}},
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func resnetSuffix(s string) string {
	for _, r := range [][2]string{{"conv1", "in_layers_2"}, {"conv2", "out_layers_3"}, {"norm1", "in_layers_0"},
		{"norm2", "out_layers_0"}, {"time_emb_proj", "emb_layers_1"}, {"conv_shortcut", "skip_connection"}} {
		if s == r[0] {
			return r[1]
		}
	}
	return s
}

func a1111Name(name string) (string, bool) {
	for _, r := range a1111Rules {
		if m := r.re.FindStringSubmatch(name); m != nil {
			return r.out(m), true
		}
	}
	return "", false
}

// loconConfig is what the run was asked for.
type loconConfig struct {
	dtype            string
	dim, convDim     int
	alpha, convAlpha float64
	modules          int    // expected module count (0: not checked)
	keySetSHA        string // locon.md §3.3 check value ("" for non-SD 1.5 files)
}

var keyGrammar = regexp.MustCompile(`^lora_(te|unet)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|lora_mid\.weight|alpha)$`)

// checkLoConFile runs checks 1–9 of consumers.md §5 on the file at path.
func checkLoConFile(t *testing.T, path string, base *baseModel, cfg loconConfig) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := parseContainer(t, raw) // 1
	// 2. Key grammar and groups.
	type group struct{ down, up, mid, alpha bool }
	groups := map[string]*group{}
	var keys []string
	for k := range f.tensors {
		keys = append(keys, k)
		if !keyGrammar.MatchString(k) {
			t.Errorf("key %q does not follow lora_(te|unet)_<name>.<part>", k)
			continue
		}
		name, part, _ := strings.Cut(k, ".")
		g := groups[name]
		if g == nil {
			g = &group{}
			groups[name] = g
		}
		switch part {
		case "lora_down.weight":
			g.down = true
		case "lora_up.weight":
			g.up = true
		case "lora_mid.weight":
			g.mid = true
		case "alpha":
			g.alpha = true
		}
	}
	if cfg.modules > 0 && len(groups) != cfg.modules {
		t.Errorf("%d modules, want %d", len(groups), cfg.modules)
	}
	// 3. Name set.
	if cfg.keySetSHA != "" {
		sort.Strings(keys)
		sum := sha256.Sum256([]byte(strings.Join(keys, "\n") + "\n"))
		if got := hex.EncodeToString(sum[:]); got != cfg.keySetSHA {
			t.Errorf("sorted key names hash to %s, want %s (locon.md §3.3)", got, cfg.keySetSHA)
		}
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(f.meta["ss_network_args"]), &args); err != nil {
		t.Errorf("ss_network_args %q: %v", f.meta["ss_network_args"], err)
	}
	if s, _ := args["conv_dim"].(string); atoi(s) != cfg.convDim {
		t.Errorf("ss_network_args conv_dim %v, want %d", args["conv_dim"], cfg.convDim)
	}
	if d := atoi(f.meta["ss_network_dim"]); d != cfg.dim {
		t.Errorf("ss_network_dim %q, want %d", f.meta["ss_network_dim"], cfg.dim)
	}
	consumed := map[string]bool{}
	unmatched, rejected := 0, 0
	for name, g := range groups {
		if !g.down || !g.up || !g.alpha {
			t.Errorf("module %s: down %v up %v alpha %v, want all three", name, g.down, g.up, g.alpha)
			rejected++ // 7: A1111 accepts a module only with both up and down
			continue
		}
		// 4. Mapping: A1111's converter and ComfyUI's table agree on a key
		// of the checkpoint.
		a, ok := a1111Name(name)
		wa, okA := base.a1111[a]
		wc, okC := base.comfy[name]
		if !ok || !okA {
			unmatched++
			t.Errorf("%s: A1111 finds no module (%q)", name, a)
		}
		if !okC {
			unmatched++
			t.Errorf("%s: not in ComfyUI's key map", name)
		}
		if !okA || !okC {
			continue
		}
		if wa != wc {
			t.Errorf("%s: A1111 maps to %s, ComfyUI to %s", name, wa, wc)
		}
		for _, p := range []string{".alpha", ".lora_up.weight", ".lora_down.weight", ".lora_mid.weight"} {
			consumed[name+p] = true
		}
		// 5. Shapes.
		bs := base.shapes[wa]
		down, up := f.tensors[name+".lora_down.weight"].Shape, f.tensors[name+".lora_up.weight"].Shape
		r := down[0]
		if up[1] != r {
			t.Errorf("%s: up %v and down %v ranks differ", name, up, down)
		}
		wantR, wantA := cfg.dim, cfg.alpha
		switch len(bs) {
		case 2:
			if len(down) != 2 || len(up) != 2 || down[1] != bs[1] || up[0] != bs[0] {
				t.Errorf("%s: Linear %v with down %v, up %v", name, bs, down, up)
			}
		case 4:
			if len(down) != 4 || len(up) != 4 || up[2] != 1 || up[3] != 1 || up[0] != bs[0] || down[1] != bs[1] {
				t.Errorf("%s: conv %v with down %v, up %v", name, bs, down, up)
				continue
			}
			if g.mid {
				if bs[2] == 1 {
					t.Errorf("%s: lora_mid on a 1×1 conv", name)
				}
			} else if down[2] != bs[2] || down[3] != bs[3] {
				t.Errorf("%s: down kernel %v, base kernel %v", name, down[2:], bs[2:])
			}
			if bs[2] > 1 {
				wantR, wantA = cfg.convDim, cfg.convAlpha
			}
		default:
			t.Errorf("%s: base weight %s has shape %v", name, wa, bs)
		}
		if g.mid && (len(bs) != 4 || bs[2] == 1) {
			t.Errorf("%s: lora_mid on a module that is not a k×k conv", name)
		}
		if r != wantR {
			t.Errorf("%s: rank %d, want %d", name, r, wantR)
		}
		// 6. alpha.
		al := f.tensors[name+".alpha"]
		v := f.value(name + ".alpha")
		if len(al.Shape) != 0 || len(v) != 1 {
			t.Errorf("%s.alpha has shape %v", name, al.Shape)
		} else if math.IsInf(v[0], 0) || math.IsNaN(v[0]) || v[0] <= 0 || v[0] != roundTo(wantA, cfg.dtype) {
			t.Errorf("%s.alpha = %v, want %v", name, v[0], wantA)
		}
	}
	// 6. One dtype, the save precision's.
	for k, st := range f.tensors {
		if st.DType != cfg.dtype {
			t.Errorf("%s is %s, the save precision gives %s", k, st.DType, cfg.dtype)
		}
	}
	// 7. Simulated consumers: nothing unmatched, rejected or unconsumed.
	unconsumed := 0
	for k := range f.tensors {
		if !consumed[k] {
			unconsumed++
		}
	}
	if unmatched+rejected+unconsumed != 0 {
		t.Errorf("consumers: %d unmatched modules, %d rejected, %d unconsumed keys", unmatched, rejected, unconsumed)
	}
	// 8. Metadata.
	for k, want := range map[string]string{"ss_network_module": "lycoris.kohya", "ss_v2": "False",
		"ss_base_model_version": "sd_v1", "modelspec.architecture": "stable-diffusion-v1/lora"} {
		if f.meta[k] != want {
			t.Errorf("metadata %s = %q, want %q", k, f.meta[k], want)
		}
	}
	for _, k := range []string{"ss_output_name", "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_training_started_at", "sshs_model_hash"} {
		if f.meta[k] == "" {
			t.Errorf("metadata %s missing", k)
		}
	}
	for _, k := range []string{"ss_network_args", "ss_tag_frequency", "ss_dataset_dirs", "ss_reg_dataset_dirs", "ss_bucket_info"} {
		var obj map[string]any
		if err := json.Unmarshal([]byte(f.meta[k]), &obj); err != nil || (obj == nil && k != "ss_bucket_info") {
			t.Errorf("metadata %s = %q is not a JSON object: %v", k, f.meta[k], err)
		}
	}
	for k, v := range f.meta {
		if strings.HasPrefix(k, "ss_") && strings.HasPrefix(v, "{") && !json.Valid([]byte(v)) {
			t.Errorf("metadata %s starts with { but is not JSON (A1111 parses it): %q", k, v)
		}
	}
	for k, v := range args {
		if _, isStr := v.(string); !isStr && k != "dropout" {
			t.Errorf("ss_network_args %s = %v (%T), want a string", k, v, v)
		}
	}
	if _, err := strconv.Atoi(f.meta["ss_network_dim"]); err != nil {
		t.Errorf("ss_network_dim %q is not an integer", f.meta["ss_network_dim"])
	}
	if a, err := strconv.ParseFloat(f.meta["ss_network_alpha"], 64); err != nil || a != cfg.alpha {
		t.Errorf("ss_network_alpha %q, want %g", f.meta["ss_network_alpha"], cfg.alpha)
	}
	if _, err := strconv.ParseFloat(f.meta["ss_training_started_at"], 64); err != nil {
		t.Errorf("ss_training_started_at %q is not a number", f.meta["ss_training_started_at"])
	}
	// 9. Hashes.
	sum := sha256.Sum256(f.data)
	if got := f.meta["sshs_model_hash"]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("sshs_model_hash %s, sha256 of the data is %x", got, sum)
	}
	if lh, ok := f.meta["sshs_legacy_hash"]; ok {
		if want := legacyHash(f); lh != want {
			t.Errorf("sshs_legacy_hash %s, recomputed %s", lh, want)
		}
	}
}

// legacyHash recomputes sshs_legacy_hash (fileformat.md §3.2): the 64 KiB
// at offset 1 MiB of the same tensors serialised with only the ss_*
// metadata. The data section is unchanged; only the header length differs,
// so it is enough to measure the ss-only header (compact JSON, serde
// escaping, padded to 8).
func legacyHash(f *stFile) string {
	esc := func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for _, r := range s {
			switch {
			case r == '"':
				b.WriteString(`\"`)
			case r == '\\':
				b.WriteString(`\\`)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r == '\b':
				b.WriteString(`\b`)
			case r == '\f':
				b.WriteString(`\f`)
			case r < 0x20:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
		return b.String()
	}
	var parts []string
	for k, v := range f.meta {
		if strings.HasPrefix(k, "ss_") {
			parts = append(parts, esc(k)+":"+esc(v))
		}
	}
	hdr := `{"__metadata__":{` + strings.Join(parts, ",") + `}`
	for k, st := range f.tensors {
		sh := make([]string, len(st.Shape))
		for i, d := range st.Shape {
			sh[i] = strconv.Itoa(d)
		}
		hdr += fmt.Sprintf(`,%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}`, esc(k), st.DType, strings.Join(sh, ","), st.Offsets[0], st.Offsets[1])
	}
	hdr += "}"
	n := (len(hdr) + 7) / 8 * 8
	total := 8 + n + len(f.data)
	var win []byte
	if total > 1<<20 {
		lo := 1<<20 - 8 - n
		win = f.data[lo:min(len(f.data), lo+1<<16)]
	}
	sum := sha256.Sum256(win)
	return hex.EncodeToString(sum[:])[:8]
}

// tinyBase is the tiny checkpoint's key → shape table.
func tinyBase(t *testing.T) *baseModel {
	shapes := map[string][]int{}
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, traintest.UNet()); err != nil {
		t.Fatal(err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, nil)
	clip.New(tb, traintest.CLIP())
	for _, b := range []*nn.Builder{ub, tb} {
		for _, p := range b.Params() {
			shapes[p.Key] = []int(p.Shape)
		}
	}
	return newBaseModel(t, shapes)
}

// TestConsumerChecklistTiny trains the scaled-down recipe in each save
// precision and runs checks 1–9 on the written file, then 11 (two-branch
// forward = merged weight), 14 (write → read → write is byte-identical),
// 10 (a zero-initialised network merged into the checkpoint changes no
// value) and 13 (resize to the same ranks keeps s·ΔW) on the fp16 files.
// Check 12 (the golden LoCon cases) is pkg/lycoris's golden tests.
func TestConsumerChecklistTiny(t *testing.T) {
	base := tinyBase(t)
	for _, tc := range []struct{ prec, dtype string }{{"fp16", "F16"}, {"bf16", "BF16"}, {"float", "F32"}} {
		t.Run(tc.prec, func(t *testing.T) {
			dir := t.TempDir()
			tr, _ := tinyRun(t, dir, func(o *Options) {
				o.SavePrecision, o.SaveEveryNEpochs, o.MaxTrainSteps = tc.prec, 0, 2
				o.LearningRate = 1e-3
			})
			if tc.prec == "fp16" {
				// The untrained network, for check 10.
				if err := tr.save("zero"); err != nil {
					t.Fatal(err)
				}
			}
			if err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "tiny.safetensors")
			checkLoConFile(t, path, base, loconConfig{dtype: tc.dtype, dim: 8, convDim: 4, alpha: 4, convAlpha: 4, modules: len(tr.Net.Modules)})
			if tc.prec != "fp16" {
				return
			}
			checkTwoBranch(t, path, tr)
			checkRoundTrip(t, path, tr)
			checkZeroMerge(t, filepath.Join(dir, "zero.safetensors"))
			checkResizeSameRank(t, path)
		})
	}
}

// checkTwoBranch is check 11 on the trained file: for a Linear, a stride-1
// and a stride-2 3×3 conv of the tiny model, the layer with the merged
// weight W + s·ΔW gives the base output plus s·up(down(x)).
func checkTwoBranch(t *testing.T, path string, tr *Trainer) {
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lins, convs := tr.M.UNet.Layers()
	e := tr.M.E
	byKey := map[string]any{}
	for _, l := range lins {
		byKey[l.Key] = l
	}
	for _, c := range convs {
		byKey[c.Key] = c
	}
	tested := 0
	for _, layer := range []string{"input_blocks.1.1.transformer_blocks.0.attn1.to_q", "input_blocks.1.0.in_layers.2", "input_blocks.3.0.op"} {
		key := sd.UNetPrefix + layer
		name, err := lycoris.KohyaName(key)
		if err != nil {
			t.Fatal(err)
		}
		fm, ok := f.Module(name)
		if !ok {
			t.Fatalf("no module %s in %s", name, path)
		}
		s := float64(fm.Alpha) / float64(fm.Rank())
		upNonzero := false
		for _, v := range fm.Up {
			upNonzero = upNonzero || v != 0
		}
		if !upNonzero {
			t.Fatalf("%s: lora_up is still zero after training", name)
		}
		r, out := fm.DownShape[0], fm.UpShape[0]
		cols := len(fm.Down) / r
		delta := make([]float32, out*cols)
		for o := 0; o < out; o++ {
			for c := 0; c < cols; c++ {
				var acc float64
				for j := 0; j < r; j++ {
					acc += float64(fm.Up[o*r+j]) * float64(fm.Down[j*cols+c])
				}
				delta[o*cols+c] = float32(s * acc)
			}
		}
		var got, want []float32
		err = tensor.Catch(func() {
			e.NoGrad(func() {
				switch l := byKey[key].(type) {
				case *nn.Linear:
					x := e.FromFloat32(randVals(2*5*l.In, 1), 2, 5, l.In)
					w := tensor.Add(l.W, e.FromFloat32(delta, l.Out, l.In))
					got = tensor.Linear(x, w, l.B).Float32s()
					br := tensor.Linear(tensor.Linear(x, e.FromFloat32(fm.Down, fm.DownShape...), nil), e.FromFloat32(fm.Up, fm.UpShape...), nil)
					want = tensor.Add(tensor.Linear(x, l.W, l.B), tensor.Scale(br, float32(s))).Float32s()
				case *nn.Conv2d:
					x := e.FromFloat32(randVals(2*l.In*8*8, 2), 2, l.In, 8, 8)
					w := tensor.Add(l.W, e.FromFloat32(delta, l.Out, l.In, l.Kernel, l.Kernel))
					got = tensor.Conv2D(x, w, l.B, l.Stride, l.Pad).Float32s()
					br := tensor.Conv2D(tensor.Conv2D(x, e.FromFloat32(fm.Down, fm.DownShape...), nil, l.Stride, l.Pad),
						e.FromFloat32(fm.Up, fm.UpShape...), nil, 1, 0)
					want = tensor.Add(tensor.Conv2D(x, l.W, l.B, l.Stride, l.Pad), tensor.Scale(br, float32(s))).Float32s()
					if layer == "input_blocks.3.0.op" && l.Stride != 2 {
						t.Fatalf("%s has stride %d, the test wants the stride-2 downsampler", layer, l.Stride)
					}
				}
			})
		})
		e.EndStep()
		if err != nil {
			t.Fatal(err)
		}
		var num, den float64
		for i := range got {
			d := float64(got[i] - want[i])
			num += d * d
			den += float64(want[i]) * float64(want[i])
		}
		if rel := math.Sqrt(num / den); !(rel < 1e-5) {
			t.Errorf("%s: merged weight vs two branches: relative L2 %.3g", name, rel)
		}
		tested++
	}
	if tested != 3 {
		t.Errorf("%d layers checked", tested)
	}
}

func randVals(n int, seed uint64) []float32 {
	r := Stream(seed, "test", 0, 0)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// checkRoundTrip is check 14: reading the file into a network of the same
// configuration and writing it with its metadata gives the same bytes.
func checkRoundTrip(t *testing.T, path string, tr *Trainer) {
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := tinyModels(t)
	var lins []*nn.Linear
	l, c := m.UNet.Layers()
	lins = append(lins, l...)
	for _, nl := range m.TE.Linears() {
		lins = append(lins, nl.L)
	}
	net, err := lycoris.New(m.E, lycoris.Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lins, c, Stream(9, "init", 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := net.Load(f); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "again.safetensors")
	if err := net.Save(out, safetensors.F16, f.Metadata); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Errorf("write → read → write: %d bytes, then %d bytes, not identical", len(a), len(b))
	}
}

// checkResizeSameRank is check 13 for the trained file: resizing to the
// ranks it has (float32 output) keeps every module's s·ΔW to float32
// precision, with α'/r' = α/r.
func checkResizeSameRank(t *testing.T, path string) {
	out := filepath.Join(t.TempDir(), "resized.safetensors")
	if _, err := merge.Resize(path, out, merge.ResizeOptions{Rank: 8, ConvRank: 4, Precision: safetensors.F32}); err != nil {
		t.Fatal(err)
	}
	a, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lycoris.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	product := func(m *lycoris.FileModule) []float64 {
		r := m.Rank()
		down := m.Down
		if m.Mid != nil {
			t.Fatalf("%s: unexpected lora_mid", m.Name)
		}
		cols, rows := len(down)/r, len(m.Up)/r
		s := float64(m.Alpha) / float64(r)
		p := make([]float64, rows*cols)
		for o := 0; o < rows; o++ {
			for j := 0; j < r; j++ {
				u := s * float64(m.Up[o*r+j])
				for c := 0; c < cols; c++ {
					p[o*cols+c] += u * float64(down[j*cols+c])
				}
			}
		}
		return p
	}
	if len(a.Modules) != len(b.Modules) {
		t.Fatalf("resized file has %d modules, input %d", len(b.Modules), len(a.Modules))
	}
	worst, compared := 0.0, 0
	for _, ma := range a.Modules {
		mb, ok := b.Module(ma.Name)
		if !ok {
			t.Fatalf("resized file lacks %s", ma.Name)
		}
		if mb.Rank() != ma.Rank() || math.Abs(float64(mb.Alpha)/float64(mb.Rank())-float64(ma.Alpha)/float64(ma.Rank())) > 1e-6 {
			t.Errorf("%s: rank %d alpha %g → rank %d alpha %g", ma.Name, ma.Rank(), ma.Alpha, mb.Rank(), mb.Alpha)
		}
		pa, pb := product(ma), product(mb)
		var num, den float64
		for i := range pa {
			num += (pa[i] - pb[i]) * (pa[i] - pb[i])
			den += pa[i] * pa[i]
		}
		if den == 0 {
			continue
		}
		compared++
		worst = max(worst, math.Sqrt(num/den))
	}
	t.Logf("resize to the same ranks: %d nonzero modules, worst relative L2 change %.2g", compared, worst)
	if compared < len(a.Modules)/2 {
		t.Errorf("only %d of %d modules have a nonzero product", compared, len(a.Modules))
	}
	if !(worst < 1e-5) {
		t.Errorf("resize to the same ranks: worst relative L2 change of s·ΔW %.3g", worst)
	}
}

// checkZeroMerge is check 10: the untrained (zero lora_up) network merged
// into the tiny checkpoint leaves every tensor value-identical.
func checkZeroMerge(t *testing.T, zero string) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "tiny.safetensors")
	if err := traintest.WriteCheckpoint(ck, 5, safetensors.F16); err != nil {
		t.Fatal(err)
	}
	in, err := merge.ParseInput(zero)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.safetensors")
	rep, err := merge.Apply(merge.ApplyOptions{Base: ck, Networks: []merge.Input{in}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	a, err := safetensors.Open(ck)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(a.Names()) != len(b.Names()) || rep.Changed == 0 {
		t.Fatalf("merged checkpoint has %d tensors, base %d; %d layers changed", len(b.Names()), len(a.Names()), rep.Changed)
	}
	for _, k := range a.Names() {
		va, err := a.ReadFloat32(k)
		if err != nil {
			t.Fatal(err)
		}
		vb, err := b.ReadFloat32(k)
		if err != nil {
			t.Fatalf("merged checkpoint: %v", err)
		}
		for i := range va {
			if va[i] != vb[i] {
				t.Fatalf("%s[%d]: %v became %v after merging a zero network", k, i, va[i], vb[i])
			}
		}
	}
}

// TestConsumerChecklistSD15 writes a real-size SD 1.5 network (the
// recipe's settings, TE + UNet, both presets) through the trainer's save
// path on shape-only models and runs checks 1–9 against the golden SD 1.5
// key lists, including the §3.3 key-set hashes.
func TestConsumerChecklistSD15(t *testing.T) {
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found")
	}
	shapes := map[string][]int{}
	for _, name := range []string{"unet_keys.tsv", "clip_keys.tsv"} {
		fh, err := os.Open(filepath.Join(root, "sd15", name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			f := strings.Split(sc.Text(), "\t")
			if len(f) < 2 {
				continue
			}
			var sh []int
			for _, d := range strings.Split(f[1], ",") {
				if d != "" {
					sh = append(sh, atoi(d))
				}
			}
			shapes[f[0]] = sh
		}
		fh.Close()
	}
	base := newBaseModel(t, shapes)
	for _, tc := range []struct {
		preset  string
		modules int
		sha     string
	}{
		{"full", 354, "76870f1f9caf27262e91025e16886f1af7e7dbe2ab7de749fea7a2a8c8ee0cfb"},
		{"2023", 350, "4ea5d01fa5f2664e741e0a829821affd8f1a86f666e9dfc17a47bedc2b0c8132"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			e := tensor.NewEngine(cpu.New())
			u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, nil), unet.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			tb := nn.NewBuilder(sd.TEPrefix, nil)
			te := clip.New(tb, clip.DefaultConfig())
			opt := DefaultOptions()
			opt.NetworkDim, opt.NetworkAlpha, opt.ConvDim, opt.ConvAlpha = 8, 4, 4, 4
			opt.Preset, opt.OutputDir, opt.OutputName = tc.preset, t.TempDir(), "pralyco"
			opt.BatchSize, opt.GradAccum, opt.Epochs = 3, 12, 4
			p, err := NewPlan(recipeRecords(20, 40, [2]int{512, 512}), "latent_key", 3, 12, 4, 0)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := New(opt, p, Models{E: e, UNet: u, TE: te}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.save(opt.OutputName); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(opt.OutputDir, "pralyco.safetensors")
			checkLoConFile(t, path, base, loconConfig{dtype: "F16", dim: 8, convDim: 4, alpha: 4, convAlpha: 4, modules: tc.modules, keySetSHA: tc.sha})
			if st, _ := os.Stat(path); st.Size() < 1<<20 {
				t.Errorf("%d bytes: the legacy-hash window was not exercised", st.Size())
			}
		})
	}
}
