// Command loco-sample makes images from an SD 1.x checkpoint with LoCon or
// LoHa networks applied at chosen multipliers, from prompts with kohya's
// inline options (see ../../pkg/sample), and lays PNGs out in contact
// sheets.
package main

import (
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/internal/device"
	"loco/pkg/lycoris"
	"loco/pkg/merge"
	"loco/pkg/sample"
	"loco/pkg/tokenizer"
	"loco/pkg/train"
)

const usage = `loco-sample makes images with an SD 1.x checkpoint and, optionally,
LoCon/LoHa networks (kohya/LyCORIS .safetensors, e.g. from loco-train)
applied at a multiplier, the way loco-train makes its sample images
(spec/sample.md). Each prompt gives one PNG carrying its settings in an
AUTOMATIC1111 "parameters" text chunk.

Prompts come from -p (repeatable) or --prompts FILE (.txt, one prompt per
line, '#' lines skipped, or .json), with kohya's inline options:
   --n NEGATIVE  --w WIDTH  --h HEIGHT  --s STEPS  --l CFG_SCALE  --d SEED  --ss SAMPLER
Defaults: 512×512, 30 steps, CFG 7.5. Sizes must be multiples of 8 (of 64
for an SD 1.x UNet); a bad line is an error naming it. A prompt without
--d gets --seed + its index.

A network is FILE, FILE:MULTIPLIER or FILE:TE_MULTIPLIER:UNET_MULTIPLIER;
several networks add up. A network whose modules do not match the base
model's layers (names and shapes) is refused.

Images are written to --output-dir as [<output-name>_]<ii>_<seed>.png;
--sheet adds a contact sheet [<output-name>_]sheet.png.

   loco-sample sheet -o FILE [--cols N] IMAGE...
lays existing PNGs out in a grid labelled with their file names (e.g. the
samples and loss plots of several runs).

Examples:
   loco-sample --model sd15.safetensors --network out/pralyco.safetensors:0.8 -p "pralyco, photo of a woman --d 42" -o samples
   loco-sample --model sd15.safetensors --network a.safetensors:0.6 --network b.safetensors:1:0.5 --prompts prompts.txt --sheet -o samples
   loco-sample --model sd15.safetensors -p "a cat --w 512 --h 768 --s 20 --l 6 --n blurry" --sampler ddim --seed 7 -o .
   loco-sample sheet -o compare.png runs/*/sample.png runs/*/loss.png`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func flags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "model", Aliases: []string{"pretrained-model-name-or-path"}, Usage: "SD 1.x single-file checkpoint (.safetensors)"},
		&ucli.StringFlag{Name: "vocab", Usage: "CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz, or a vocab.json+merges.txt folder); default $" + tokenizer.EnvVocab},
		&ucli.StringSliceFlag{Name: "network", Aliases: []string{"n"}, Usage: "network FILE[:MULT[:UNET_MULT]]; repeat the flag"},
		&ucli.StringSliceFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "a prompt line with inline options; repeat the flag"},
		&ucli.StringFlag{Name: "prompts", Usage: "prompt file (.txt or .json)"},
		&ucli.StringFlag{Name: "sampler", Aliases: []string{"sample-sampler"}, Value: "euler_a", Usage: "euler_a, ddim (kohya's DDIM), ddim_sd15 (SD 1.5's DDIM config)"},
		&ucli.Int64Flag{Name: "seed", Usage: "seed of the first prompt without --d (the next ones count up); 0: draw one and print it"},
		&ucli.IntFlag{Name: "clip-skip", Value: 1, Usage: "text-encoder layer from the end (2: the penultimate)"},
		&ucli.StringFlag{Name: "output-dir", Aliases: []string{"o"}, Value: ".", Usage: "output folder"},
		&ucli.StringFlag{Name: "output-name", Usage: "file name prefix"},
		&ucli.BoolFlag{Name: "sheet", Usage: "also write a contact sheet of the images"},
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto (a CUDA GPU when one is found, else the CPU), cuda or cpu"},
		&ucli.StringFlag{Name: "mixed-precision", Value: "fp16", Usage: "on a GPU: activations and weights in fp16, bf16 or no (float32); the CPU computes in float32"},
		cli.ProgressFlag(""),
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sheet" {
		return runSheet(args[1:], stdout, stderr)
	}
	fl := flags()
	app := &ucli.App{
		Name:                      "loco-sample",
		Usage:                     "make images with an SD 1.x checkpoint and LoCon networks",
		UsageText:                 "loco-sample --model MODEL [--network NET[:MULT]]... (-p PROMPT | --prompts FILE) [-o DIR]\n   loco-sample sheet -o FILE IMAGE...",
		Description:               usage,
		Flags:                     fl,
		DisableSliceFlagSeparator: true, // prompts and paths may contain commas
		Action: func(c *ucli.Context) error {
			return action(c, stderr)
		},
	}
	return cli.Run(app, cli.Permute(args, fl), stdout, stderr)
}

// prompts gathers the -p lines and the prompt file; everything is parsed
// before any weights are loaded.
func prompts(c *ucli.Context) ([]sample.Prompt, error) {
	var out []sample.Prompt
	for i, line := range c.StringSlice("prompt") {
		p, err := sample.ParseLine(line, fmt.Sprintf("-p #%d", i+1))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if f := c.String("prompts"); f != "" {
		ps, err := sample.LoadPrompts(f)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("%s: no prompt in the file", f)
		}
		out = append(out, ps...)
	}
	if len(out) == 0 {
		return nil, cli.Usagef("give a prompt (-p TEXT) or a prompt file (--prompts FILE)")
	}
	return out, nil
}

func action(c *ucli.Context, stderr io.Writer) error {
	rep := cli.NewReporter("loco-sample", stderr)
	if c.NArg() > 0 {
		return cli.Usagef("unexpected argument %q (prompts go in -p or --prompts)", c.Args().First())
	}
	mode, err := cli.ParseProgress(c.String("progress"))
	if err != nil {
		return err
	}
	ps, err := prompts(c)
	if err != nil {
		return err
	}
	sampler, err := sample.ByName(c.String("sampler"))
	if err != nil {
		return cli.Usagef("--sampler: %v", err)
	}
	if cs := c.Int("clip-skip"); cs < 1 {
		return cli.Usagef("--clip-skip %d: want 1 or more", cs)
	}
	var nets []merge.Input
	for _, a := range c.StringSlice("network") {
		in, err := merge.ParseInput(a)
		if err != nil {
			return cli.Usagef("--network: %v", err)
		}
		nets = append(nets, in)
	}
	if c.String("model") == "" {
		return cli.Usagef("--model CHECKPOINT is required")
	}
	dir := c.String("output-dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output folder %s: %v", dir, err)
	}
	// The network files are read (and checked) before the model is loaded.
	var files []*lycoris.File
	for _, n := range nets {
		f, err := lycoris.ReadFile(n.Path)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	tok, err := tokenizer.LoadDefault(c.String("vocab"))
	if err != nil {
		return err
	}
	e, err := device.Engine(c.String("device"), c.String("mixed-precision"), "sampling", rep.Notef)
	if err != nil {
		return err
	}
	m, info, _, err := train.LoadModels(c.String("model"), e, e.Act, tok)
	if err != nil {
		return err
	}
	v, err := train.LoadVAE(c.String("model"), e, e.Act)
	if err != nil {
		return err
	}
	for i, f := range files {
		if _, err := train.AttachNetwork(m, f, float32(nets[i].TE), float32(nets[i].UNet)); err != nil {
			return err
		}
		rep.Notef("network %s: %d modules, multiplier TE %g, UNet %g", f.Path, len(f.Modules), nets[i].TE, nets[i].UNet)
	}
	seed := c.Int64("seed")
	if seed == 0 {
		seed = int64(rand.Uint32())
		rep.Notef("seed %d (random; pass --seed %d to repeat)", seed, seed)
	}
	pl := &sample.Pipeline{E: e, UNet: m.UNet, CLIP: m.TE, VAE: v, Tok: tok, ClipSkip: c.Int("clip-skip"),
		Sampler: sampler, ModelName: strings.TrimSuffix(info.ModelName, filepath.Ext(info.ModelName))}
	prefix := c.String("output-name")
	if prefix != "" {
		prefix += "_"
	}
	sheet := ""
	if c.Bool("sheet") {
		sheet = filepath.Join(dir, prefix+"sheet.png")
	}
	prog := cli.NewProgress(mode, stderr, "sample", len(ps))
	rep.Progress = prog // warnings go above the progress line
	paths, err := pl.Round(ps, dir,
		func(i int) int64 { return seed + int64(i) },
		func(i int, p sample.Prompt, s int64) string { return fmt.Sprintf("%s%02d_%d.png", prefix, i, s) },
		sheet,
		func(path string, r *sample.Result) {
			prog.Add(1)
			for _, w := range r.Warnings {
				rep.Warnf("%s", w)
			}
		})
	prog.Finish()
	rep.Progress = nil
	for _, p := range paths {
		fmt.Fprintln(c.App.Writer, p)
	}
	return err
}

// runSheet is "loco-sample sheet": a contact sheet of existing images.
func runSheet(args []string, stdout, stderr io.Writer) int {
	fl := []ucli.Flag{
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the sheet to write (.png)"},
		&ucli.IntFlag{Name: "cols", Usage: "columns (0: about the square root of the count)"},
	}
	app := &ucli.App{
		Name:      "loco-sample sheet",
		Usage:     "lay PNG images out in a labelled grid",
		UsageText: "loco-sample sheet -o FILE [--cols N] IMAGE...",
		Flags:     fl,
		Action: func(c *ucli.Context) error {
			if c.String("output") == "" || c.NArg() == 0 {
				return cli.Usagef("sheet needs -o FILE and at least one image")
			}
			if c.Int("cols") < 0 {
				return cli.Usagef("--cols %d: want 0 or more", c.Int("cols"))
			}
			var imgs []image.Image
			var labels []string
			for _, p := range c.Args().Slice() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				im, err := png.Decode(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: not a readable PNG: %v", p, err)
				}
				imgs = append(imgs, im)
				labels = append(labels, sheetLabel(p))
			}
			return sample.WriteImagePNG(c.String("output"), sample.ContactSheet(imgs, labels, c.Int("cols")))
		},
	}
	return cli.Run(app, cli.Permute(args, fl), stdout, stderr)
}

// sheetLabel is an image's label: its folder and file name without the
// extension.
func sheetLabel(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if d := filepath.Base(filepath.Dir(path)); d != "." && d != "/" {
		return d + "/" + base
	}
	return base
}
