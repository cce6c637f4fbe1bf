package sample

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prompt is one sample image to make.
type Prompt struct {
	Source   string // where it came from ("prompts.txt:3"), for messages
	Prompt   string
	Negative string // "" uses the empty prompt for the unconditional branch
	Width    int    // pixels, a multiple of 8
	Height   int
	Steps    int     // 1…1000
	Scale    float64 // CFG scale; ≤ 1 disables guidance
	Seed     int64
	HasSeed  bool   // false: a fresh seed is drawn for each image
	Sampler  string // "" uses the run's sampler
	Ignored  []string
}

// Defaults of a prompt without options (kohya's).
const (
	DefaultSteps  = 30
	DefaultSize   = 512
	DefaultScale  = 7.5
	MaxSteps      = 1000
	minSampleSize = 64
)

// NewPrompt is a prompt with kohya's defaults.
func NewPrompt(text string) Prompt {
	return Prompt{Prompt: text, Width: DefaultSize, Height: DefaultSize, Steps: DefaultSteps, Scale: DefaultScale}
}

// Validate rejects sizes that are not positive multiples of 8 (kohya
// rounds them down silently; loco asks for the size it will make) and
// steps outside 1…1000.
func (p Prompt) Validate() error {
	for _, d := range []struct {
		name string
		v    int
	}{{"width", p.Width}, {"height", p.Height}} {
		if d.v < minSampleSize || d.v%8 != 0 {
			return fmt.Errorf("%s: %s %d is not a multiple of 8 of at least %d", p.Source, d.name, d.v, minSampleSize)
		}
	}
	if p.Steps < 1 || p.Steps > MaxSteps {
		return fmt.Errorf("%s: %d sampling steps, want 1…%d", p.Source, p.Steps, MaxSteps)
	}
	if p.Scale < 0 {
		return fmt.Errorf("%s: negative CFG scale %g", p.Source, p.Scale)
	}
	return nil
}

// ignoredOptions are kohya options for other model families: accepted and
// reported in Prompt.Ignored.
var ignoredOptions = []string{"g", "cn", "ctr", "rcfg", "fs"}

// ParseLine reads one prompt line with kohya's inline options: the line is
// cut at every " --"; the first piece is the prompt and each further piece
// one option: "w N" width, "h N" height, "d N" seed, "s N" steps (clamped
// to 1…1000 as kohya does), "l X" CFG scale, "n TEXT" negative prompt,
// "ss NAME" sampler; "g", "cn", "ctr", "rcfg", "fs" (other models) are
// ignored. Option letters are case-insensitive. Unlike kohya, an unknown
// option, a bad number or a bad size is an error naming source (the file
// and line), and the prompt piece itself is never read as an option.
func ParseLine(line, source string) (Prompt, error) {
	pieces := strings.Split(strings.TrimSpace(line), " --")
	p := NewPrompt(strings.TrimSpace(pieces[0]))
	p.Source = source
	bad := func(format string, a ...any) (Prompt, error) {
		return Prompt{}, fmt.Errorf("%s: %s (in %q)", source, fmt.Sprintf(format, a...), line)
	}
	for _, piece := range pieces[1:] {
		name, val, _ := strings.Cut(piece, " ")
		name = strings.ToLower(name)
		val = strings.TrimSpace(val)
		integer := func() (int64, bool) {
			v, err := strconv.ParseInt(val, 10, 64)
			return v, err == nil && val != "" && val[0] != '+' && val[0] != '-'
		}
		switch name {
		case "w", "h":
			v, ok := integer()
			if !ok || v > 1<<16 {
				return bad("option --%s wants a size in pixels, got %q", name, val)
			}
			if name == "w" {
				p.Width = int(v)
			} else {
				p.Height = int(v)
			}
		case "d":
			v, ok := integer()
			if !ok {
				return bad("option --d wants a seed (a non-negative integer), got %q", val)
			}
			p.Seed, p.HasSeed = v, true
		case "s":
			v, ok := integer()
			if !ok {
				return bad("option --s wants a number of steps, got %q", val)
			}
			p.Steps = int(min(max(v, 1), MaxSteps))
		case "l":
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || strings.ContainsAny(val, "eE+-xXpP_") || val == "" {
				return bad("option --l wants a CFG scale, got %q", val)
			}
			p.Scale = v
		case "n":
			p.Negative = val
		case "ss":
			if val == "" {
				return bad("option --ss wants a sampler name")
			}
			if _, err := ByName(val); err != nil {
				return bad("option --ss: %v", err)
			}
			p.Sampler = val
		default:
			known := false
			for _, o := range ignoredOptions {
				known = known || name == o
			}
			if !known {
				return bad("unknown option --%s (known: --n --w --h --s --l --d --ss)", name)
			}
			p.Ignored = append(p.Ignored, "--"+piece)
		}
	}
	if err := p.Validate(); err != nil {
		return Prompt{}, fmt.Errorf("%v (in %q)", err, line)
	}
	return p, nil
}

// ParseText reads a .txt prompt file: one prompt per line; lines empty
// after trimming and lines whose first character is '#' are skipped (an
// indented '#' is a prompt, as in kohya). name labels errors.
func ParseText(r io.Reader, name string) ([]Prompt, error) {
	var out []Prompt
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := ParseLine(line, fmt.Sprintf("%s:%d", name, n))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// jsonPrompt is one entry of a .json prompt file (kohya's keys).
type jsonPrompt struct {
	Prompt   *string  `json:"prompt"`
	Negative string   `json:"negative_prompt"`
	Width    *int     `json:"width"`
	Height   *int     `json:"height"`
	Steps    *int     `json:"sample_steps"`
	Scale    *float64 `json:"scale"`
	Seed     *int64   `json:"seed"`
	Sampler  string   `json:"sample_sampler"`
}

// ParseJSON reads a .json prompt file: a list of prompt objects (keys
// prompt, negative_prompt, width, height, sample_steps, scale, seed,
// sample_sampler; unknown keys are errors) or plain strings, which are
// read as prompt lines with inline options.
func ParseJSON(data []byte, name string) ([]Prompt, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: want a JSON list of prompts: %w", name, err)
	}
	var out []Prompt
	for i, raw := range list {
		src := fmt.Sprintf("%s: entry %d", name, i+1)
		var s string
		if json.Unmarshal(raw, &s) == nil {
			p, err := ParseLine(s, src)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
			continue
		}
		var jp jsonPrompt
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&jp); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if jp.Prompt == nil {
			return nil, fmt.Errorf("%s: no \"prompt\"", src)
		}
		p := NewPrompt(*jp.Prompt)
		p.Source, p.Negative, p.Sampler = src, jp.Negative, jp.Sampler
		if jp.Width != nil {
			p.Width = *jp.Width
		}
		if jp.Height != nil {
			p.Height = *jp.Height
		}
		if jp.Steps != nil {
			p.Steps = *jp.Steps
		}
		if jp.Scale != nil {
			p.Scale = *jp.Scale
		}
		if jp.Seed != nil {
			p.Seed, p.HasSeed = *jp.Seed, true
		}
		if p.Sampler != "" {
			if _, err := ByName(p.Sampler); err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
		}
		if err := p.Validate(); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// LoadPrompts reads a prompt file by extension: .txt (or any other) as
// text, .json as JSON. TOML prompt files are not supported yet.
func LoadPrompts(path string) ([]Prompt, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return ParseJSON(data, path)
	case ".toml":
		return nil, fmt.Errorf("%s: TOML prompt files are not supported; use a .txt file with inline options or .json", path)
	default:
		return ParseText(bytes.NewReader(data), path)
	}
}
