// Package datasettest writes small synthetic Kohya-style datasets: the demo
// data of `make demo` and the input of the dataset, bucket and end-to-end
// tests. Everything is deterministic (fixed seeds, Go's own encoders), so
// the files, and the sha256 in scan records, are the same on every run with
// the same Go version.
package datasettest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/image/bmp"
)

// File is one image of a generated dataset.
type File struct {
	Path        string // relative to the dataset root
	W, H        int    // stored size
	Orientation int    // EXIF orientation written into a JPEG (0: none)
	Caption     string // written to Path minus extension + ".caption" if non-empty
}

// Demo is the dataset of `make demo`: the recipe's train folder
// "img/30_pralyco woman" and reg folder "reg/1_woman", JPEG and PNG at
// several aspect ratios, one JPEG stored landscape with EXIF orientation 6
// (shown portrait), caption files for two images (one through the
// face-crop naming scheme base_cx_cy_w_h).
var Demo = []File{
	{Path: "img/30_pralyco woman/01.jpg", W: 1024, H: 768, Caption: "pralyco woman, smiling, outdoors"},
	{Path: "img/30_pralyco woman/02.png", W: 512, H: 512},
	{Path: "img/30_pralyco woman/03.jpg", W: 768, H: 1024},
	{Path: "img/30_pralyco woman/04_rotated.jpg", W: 640, H: 480, Orientation: 6},
	{Path: "img/30_pralyco woman/05.png", W: 700, H: 500},
	{Path: "img/30_pralyco woman/06.jpg", W: 1920, H: 1080},
	{Path: "img/30_pralyco woman/07.JPG", W: 300, H: 300},
	{Path: "img/30_pralyco woman/08_face_400_300_120_120.jpg", W: 800, H: 1200},
	{Path: "img/30_pralyco woman/08_face.caption", Caption: "pralyco woman, close-up portrait"},
	{Path: "reg/1_woman/r01.jpg", W: 512, H: 768},
	{Path: "reg/1_woman/r02.png", W: 600, H: 600},
	{Path: "reg/1_woman/r03.jpg", W: 768, H: 512},
	{Path: "reg/1_woman/r04.jpg", W: 500, H: 700},
	{Path: "reg/1_woman/r05.jpg", W: 1024, H: 1024},
}

// Write writes files under root. A File whose Path ends in the caption
// extension ".caption" only writes the caption.
func Write(root string, files []File) error {
	for i, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		ext := filepath.Ext(f.Path)
		if ext == ".caption" || ext == ".txt" {
			if err := os.WriteFile(p, []byte(f.Caption+"\n"), 0o644); err != nil {
				return err
			}
			continue
		}
		b, err := Encode(ext, Pattern(f.W, f.H, uint64(i+1)), f.Orientation)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		if f.Caption != "" {
			c := p[:len(p)-len(ext)] + ".caption"
			if err := os.WriteFile(c, []byte(f.Caption+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// Pattern is a w×h test picture: smooth colour gradients, a few discs and
// mild noise, different for each seed (never flat, never all zero). Its top
// left quarter is darker than the rest so that orientation can be checked.
func Pattern(w, h int, seed uint64) *image.NRGBA {
	rng := rand.New(rand.NewPCG(seed, 0x10c0))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	type disc struct{ x, y, r float64 }
	discs := make([]disc, 3)
	for i := range discs {
		discs[i] = disc{rng.Float64() * float64(w), rng.Float64() * float64(h), (0.1 + 0.2*rng.Float64()) * float64(min(w, h))}
	}
	phase := rng.Float64() * 2 * math.Pi
	for y := range h {
		for x := range w {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			r := 60 + 150*fx
			g := 60 + 150*fy
			b := 120 + 80*math.Sin(phase+6*fx+4*fy)
			for _, d := range discs {
				dx, dy := float64(x)-d.x, float64(y)-d.y
				if dx*dx+dy*dy < d.r*d.r {
					r, g, b = 255-r, 255-g, b*0.5
				}
			}
			if x < w/2 && y < h/2 {
				r, g, b = r*0.4, g*0.4, b*0.4
			}
			n := rng.Float64()*12 - 6
			img.SetNRGBA(x, y, color.NRGBA{clamp(r + n), clamp(g + n), clamp(b + n), 255})
		}
	}
	return img
}

func clamp(v float64) uint8 { return uint8(max(0, min(255, math.Round(v)))) }

// Encode encodes img by extension (.jpg/.jpeg as JPEG quality 90, .png as
// PNG, .bmp as BMP;
// case-insensitive). A JPEG gets an EXIF APP1 segment with the given
// orientation when orientation > 0.
func Encode(ext string, img image.Image, orientation int) ([]byte, error) {
	var buf bytes.Buffer
	switch lower(ext) {
	case ".jpg", ".jpeg":
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
			return nil, err
		}
		if orientation > 0 {
			return InsertJPEGSegment(buf.Bytes(), 0xE1, ExifOrientation(orientation, true)), nil
		}
		return buf.Bytes(), nil
	case ".png":
		// BestSpeed: the noise makes default compression very slow.
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		err := enc.Encode(&buf, img)
		return buf.Bytes(), err
	case ".bmp":
		err := bmp.Encode(&buf, img)
		return buf.Bytes(), err
	}
	return nil, fmt.Errorf("datasettest: cannot encode %q", ext)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ExifOrientation is an APP1 payload ("Exif\0\0" + a TIFF block whose IFD0
// holds a second, unrelated tag and the orientation tag), big-endian
// ("MM") or little-endian ("II").
func ExifOrientation(o int, bigEndian bool) []byte {
	var bo interface {
		AppendUint16([]byte, uint16) []byte
		AppendUint32([]byte, uint32) []byte
	} = binary.LittleEndian
	mark := "II"
	if bigEndian {
		bo, mark = binary.BigEndian, "MM"
	}
	t := []byte(mark)
	t = bo.AppendUint16(t, 42)
	t = bo.AppendUint32(t, 8)
	t = bo.AppendUint16(t, 2) // two entries
	// 0x010F Make, ASCII, 4 bytes inline "loc\0".
	t = bo.AppendUint16(t, 0x010F)
	t = bo.AppendUint16(t, 2)
	t = bo.AppendUint32(t, 4)
	t = append(t, 'l', 'o', 'c', 0)
	// 0x0112 Orientation, SHORT, 1 value, left-justified in the field.
	t = bo.AppendUint16(t, 0x0112)
	t = bo.AppendUint16(t, 3)
	t = bo.AppendUint32(t, 1)
	t = bo.AppendUint16(t, uint16(o))
	t = bo.AppendUint16(t, 0)
	t = bo.AppendUint32(t, 0) // no next IFD
	return append([]byte("Exif\x00\x00"), t...)
}

// InsertJPEGSegment returns jpg with a marker segment (e.g. 0xE1 APP1,
// 0xFE COM) inserted right after SOI.
func InsertJPEGSegment(jpg []byte, marker byte, payload []byte) []byte {
	out := make([]byte, 0, len(jpg)+4+len(payload))
	out = append(out, jpg[:2]...)
	out = append(out, 0xFF, marker)
	out = binary.BigEndian.AppendUint16(out, uint16(len(payload)+2))
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}
