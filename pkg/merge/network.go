package merge

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"loco/pkg/lycoris"
)

// Input is a network file with its ratios: `path`, `path:R` (R for both
// models) or `path:TE:UNET` (separate text-encoder and UNet ratios, as
// A1111's <lora:name:te:unet>).
type Input struct {
	Path     string
	TE, UNet float64
}

// ParseInput parses a command-line network argument. A path that exists as
// given is taken whole (ratio 1) even if it contains a colon.
func ParseInput(arg string) (Input, error) {
	if arg == "" {
		return Input{}, fmt.Errorf("empty network argument")
	}
	if _, err := os.Stat(arg); err == nil || !strings.Contains(arg, ":") {
		return Input{Path: arg, TE: 1, UNet: 1}, nil
	}
	parts := strings.Split(arg, ":")
	var path string
	var rs []string
	// path:R or path:TE:UNET; the path itself may hold colons only when it
	// exists as given (handled above).
	if len(parts) >= 3 {
		if _, err := strconv.ParseFloat(parts[len(parts)-2], 64); err == nil {
			path, rs = strings.Join(parts[:len(parts)-2], ":"), parts[len(parts)-2:]
		}
	}
	if path == "" {
		path, rs = strings.Join(parts[:len(parts)-1], ":"), parts[len(parts)-1:]
	}
	var vals []float64
	for _, s := range rs {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v != v || v > 1e6 || v < -1e6 {
			return Input{}, fmt.Errorf("network %q: ratio %q does not parse as a number (write path:0.8 or path:TE:UNET)", arg, s)
		}
		vals = append(vals, v)
	}
	if path == "" {
		return Input{}, fmt.Errorf("network %q: no file name before the ratio", arg)
	}
	in := Input{Path: path, TE: vals[0], UNet: vals[0]}
	if len(vals) == 2 {
		in.TE, in.UNet = vals[0], vals[1]
	}
	return in, nil
}

// Ratio is the input's ratio for a module name.
func (in Input) Ratio(name string) float64 {
	if strings.HasPrefix(name, "lora_te") {
		return in.TE
	}
	return in.UNet
}

// Matched is a network module paired with the layer it changes.
type Matched struct {
	Module  *lycoris.FileModule
	Layer   *Layer
	Factors *Factors
}

// Match pairs every module of a network with a layer of the table. Modules
// that match no layer are an error listing them (with a hint when they look
// like SDXL or SD 2.x names); so are shape mismatches.
func Match(f *lycoris.File, t *Table) ([]Matched, error) {
	var out []Matched
	var unmatched []string
	var shapeErrs []string
	sd2 := false
	for _, m := range f.Modules {
		l := t.Layers[m.Name]
		if l == nil {
			unmatched = append(unmatched, m.Name)
			continue
		}
		fa, err := FactorsFor(m, l)
		if err != nil {
			shapeErrs = append(shapeErrs, err.Error())
			sd2 = sd2 || strings.HasPrefix(m.Name, "lora_te_") && (m.DownShape[1] == 1024 || m.UpShape[0] == 1024)
			continue
		}
		out = append(out, Matched{Module: m, Layer: l, Factors: fa})
	}
	if len(unmatched) > 0 {
		msg := fmt.Sprintf("%s: %d of %d module(s) match no layer of the %s: %s", f.Path, len(unmatched), len(f.Modules), t.describe(), list(unmatched, 8))
		return nil, withArchHint(fmt.Errorf("%s", msg), unmatched, t)
	}
	if len(shapeErrs) > 0 {
		err := fmt.Errorf("%s: %d module(s) do not fit the model: %s", f.Path, len(shapeErrs), list(shapeErrs, 4))
		if sd2 {
			return nil, fmt.Errorf("%w (text-encoder width 1024: a network for SD 2.x)", err)
		}
		return nil, err
	}
	return out, nil
}

func (t *Table) describe() string {
	switch {
	case t.UNet && t.TEKeyPrefix != "":
		return "SD 1.x UNet and text encoder"
	case t.UNet:
		return "SD 1.x UNet (the checkpoint has no text encoder)"
	}
	return "SD 1.x text encoder"
}

func withArchHint(err error, names []string, t *Table) error {
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "lora_te1_") || strings.HasPrefix(n, "lora_te2_") || strings.Contains(n, "transformer_blocks_1_"):
			return fmt.Errorf("%w (a network for SDXL: two text encoders, deeper transformer blocks)", err)
		case strings.HasPrefix(n, "lora_te_text_model_encoder_layers_") && teLayer(n) >= 12:
			return fmt.Errorf("%w (text-encoder layer %d: SD 1.x has 12 layers, SD 2.x 23)", err, teLayer(n))
		case strings.HasPrefix(n, "lora_te_") && t.TEKeyPrefix == "":
			return fmt.Errorf("%w (text-encoder modules, but the checkpoint has no text encoder)", err)
		case strings.Contains(n, "_input_blocks_") || strings.Contains(n, "_output_blocks_") || strings.Contains(n, "_middle_block_"):
			return fmt.Errorf("%w (LDM-style module names; loco expects kohya's diffusers-path names)", err)
		}
	}
	return err
}

func teLayer(n string) int {
	rest := strings.TrimPrefix(n, "lora_te_text_model_encoder_layers_")
	i := strings.IndexByte(rest, '_')
	if i < 0 {
		return -1
	}
	v, err := strconv.Atoi(rest[:i])
	if err != nil {
		return -1
	}
	return v
}

// stem is a file's base name without its extension.
func stem(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// title is a file's modelspec.title, else its stem (kohya build_merged_from).
func title(md map[string]string, path string) string {
	if t := md["modelspec.title"]; t != "" {
		return t
	}
	return stem(path)
}

// checkOutput refuses an output path that names one of the inputs.
func checkOutput(out string, inputs ...string) error {
	if out == "" || out == "-" {
		return fmt.Errorf("an output file is required")
	}
	oa, _ := filepath.Abs(out)
	ost, oerr := os.Stat(out)
	for _, in := range inputs {
		ia, _ := filepath.Abs(in)
		if ia == oa {
			return fmt.Errorf("output %s is also an input; write to another file", out)
		}
		if oerr == nil {
			if ist, err := os.Stat(in); err == nil && os.SameFile(ist, ost) {
				return fmt.Errorf("output %s is the same file as input %s; write to another file", out, in)
			}
		}
	}
	return nil
}

// pyFloat formats v as Python's repr of a float does (kohya writes
// metadata numbers with str()).
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if strings.ContainsAny(s, ".eIN") { // a point, an exponent (Python: 1e-05, like Go), Inf, NaN
		return s
	}
	return s + ".0"
}
