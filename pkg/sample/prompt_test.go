package sample

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	def := func(mod func(*Prompt)) Prompt {
		p := NewPrompt("pralyco, photo of a woman")
		p.Source = "f:1"
		mod(&p)
		return p
	}
	cases := []struct {
		line string
		want Prompt
	}{
		{"pralyco, photo of a woman", def(func(p *Prompt) {})},
		{"  pralyco, photo of a woman  ", def(func(p *Prompt) {})},
		{"pralyco, photo of a woman --n low quality, blurry --w 640 --h 384",
			def(func(p *Prompt) { p.Negative, p.Width, p.Height = "low quality, blurry", 640, 384 })},
		{"pralyco, photo of a woman --d 1234 --s 20 --l 5.5",
			def(func(p *Prompt) { p.Seed, p.HasSeed, p.Steps, p.Scale = 1234, true, 20, 5.5 })},
		{"pralyco, photo of a woman --W 576 --H 448 --D 0 --S 12 --L 3 --N bad",
			def(func(p *Prompt) {
				p.Width, p.Height, p.Seed, p.HasSeed, p.Steps, p.Scale, p.Negative = 576, 448, 0, true, 12, 3, "bad"
			})},
		{"pralyco, photo of a woman --s 5000", def(func(p *Prompt) { p.Steps = 1000 })},
		{"pralyco, photo of a woman --s 0", def(func(p *Prompt) { p.Steps = 1 })},
		{"pralyco, photo of a woman --ss ddim", def(func(p *Prompt) { p.Sampler = "ddim" })},
		{"pralyco, photo of a woman --g 3.5 --fs 2", def(func(p *Prompt) { p.Ignored = []string{"--g 3.5", "--fs 2"} })},
		// The prompt piece is never read as an option (kohya's quirk).
		{"n cat --w 64", func() Prompt {
			p := NewPrompt("n cat")
			p.Source, p.Width = "f:1", 64
			return p
		}()},
		// "--" without the space before it stays in the prompt.
		{"a--b --h 64", func() Prompt {
			p := NewPrompt("a--b")
			p.Source, p.Height = "f:1", 64
			return p
		}()},
	}
	for _, c := range cases {
		t.Run(c.line, func(t *testing.T) {
			got, err := ParseLine(c.line, "f:1")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	cases := []struct{ line, msg string }{
		{"a --x 1", "unknown option --x"},
		{"a --width 512", "unknown option --width"},
		{"a --w 512px", "size in pixels"},
		{"a --w", "size in pixels"},
		{"a --w -64", "size in pixels"},
		{"a --h 5e2", "size in pixels"},
		{"a --w 500", "width 500 is not a multiple of 8"},
		{"a --h 60", "height 60 is not a multiple of 8"},
		{"a --w 32", "at least 64"},
		{"a --d 1.5", "--d wants a seed"},
		{"a --d -3", "--d wants a seed"},
		{"a --s ten", "--s wants a number of steps"},
		{"a --l 7.5.1", "--l wants a CFG scale"},
		{"a --l 1e3", "--l wants a CFG scale"},
		{"a --l", "--l wants a CFG scale"},
		{"a --ss dpm++_2m_karras", "unknown sampler"},
		{"a --ss lms", "not implemented"},
		{"a --ss", "--ss wants a sampler name"},
	}
	for _, c := range cases {
		t.Run(c.line, func(t *testing.T) {
			_, err := ParseLine(c.line, "prompts.txt:7")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "prompts.txt:7") ||
				!strings.Contains(err.Error(), c.line) {
				t.Fatalf("error %q: want it to name prompts.txt:7, the line and %q", err, c.msg)
			}
		})
	}
}

func TestParseText(t *testing.T) {
	src := "# comment\n\npralyco, photo of a woman --d 1\n   \n  # indented: a prompt --w 128\nlast --l 1\n"
	ps, err := ParseText(strings.NewReader(src), "p.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[0].Source != "p.txt:3" || ps[1].Prompt != "# indented: a prompt" || ps[1].Width != 128 ||
		ps[2].Source != "p.txt:6" || ps[2].Scale != 1 {
		t.Fatalf("%+v", ps)
	}
	_, err = ParseText(strings.NewReader("ok\nbad --q 1\n"), "p.txt")
	if err == nil || !strings.HasPrefix(err.Error(), "p.txt:2: ") {
		t.Fatalf("err %v, want it to start with p.txt:2", err)
	}
}

func TestParseJSONAndLoad(t *testing.T) {
	dir := t.TempDir()
	js := `[{"prompt": "a", "negative_prompt": "b", "width": 576, "height": 320, "sample_steps": 12, "scale": 4, "seed": 9, "sample_sampler": "ddim"}, "c --w 128"]`
	path := filepath.Join(dir, "p.json")
	os.WriteFile(path, []byte(js), 0o644)
	ps, err := LoadPrompts(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Prompt{Source: path + ": entry 1", Prompt: "a", Negative: "b", Width: 576, Height: 320, Steps: 12,
		Scale: 4, Seed: 9, HasSeed: true, Sampler: "ddim"}
	if len(ps) != 2 || !reflect.DeepEqual(ps[0], want) || ps[1].Width != 128 || ps[1].Prompt != "c" {
		t.Fatalf("%+v", ps)
	}
	for _, bad := range []string{`{"prompt": "a"}`, `[{"prompt": "a", "cfg": 3}]`, `[{"negative_prompt": "a"}]`,
		`[{"prompt": "a", "width": 100}]`, `[{"prompt": "a", "sample_sampler": "heun"}]`} {
		if _, err := ParseJSON([]byte(bad), "p.json"); err == nil || !strings.Contains(err.Error(), "p.json") {
			t.Errorf("%s: err %v", bad, err)
		}
	}
	tp := filepath.Join(dir, "p.toml")
	os.WriteFile(tp, []byte("[prompt]\n"), 0o644)
	if _, err := LoadPrompts(tp); err == nil {
		t.Error("TOML accepted")
	}
	if _, err := LoadPrompts(filepath.Join(dir, "missing.txt")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestParseAttention(t *testing.T) {
	const a = 1.1
	cases := []struct {
		in   string
		want []Weighted
	}{
		{"", []Weighted{{"", 1}}},
		{"normal text", []Weighted{{"normal text", 1}}},
		{"an (important) word", []Weighted{{"an ", 1}, {"important", a}, {" word", 1}}},
		{"a (unbalanced", []Weighted{{"a ", 1}, {"unbalanced", a}}},
		{`\(literal\]`, []Weighted{{"(literal]", 1}}},
		{"(unnecessary)(parens)", []Weighted{{"unnecessaryparens", a}}},
		{"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", []Weighted{
			{"a ", 1}, {"house", 1.3 * a * a}, {" ", a}, {"on", a / a}, {" a ", a},
			{"hill", 0.5 * a}, {", sun, ", a}, {"sky", a * a * a * a}, {".", a}}},
		{"[[dim]]", []Weighted{{"dim", 1 / a / a}}},
		{"ratio 1:2 x", []Weighted{{"ratio 1:2 x", 1}}},
		{"time 3:30) end", []Weighted{{"time 3:30) end", 1}}},
	}
	for _, c := range cases {
		got := ParseAttention(c.in)
		ok := len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i].Text == c.want[i].Text && math.Abs(got[i].Weight-c.want[i].Weight) < 1e-12
		}
		if !ok {
			t.Errorf("ParseAttention(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"a --n b --w 64", "x --l 7.5 --d 3", "--s", " -- -- --"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseLine(s, "fuzz")
		if err == nil {
			if p.Validate() != nil || strings.Contains(p.Prompt, " --") {
				t.Fatalf("accepted %q as %+v", s, p)
			}
		}
		ParseAttention(s)
	})
}
