package sample

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Sheet geometry: a margin around every cell and a label line under it.
const (
	sheetPad    = 4
	sheetLabel  = 16
	sheetMinW   = 96 // cells are at least this wide, so labels stay readable
	labelGlyphW = 7  // basicfont.Face7x13
)

// ContactSheet lays images out in a grid of cols columns (0: ⌈√n⌉) on a
// white background, each in a cell as large as the largest image (images
// centred, small ones enlarged by a whole factor, nearest neighbour), with
// its label (clipped to the cell) under it.
func ContactSheet(imgs []image.Image, labels []string, cols int) *image.NRGBA {
	n := len(imgs)
	if n == 0 {
		return image.NewNRGBA(image.Rect(0, 0, 1, 1))
	}
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(n))))
	}
	cols = min(cols, n)
	rows := (n + cols - 1) / cols
	cw, ch := sheetMinW, 0
	for _, im := range imgs {
		b := im.Bounds()
		cw, ch = max(cw, b.Dx()), max(ch, b.Dy())
	}
	cellW, cellH := cw+2*sheetPad, ch+2*sheetPad+sheetLabel
	out := image.NewNRGBA(image.Rect(0, 0, cols*cellW, rows*cellH))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	for i, im := range imgs {
		x0, y0 := (i%cols)*cellW+sheetPad, (i/cols)*cellH+sheetPad
		b := im.Bounds()
		k := max(1, min(cw/b.Dx(), ch/b.Dy())) // small images are enlarged k times (nearest neighbour)
		at := image.Pt(x0+(cw-k*b.Dx())/2, y0+(ch-k*b.Dy())/2)
		if k == 1 {
			draw.Draw(out, image.Rectangle{Min: at, Max: at.Add(b.Size())}, im, b.Min, draw.Over)
		} else {
			for y := range k * b.Dy() {
				for x := range k * b.Dx() {
					out.Set(at.X+x, at.Y+y, im.At(b.Min.X+x/k, b.Min.Y+y/k))
				}
			}
		}
		if i < len(labels) {
			s := labels[i]
			if maxc := cw / labelGlyphW; len(s) > maxc {
				s = s[:maxc]
			}
			d := &font.Drawer{Dst: out, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13,
				Dot: fixed.P(x0, y0+ch+sheetLabel-4)}
			d.DrawString(s)
		}
	}
	return out
}

// WriteImagePNG writes img as a plain PNG at path, atomically.
func WriteImagePNG(path string, img image.Image) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Round makes one image per prompt and writes them into dir, then a
// contact sheet of them at sheet (skipped when sheet is ""). seed gives the
// seed of prompt i when it fixes none; name gives the file name of prompt
// i's image. done, when set, is called after each image is written.
func (pl *Pipeline) Round(prompts []Prompt, dir string, seed func(i int) int64, name func(i int, p Prompt, seed int64) string,
	sheet string, done func(path string, r *Result)) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths, labels []string
	var imgs []image.Image
	for i, p := range prompts {
		s := seed(i)
		if p.HasSeed {
			s = p.Seed
		}
		r, err := pl.Generate(p, s)
		if err != nil {
			return paths, err
		}
		path := filepath.Join(dir, name(i, p, r.Seed))
		if err := r.WritePNG(path); err != nil {
			return paths, err
		}
		if err := os.Chmod(path, 0o644); err != nil {
			return paths, err
		}
		paths = append(paths, path)
		imgs = append(imgs, r.Image)
		labels = append(labels, fmt.Sprintf("%02d seed %d", i, r.Seed))
		if done != nil {
			done(path, r)
		}
	}
	if sheet != "" && len(imgs) > 0 {
		if err := WriteImagePNG(sheet, ContactSheet(imgs, labels, 0)); err != nil {
			return paths, err
		}
		paths = append(paths, sheet)
	}
	return paths, nil
}
