// Command loco-bucket assigns each record from loco-scan to an
// aspect-ratio bucket exactly as kohya sd-scripts does, adding bucket,
// resized size, crop and aspect error (see ../../pkg/bucket).
package main

import (
	"fmt"
	"io"
	"os"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/pkg/bucket"
	"loco/pkg/manifest"
)

const usage = `loco-bucket reads image records (JSON Lines from loco-scan) and adds to each
its bucket [w,h], resized size [w,h], crop [left,top,right,bottom] in the
resized image and aspect error, as kohya sd-scripts buckets with the same
arguments. A histogram goes to stderr: images and images x repeats per
bucket, batches for --batch-size, mean aspect error.

Two modes, as in sd-scripts: a predefined bucket list (default), or, with
--bucket-no-upscale (the kohya_ss GUI default), a bucket per image size
that never enlarges the image.

Examples:
   loco-scan img --reg reg | loco-bucket -r 512 > bucketed.jsonl
   loco-bucket -r 512 --bucket-no-upscale -i scan.jsonl -o bucketed.jsonl
   loco-bucket -r 768 --list                # print the bucket list
   loco-bucket -r 512,768 --max-bucket-reso 2048 --batch-size 4 < scan.jsonl`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "resolution", Aliases: []string{"r"}, Usage: "maximum bucket area as W,H or one size for a square, e.g. 512 or 512,768 (required)"},
		&ucli.IntFlag{Name: "min-bucket-reso", Value: bucket.DefaultMinReso, Usage: "smallest bucket side"},
		&ucli.IntFlag{Name: "max-bucket-reso", Value: bucket.DefaultMaxReso, Usage: "largest bucket side"},
		&ucli.IntFlag{Name: "bucket-reso-steps", Value: bucket.DefaultSteps, Usage: "bucket sides are multiples of this (a multiple of 64)"},
		&ucli.BoolFlag{Name: "bucket-no-upscale", Usage: "a bucket per image size, never enlarging (kohya_ss GUI default)"},
		&ucli.BoolFlag{Name: "list", Usage: "print the bucket list for these parameters and exit"},
		&ucli.IntFlag{Name: "batch-size", Value: 1, Usage: "batch size for the histogram's batch counts"},
		&ucli.IntFlag{Name: "gradient-accumulation-steps", Value: 1, Usage: "gradient accumulation for the updates-per-epoch count"},
		&ucli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: "-", Usage: "read records from this file (- for stdin)"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write records to this file (- for stdout)"},
		cli.ProgressFlag("accepted for uniformity; bucketing is instant"),
	}
	app := &ucli.App{
		Name:        "loco-bucket",
		Usage:       "assign records to kohya aspect-ratio buckets",
		UsageText:   "loco-bucket -r RESOLUTION [options] < records.jsonl > bucketed.jsonl",
		Description: usage,
		Flags:       flags,
		Action: func(c *ucli.Context) error {
			return bucketRecords(c, stdin, stdout, stderr)
		},
	}
	return cli.Run(app, cli.Permute(args, flags), stdout, stderr)
}

func bucketRecords(c *ucli.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	rep := cli.NewReporter("loco-bucket", stderr)
	if c.NArg() > 0 {
		return cli.Usagef("unexpected argument %q (read records with -i FILE or from stdin)", c.Args().First())
	}
	if _, err := cli.ParseProgress(c.String("progress")); err != nil {
		return err
	}
	if !c.IsSet("resolution") {
		return cli.Usagef("--resolution is required, e.g. -r 512")
	}
	res, err := bucket.ParseResolution(c.String("resolution"))
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	bs, ga := c.Int("batch-size"), c.Int("gradient-accumulation-steps")
	if bs < 1 || ga < 1 {
		return cli.Usagef("--batch-size and --gradient-accumulation-steps must be at least 1")
	}
	p := bucket.Params{
		Resolution: res,
		MinReso:    c.Int("min-bucket-reso"),
		MaxReso:    c.Int("max-bucket-reso"),
		Steps:      c.Int("bucket-reso-steps"),
		NoUpscale:  c.Bool("bucket-no-upscale"),
	}
	b, warns, err := bucket.New(p)
	for _, w := range warns {
		rep.Warnf("%s", w)
	}
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	if p.NoUpscale && (c.IsSet("min-bucket-reso") || c.IsSet("max-bucket-reso")) {
		rep.Warnf("--min-bucket-reso and --max-bucket-reso are ignored with --bucket-no-upscale (buckets follow the image sizes)")
	}

	if c.Bool("list") {
		if p.NoUpscale {
			return cli.Usagef("--list: with --bucket-no-upscale there is no fixed list (one bucket per image size)")
		}
		out, err := cli.CreateOutput(c.String("output"), stdout)
		if err != nil {
			return err
		}
		defer out.Abort()
		for _, s := range b.List() {
			fmt.Fprintf(out, "%d %d\n", s.W, s.H)
		}
		return out.Commit()
	}

	in, closeIn, err := cli.OpenInput(c.String("input"), stdin)
	if err != nil {
		return err
	}
	defer closeIn()
	// All records are read and checked before anything is written, so a bad
	// line never leaves a partial output.
	name := c.String("input")
	recs, err := manifest.ReadAll(in, displayName(name), "oriented_width", "oriented_height", "repeats", "is_reg")
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("no records in %s (expected JSON Lines from loco-scan)", displayName(name))
	}
	var hist bucket.Histogram
	for i, r := range recs {
		a, err := b.Assign(r.OrientedWidth, r.OrientedHeight)
		if err != nil {
			return &manifest.LineError{Name: displayName(name), Line: i + 1, Err: fmt.Errorf("%s: %w", r.Path, err)}
		}
		bk, rs, cr, ae := [2]int{a.Bucket.W, a.Bucket.H}, [2]int{a.Resized.W, a.Resized.H}, a.Crop, a.AspectError
		r.Bucket, r.Resized, r.Crop, r.AspectError = &bk, &rs, &cr, &ae
		hist.Add(a, r.EpochRepeats())
	}
	out, err := cli.CreateOutput(c.String("output"), stdout)
	if err != nil {
		return err
	}
	defer out.Abort()
	w := manifest.NewWriter(out)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			return err
		}
	}
	if err := out.Commit(); err != nil {
		return err
	}
	mode := "predefined buckets"
	if p.NoUpscale {
		mode = "per-image buckets (no upscale)"
	}
	bp := b.Params()
	rep.Printf("loco-bucket: %d records, resolution %dx%d, %s, steps %d, min %d, max %d\n", len(recs), bp.Resolution[0], bp.Resolution[1], mode, bp.Steps, bp.MinReso, bp.MaxReso)
	hist.Print(stderr, bs, ga)
	return nil
}

func displayName(n string) string {
	if n == "" || n == "-" {
		return "stdin"
	}
	return n
}
