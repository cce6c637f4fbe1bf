// Command loco-merge bakes LoCon networks into SD 1.x checkpoints, resizes,
// combines and extracts networks, and inspects files (see ../../pkg/merge).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/pkg/lycoris"
	"loco/pkg/merge"
	"loco/pkg/safetensors"
)

const usage = `loco-merge works on LoCon networks (kohya/LyCORIS .safetensors) and
single-file SD 1.x checkpoints:

   apply     bake networks into a checkpoint
   resize    shrink a network to a lower rank (fixed or by singular values)
   combine   sum several networks into one of a chosen rank
   extract   make a network from the difference of two checkpoints
   inspect   show what a network or checkpoint holds

Examples:
   loco-merge apply --base sd15.safetensors out/pralyco.safetensors:0.8 -o merged.safetensors
   loco-merge apply --base sd15.safetensors a.safetensors:0.5:1.0 b.safetensors --precision fp16 -o merged.safetensors
   loco-merge resize --rank 4 out/pralyco.safetensors -o out/pralyco-r4.safetensors
   loco-merge resize --rank 8 --dynamic-method sv_fro --dynamic-param 0.9 net.safetensors -o net-fro.safetensors
   loco-merge combine a.safetensors:0.7 b.safetensors:0.3 --rank 8 --conv-rank 4 -o ab.safetensors
   loco-merge extract --base sd15.safetensors --tuned finetuned.safetensors --rank 8 --conv-rank 4 -o diff.safetensors
   loco-merge inspect out/pralyco.safetensors
   loco-merge inspect --json sd15.safetensors | jq .parts

A network argument is FILE, FILE:RATIO or FILE:TE_RATIO:UNET_RATIO.`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

var (
	outFlag       = &ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the file to write (written under a temporary name, renamed at the end)"}
	precisionFlag = &ucli.StringFlag{Name: "precision", Value: "keep", Usage: "dtype of the written tensors: keep (the input's), fp32, fp16, bf16"}
	rankFlag      = &ucli.IntFlag{Name: "rank", Usage: "rank of Linear and 1×1 conv modules (required)"}
	convRankFlag  = &ucli.IntFlag{Name: "conv-rank", Usage: "rank of k×k conv modules (default: --rank)"}
	clampFlag     = &ucli.Float64Flag{Name: "clamp-quantile", Usage: "clamp factors to this quantile of their values, as kohya does with 0.99 (default: no clamp, the exact best approximation)"}
	progressFlag  = cli.ProgressFlag("")
)

func commands(stdout, stderr io.Writer) []*ucli.Command {
	rep := cli.NewReporter("loco-merge", stderr)
	return []*ucli.Command{
		{
			Name:      "apply",
			Usage:     "bake networks into a checkpoint: W' = W + ratio·(alpha/rank)·up·down",
			UsageText: "loco-merge apply --base CHECKPOINT NETWORK[:RATIO[:UNET_RATIO]]... -o OUTPUT",
			Description: `Every LoCon module (Linear, 1×1, k×k and Tucker convs; UNet and text
encoder; the 2023 and current LyCORIS layer sets) is added in float32 to the
checkpoint weight it targets; every other tensor is copied unchanged. The
output keeps each tensor's dtype unless --precision is given. Networks whose
modules match no SD 1.x layer (SDXL, SD 2.x) are refused with the list.`,
			Flags: []ucli.Flag{&ucli.StringFlag{Name: "base", Usage: "the SD 1.x checkpoint (.safetensors)"}, outFlag, precisionFlag, progressFlag},
			Action: func(c *ucli.Context) error {
				if c.String("base") == "" || c.NArg() == 0 || c.String("output") == "" {
					return cli.Usagef("apply needs --base, at least one network and -o")
				}
				prec, err := parsePrecision(c.String("precision"))
				if err != nil {
					return err
				}
				mode, err := cli.ParseProgress(c.String("progress"))
				if err != nil {
					return err
				}
				nets, err := parseInputs(c.Args().Slice())
				if err != nil {
					return err
				}
				prog := cli.NewProgress(mode, stderr, "loco-merge: writing", 0)
				opt := merge.ApplyOptions{Base: c.String("base"), Networks: nets, Output: c.String("output"), Precision: prec}
				if prog != nil {
					opt.Progress = func(done, total int) { prog.SetTotal(total); prog.Add(1) }
				}
				r, err := merge.Apply(opt)
				prog.Finish()
				if err != nil {
					return err
				}
				for _, n := range nets {
					rep.Notef("%s: %d modules applied (text encoder ratio %g, UNet ratio %g)", n.Path, r.Modules[n.Path], n.TE, n.UNet)
				}
				rep.Notef("wrote %s: %d tensors, %d layer weights changed", opt.Output, r.Tensors, r.Changed)
				return nil
			},
		},
		{
			Name:      "resize",
			Usage:     "shrink a network by SVD to a fixed rank or by singular values",
			UsageText: "loco-merge resize --rank N [--conv-rank C] [--dynamic-method M --dynamic-param P] NETWORK -o OUTPUT",
			Description: `As kohya's resize_lora.py (same rank choice, alpha rule and metadata),
with its defects fixed: Tucker modules are folded into plain k×k factors,
1×1 convs take --rank (not --conv-rank), no module grows beyond its old
rank, and the SVD runs in float64. Dynamic methods: sv_ratio (keep σ > σ₁/P),
sv_fro (keep a fraction P of the Frobenius norm), sv_cumulative (a fraction P
of Σσ); --rank (and --conv-rank) cap them.`,
			Flags: []ucli.Flag{rankFlag, convRankFlag,
				&ucli.StringFlag{Name: "dynamic-method", Usage: "sv_ratio, sv_fro or sv_cumulative"},
				&ucli.StringFlag{Name: "dynamic-param", Usage: "the dynamic method's parameter"},
				&ucli.BoolFlag{Name: "verbose", Usage: "one line per module: ranks, retained sums, discarded error"},
				outFlag, precisionFlag},
			Action: func(c *ucli.Context) error {
				if c.NArg() != 1 || c.String("output") == "" {
					return cli.Usagef("resize needs one network and -o")
				}
				prec, err := parsePrecision(c.String("precision"))
				if err != nil {
					return err
				}
				o := merge.ResizeOptions{Rank: c.Int("rank"), ConvRank: c.Int("conv-rank"), Method: c.String("dynamic-method"), Precision: prec}
				if o.Method != "" {
					if c.String("dynamic-param") == "" {
						return cli.Usagef("--dynamic-method %s needs --dynamic-param", o.Method)
					}
					if _, err := fmt.Sscan(c.String("dynamic-param"), &o.Param); err != nil {
						return cli.Usagef("--dynamic-param %q is not a number", c.String("dynamic-param"))
					}
				}
				if err := o.Check(); err != nil {
					return cli.Usagef("%v", err)
				}
				r, err := merge.Resize(c.Args().First(), c.String("output"), o)
				if err != nil {
					return err
				}
				hist := map[string]int{}
				for _, m := range r.Modules {
					if c.Bool("verbose") {
						rep.Printf("%s: rank %d -> %d, alpha %g, sum retained %.4f, fro retained %.4f, max ratio %.3g, discarded %.3g\n",
							m.Name, m.OldRank, m.Rank, m.Alpha, m.SumRetained, m.FroRetained, m.MaxRatio, m.DiscardedError)
					}
					hist[fmt.Sprintf("%d->%d", m.OldRank, m.Rank)]++
				}
				rep.Notef("wrote %s: %d modules, ranks %s", c.String("output"), len(r.Modules), counts(hist))
				return nil
			},
		},
		{
			Name:      "combine",
			Usage:     "sum networks with ratios into one of a chosen rank",
			UsageText: "loco-merge combine NETWORK[:RATIO[:UNET_RATIO]]... --rank N [--conv-rank C] -o OUTPUT",
			Flags:     []ucli.Flag{rankFlag, convRankFlag, clampFlag, outFlag, precisionFlag},
			Action: func(c *ucli.Context) error {
				if c.NArg() == 0 || c.String("output") == "" {
					return cli.Usagef("combine needs at least one network and -o")
				}
				o, err := rankOptions(c)
				if err != nil {
					return err
				}
				nets, err := parseInputs(c.Args().Slice())
				if err != nil {
					return err
				}
				r, err := merge.Combine(nets, c.String("output"), o)
				if err != nil {
					return err
				}
				rep.Notef("wrote %s: %d modules", c.String("output"), r.Modules)
				return nil
			},
		},
		{
			Name:      "extract",
			Usage:     "make a network from the difference of two checkpoints",
			UsageText: "loco-merge extract --base CHECKPOINT --tuned CHECKPOINT --rank N [--conv-rank C] -o OUTPUT",
			Flags: []ucli.Flag{&ucli.StringFlag{Name: "base", Usage: "the original checkpoint"},
				&ucli.StringFlag{Name: "tuned", Usage: "the fine-tuned checkpoint"},
				rankFlag, convRankFlag, clampFlag,
				&ucli.StringFlag{Name: "preset", Value: "full", Usage: "layer set: full (current LyCORIS) or 2023 (without conv_in, conv_out, time_embedding)"},
				&ucli.Float64Flag{Name: "min-diff", Usage: "skip layers whose largest difference is at most this"},
				outFlag, &ucli.StringFlag{Name: "precision", Value: "fp32", Usage: "dtype of the written tensors: fp32, fp16, bf16"}},
			Action: func(c *ucli.Context) error {
				if c.String("base") == "" || c.String("tuned") == "" || c.String("output") == "" || c.NArg() != 0 {
					return cli.Usagef("extract needs --base, --tuned and -o (and no other argument)")
				}
				o, err := rankOptions(c)
				if err != nil {
					return err
				}
				r, err := merge.Extract(c.String("output"), merge.ExtractOptions{Base: c.String("base"), Tuned: c.String("tuned"),
					RankOptions: o, Preset: lycoris.Preset(c.String("preset")), MinDiff: c.Float64("min-diff")})
				if err != nil {
					return err
				}
				rep.Notef("wrote %s: %d modules (%d identical layers skipped)", c.String("output"), r.Modules, r.Skipped)
				return nil
			},
		},
		{
			Name:      "inspect",
			Usage:     "show a network's or checkpoint's metadata, layers, ranks, alphas and dtypes",
			UsageText: "loco-merge inspect [--json] FILE",
			Flags:     []ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "print JSON instead of text"}},
			Action: func(c *ucli.Context) error {
				if c.NArg() != 1 {
					return cli.Usagef("inspect needs one file")
				}
				info, err := merge.Inspect(c.Args().First())
				if err != nil {
					return err
				}
				if c.Bool("json") {
					b, err := json.MarshalIndent(info, "", "  ")
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(stdout, "%s\n", b)
					return err
				}
				info.WriteText(stdout)
				return nil
			},
		},
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands(stdout, stderr)
	// Let flags follow positional arguments within a subcommand.
	if len(args) > 0 {
		for _, c := range cmds {
			if c.Name == args[0] {
				args = append([]string{args[0]}, cli.Permute(args[1:], c.Flags)...)
			}
		}
	}
	app := &ucli.App{
		Name:        "loco-merge",
		Usage:       "apply, resize, combine, extract and inspect LoCon networks for SD 1.x",
		UsageText:   "loco-merge COMMAND [options] ARGS...",
		Description: usage,
		Commands:    cmds,
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("unknown command %q (apply, resize, combine, extract, inspect)", c.Args().First())
			}
			return cli.Usagef("give a command: apply, resize, combine, extract or inspect")
		},
	}
	return cli.Run(app, args, stdout, stderr)
}

// parseInputs parses the NETWORK[:WEIGHT] arguments; a bad one is a usage
// error.
func parseInputs(args []string) ([]merge.Input, error) {
	var nets []merge.Input
	for _, a := range args {
		in, err := merge.ParseInput(a)
		if err != nil {
			return nil, cli.Usagef("%v", err)
		}
		nets = append(nets, in)
	}
	return nets, nil
}

func parsePrecision(s string) (safetensors.DType, error) {
	switch strings.ToLower(s) {
	case "keep", "":
		return "", nil
	case "fp32", "float", "f32", "float32":
		return safetensors.F32, nil
	case "fp16", "f16", "float16", "half":
		return safetensors.F16, nil
	case "bf16", "bfloat16":
		return safetensors.BF16, nil
	}
	return "", cli.Usagef("--precision %q is not one of keep, fp32, fp16, bf16", s)
}

func rankOptions(c *ucli.Context) (merge.RankOptions, error) {
	prec, err := parsePrecision(c.String("precision"))
	if err != nil {
		return merge.RankOptions{}, err
	}
	o := merge.RankOptions{Rank: c.Int("rank"), ConvRank: c.Int("conv-rank"), ClampQuantile: c.Float64("clamp-quantile"), Precision: prec}
	if o.Rank < 1 {
		return o, cli.Usagef("--rank must be at least 1")
	}
	if o.ConvRank < 0 {
		return o, cli.Usagef("--conv-rank must be at least 1")
	}
	if o.ClampQuantile < 0 || o.ClampQuantile >= 1 {
		return o, cli.Usagef("--clamp-quantile must be in (0, 1)")
	}
	return o, nil
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s (%d)", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
