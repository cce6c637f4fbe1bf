// Command loco-scan turns Kohya-style dataset folders into JSON Lines
// records, one per image, on stdout (see ../../pkg/dataset).
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/pkg/dataset"
	"loco/pkg/imageio"
	"loco/pkg/manifest"
)

const usage = `loco-scan reads dataset folders laid out as kohya sd-scripts expects
(TRAIN_DIR/<repeats>_<caption>/image files, e.g. img/30_pralyco woman/) and
writes one JSON record per image to stdout: path, size, sha256, format,
stored and EXIF-oriented size, concept folder, repeats, caption and its
source, is_reg. A summary goes to stderr.

Examples:
   loco-scan img --reg reg > train.jsonl
   loco-scan img --reg reg | loco-bucket -r 512 > bucketed.jsonl
   loco-scan --caption-extension .txt --strict img
   loco-scan --enable-wildcard img > train.jsonl   (multi-line captions for loco-train --enable-wildcard)
   loco-scan img | jq -r 'select(.caption_source == "folder") | .path'

Differences from kohya: the EXIF orientation is applied; extensions match in
any case; unreadable or corrupt images are skipped with a warning (--strict
makes them an error).`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := []ucli.Flag{
		&ucli.StringSliceFlag{Name: "reg", Usage: "a regularization folder (parent of concept folders); repeatable"},
		&ucli.StringFlag{Name: "caption-extension", Value: dataset.DefaultCaptionExtension, Usage: "caption file extension (kohya_ss GUI folders use .txt)"},
		&ucli.BoolFlag{Name: "enable-wildcard", Usage: "keep every non-empty line of caption files (joined by \\n in the caption field), as kohya reads them with enable_wildcard, for loco-train --enable-wildcard to pick one per use; without it only the first line"},
		&ucli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: runtime.GOMAXPROCS(0), Usage: "files read and hashed in parallel"},
		&ucli.Int64Flag{Name: "max-pixels", Value: imageio.DefaultMaxPixels, Usage: "refuse images with more pixels (checked from the header)"},
		&ucli.BoolFlag{Name: "strict", Usage: "fail on any skipped folder or file instead of warning"},
		&ucli.IntFlag{Name: "batch-size", Value: 1, Usage: "batch size for the steps-per-epoch estimate"},
		&ucli.IntFlag{Name: "gradient-accumulation-steps", Value: 1, Usage: "gradient accumulation for the steps-per-epoch estimate"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write records to this file (- for stdout)"},
		cli.ProgressFlag(""),
	}
	app := &ucli.App{
		Name:                      "loco-scan",
		Usage:                     "list the images of Kohya-style dataset folders as JSON Lines",
		UsageText:                 "loco-scan [options] TRAIN_DIR... [--reg REG_DIR]...",
		Description:               usage,
		Flags:                     flags,
		DisableSliceFlagSeparator: true, // folder names may contain commas
		Action: func(c *ucli.Context) error {
			return scan(c, stdout, stderr)
		},
	}
	return cli.Run(app, cli.Permute(args, flags), stdout, stderr)
}

func scan(c *ucli.Context, stdout, stderr io.Writer) error {
	rep := cli.NewReporter("loco-scan", stderr)
	if c.NArg() == 0 {
		return cli.Usagef("give at least one train folder (the parent of the <repeats>_<caption> folders)")
	}
	mode, err := cli.ParseProgress(c.String("progress"))
	if err != nil {
		return err
	}
	bs, ga := c.Int("batch-size"), c.Int("gradient-accumulation-steps")
	if bs < 1 || ga < 1 {
		return cli.Usagef("--batch-size and --gradient-accumulation-steps must be at least 1")
	}
	if c.Int("jobs") < 1 {
		return cli.Usagef("--jobs must be at least 1")
	}
	if c.Int64("max-pixels") < 1 {
		return cli.Usagef("--max-pixels must be at least 1")
	}
	opt := dataset.Options{
		TrainRoots:       c.Args().Slice(),
		RegRoots:         c.StringSlice("reg"),
		CaptionExtension: c.String("caption-extension"),
		AllCaptionLines:  c.Bool("enable-wildcard"),
		Jobs:             c.Int("jobs"),
		MaxPixels:        c.Int64("max-pixels"),
		Strict:           c.Bool("strict"),
	}
	prog := cli.NewProgress(mode, stderr, "loco-scan: reading", 0)
	if prog != nil {
		opt.Progress = func(done, total int) { prog.SetTotal(total); prog.Add(1) }
	}
	res, err := dataset.Scan(opt)
	prog.Finish()
	if res != nil {
		for _, p := range res.Problems {
			rep.Warnf("%s", p)
		}
		for _, n := range res.Notes {
			rep.Warnf("%s", n)
		}
	}
	if err != nil {
		return err
	}
	out, err := cli.CreateOutput(c.String("output"), stdout)
	if err != nil {
		return err
	}
	defer out.Abort()
	w := manifest.NewWriter(out)
	for _, r := range res.Records {
		if err := w.Write(r); err != nil {
			return err
		}
	}
	if err := out.Commit(); err != nil {
		return err
	}
	summary(rep, res, bs, ga)
	return nil
}

func summary(rep *cli.Reporter, res *dataset.Result, bs, ga int) {
	rep.Printf("%-32s %6s %7s %8s %13s\n", "folder", "images", "repeats", "samples", "caption files")
	for _, f := range res.Folders {
		name := filepath.Base(filepath.Dir(f.Path)) + "/" + f.Name
		kind := ""
		if f.IsReg {
			kind = fmt.Sprintf("  reg: %d used", f.RegUsed)
		}
		rep.Printf("%-32s %6d %7d %8d %13d%s\n", name, f.Images, f.Repeats, f.Samples(), f.Images-len(f.NoCaptionFile), kind)
	}
	trainFolders, regFolders := 0, 0
	for _, f := range res.Folders {
		if f.IsReg {
			regFolders++
		} else {
			trainFolders++
		}
	}
	rep.Printf("train: %d concept folder(s), %d images, %d samples per epoch (images x repeats, T)\n", trainFolders, res.TrainImages, res.T)
	if regFolders > 0 {
		rep.Printf("reg: %d folder(s), %d images, %d raw samples (images x repeats); %d used per epoch after balancing to T\n", regFolders, res.RegImages, res.RegRaw, res.RegBalanced)
	}
	if n := len(res.Problems); n > 0 {
		rep.Printf("skipped: %d folder(s) or file(s), see the warnings above\n", n)
	}
	rep.Printf("read: %.1f MB\n", float64(res.Bytes)/1e6)
	// train.md §12: without buckets only a lower bound of the batches is
	// known (partial batches per bucket add to it); loco-bucket prints the
	// exact numbers.
	samples := res.T + res.RegBalanced
	m := (samples + bs - 1) / bs
	rep.Printf("steps per epoch, batch size %d, accumulation %d: at least %d batches, %d updates (exact counts depend on the buckets: see loco-bucket)\n", bs, ga, m, (m+ga-1)/ga)
	regFactor := 1
	if regFolders > 0 {
		regFactor = 2
	}
	rep.Printf("kohya_ss GUI estimate: %.1f steps per epoch (repeats x .jpg/.jpeg/.png/.webp files / batch / accumulation, x2 with a reg folder)\n",
		float64(res.GUITrain)/float64(bs)/float64(ga)*float64(regFactor))
}
