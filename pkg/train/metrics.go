package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// MetricsLine is one JSON line of the metrics log, written per optimizer
// update (spec/train.md §13). LR holds the rate each group used for this
// update ("unet", "textencoder").
type MetricsLine struct {
	Step      int                `json:"step"`
	Epoch     int                `json:"epoch"`
	Loss      float64            `json:"loss"`
	AvgLoss   float64            `json:"avg_loss"`
	LR        map[string]float64 `json:"lr"`
	GradNorm  float64            `json:"grad_norm"`
	Samples   int                `json:"samples"`
	ImagesSec float64            `json:"images_per_s"`
}

// Line converts an Update.
func (u Update) Line() MetricsLine {
	m := MetricsLine{Step: u.Step, Epoch: u.Epoch, Loss: u.Loss, AvgLoss: u.AvgLoss, GradNorm: u.GradNorm,
		Samples: u.Samples, ImagesSec: math.Round(u.ImagesSec*1000) / 1000, LR: map[string]float64{}}
	for i, g := range u.Groups {
		m.LR[g] = u.LR[i]
	}
	return m
}

// ReadMetrics reads a metrics log (for the plot of a resumed run); lines
// of steps after upTo (when > 0) are dropped (an interrupted run's tail).
func ReadMetrics(path string, upTo int) ([]MetricsLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MetricsLine
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		var m MetricsLine
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if upTo > 0 && m.Step > upTo {
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// PlotPNG draws the loss (light: per update, dark: kohya's average) and
// the learning rate of each group against the step, in two panels.
func PlotPNG(w io.Writer, lines []MetricsLine, title string) error {
	const W, H, pad = 800, 560, 48
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	panelH := (H - 3*pad) / 2
	drawText(img, pad, 20, title, color.Black)
	type series struct {
		ys  []float64
		col color.RGBA
	}
	panel := func(top int, label string, ss []series) {
		x0, x1, y0, y1 := pad, W-pad/2, top, top+panelH
		grey := color.RGBA{160, 160, 160, 255}
		line(img, x0, y1, x1, y1, grey)
		line(img, x0, y0, x0, y1, grey)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range ss {
			for _, y := range s.ys {
				if !math.IsNaN(y) && !math.IsInf(y, 0) {
					lo, hi = math.Min(lo, y), math.Max(hi, y)
				}
			}
		}
		if math.IsInf(lo, 1) {
			lo, hi = 0, 1
		}
		if hi == lo {
			hi = lo + 1
		}
		drawText(img, x0+4, y0+12, fmt.Sprintf("%s  (%.3g to %.3g)", label, lo, hi), color.Black)
		n := len(lines)
		for _, s := range ss {
			px, py := -1, -1
			for i, y := range s.ys {
				x := x0 + 1
				if n > 1 {
					x = x0 + 1 + i*(x1-x0-2)/(n-1)
				}
				yy := y1 - 1 - int((y-lo)/(hi-lo)*float64(panelH-16))
				if px >= 0 {
					line(img, px, py, x, yy, s.col)
				} else {
					img.Set(x, yy, s.col)
				}
				px, py = x, yy
			}
		}
	}
	var loss, avg []float64
	lrs := map[string][]float64{}
	var groups []string
	for _, l := range lines {
		loss = append(loss, l.Loss)
		avg = append(avg, l.AvgLoss)
		for _, g := range []string{"unet", "textencoder"} {
			if v, ok := l.LR[g]; ok {
				if lrs[g] == nil {
					groups = append(groups, g)
				}
				lrs[g] = append(lrs[g], v)
			}
		}
	}
	panel(pad, "loss (light) and average loss (dark)", []series{{loss, color.RGBA{150, 180, 230, 255}}, {avg, color.RGBA{20, 60, 160, 255}}})
	var lrS []series
	cols := []color.RGBA{{200, 60, 30, 255}, {30, 140, 60, 255}}
	label := "learning rate:"
	for i, g := range groups {
		lrS = append(lrS, series{lrs[g], cols[i%2]})
		label += " " + g + []string{" (red)", " (green)"}[i%2]
	}
	panel(2*pad+panelH, label, lrS)
	if n := len(lines); n > 0 {
		drawText(img, pad, H-12, fmt.Sprintf("steps %d to %d", lines[0].Step, lines[n-1].Step), color.Black)
	}
	return png.Encode(w, img)
}

// WritePlot writes the plot of lines to path atomically.
func WritePlot(path string, lines []MetricsLine, title string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := PlotPNG(tmp, lines, title); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func drawText(img *image.RGBA, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// line draws a segment (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
