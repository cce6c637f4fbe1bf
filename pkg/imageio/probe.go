package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// DefaultMaxPixels refuses images larger than Pillow's decompression-bomb
// error threshold (2 × 89,478,485 pixels).
const DefaultMaxPixels = 2 * 89_478_485

// Info describes an image file without its pixels.
type Info struct {
	Format      string // jpeg, png, webp, bmp
	Width       int    // stored
	Height      int
	Orientation int // EXIF 1..8
}

// OrientedSize is the size after applying the EXIF orientation.
func (i Info) OrientedSize() (int, int) { return OrientedSize(i.Width, i.Height, i.Orientation) }

// Errors of Probe, to be tested with errors.Is.
var (
	ErrEmpty     = errors.New("empty file (0 bytes)")
	ErrNotImage  = errors.New("not an image: content is not JPEG, PNG, WebP or BMP")
	ErrCorrupt   = errors.New("corrupt image")
	ErrTruncated = errors.New("truncated image")
	ErrTooLarge  = errors.New("image too large")
)

type format struct {
	name   string
	magic  func([]byte) bool
	config func(*bytes.Reader) (image.Config, error)
	decode func(*bytes.Reader) (image.Image, error)
	// complete checks that the file is not cut short, from its structure
	// only (end marker, declared sizes), without decoding pixels.
	complete func([]byte) bool
}

var formats = []format{
	{"jpeg", func(b []byte) bool { return len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF },
		func(r *bytes.Reader) (image.Config, error) { return jpeg.DecodeConfig(r) },
		func(r *bytes.Reader) (image.Image, error) { return jpeg.Decode(r) },
		jpegComplete},
	{"png", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) },
		func(r *bytes.Reader) (image.Config, error) { return png.DecodeConfig(r) },
		func(r *bytes.Reader) (image.Image, error) { return png.Decode(r) },
		pngComplete},
	{"webp", func(b []byte) bool { return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP" },
		func(r *bytes.Reader) (image.Config, error) { return webp.DecodeConfig(r) },
		func(r *bytes.Reader) (image.Image, error) { return webp.Decode(r) },
		webpComplete},
	{"bmp", func(b []byte) bool { return len(b) >= 2 && string(b[:2]) == "BM" },
		func(r *bytes.Reader) (image.Config, error) { return bmp.DecodeConfig(r) },
		func(r *bytes.Reader) (image.Image, error) { return bmp.Decode(r) },
		bmpComplete},
}

// orientationOf reads the EXIF orientation of the formats that carry one.
var orientationOf = map[string]func([]byte) (int, error){
	"jpeg": JPEGOrientation,
	"png":  PNGOrientation,
	"webp": WebPOrientation,
}

func sniff(b []byte) (*format, error) {
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	for i := range formats {
		if formats[i].magic(b) {
			return &formats[i], nil
		}
	}
	return nil, ErrNotImage
}

// Probe reads format, size and orientation from the whole file content b,
// decoding headers only. It refuses files that are empty, not an image,
// with a corrupt header, structurally truncated, or with more than
// maxPixels pixels (0 means DefaultMaxPixels) — the last check uses the
// header, before any pixel memory is allocated.
func Probe(b []byte, maxPixels int64) (Info, error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	f, err := sniff(b)
	if err != nil {
		return Info{}, err
	}
	cfg, err := f.config(bytes.NewReader(b))
	if err != nil {
		return Info{}, fmt.Errorf("%w: %s header: %v", ErrCorrupt, f.name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Info{}, fmt.Errorf("%w: %s header gives a %dx%d size", ErrCorrupt, f.name, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return Info{}, fmt.Errorf("%w: %dx%d = %d pixels, over the limit of %d (possible decompression bomb)", ErrTooLarge, cfg.Width, cfg.Height, px, maxPixels)
	}
	if !f.complete(b) {
		return Info{}, fmt.Errorf("%w: %s file ends early (%d bytes)", ErrTruncated, f.name, len(b))
	}
	info := Info{Format: f.name, Width: cfg.Width, Height: cfg.Height, Orientation: 1}
	if orient := orientationOf[f.name]; orient != nil {
		o, err := orient(b)
		if err != nil {
			return Info{}, fmt.Errorf("%w: EXIF: %v", ErrCorrupt, err)
		}
		info.Orientation = o
	}
	return info, nil
}

// jpegComplete: the file ends with the EOI marker (trailing zero padding,
// which some cameras write, is allowed).
func jpegComplete(b []byte) bool {
	b = bytes.TrimRight(b, "\x00")
	return len(b) >= 4 && b[len(b)-2] == 0xFF && b[len(b)-1] == 0xD9
}

// pngComplete: the chunk sequence is intact up to IEND.
func pngComplete(b []byte) bool {
	i := 8
	for i+12 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		if n < 0 || n > len(b) {
			return false
		}
		typ := string(b[i+4 : i+8])
		i += 12 + n
		if i > len(b) {
			return false
		}
		if typ == "IEND" {
			return true
		}
	}
	return false
}

// webpComplete: the RIFF size covers the file.
func webpComplete(b []byte) bool {
	return len(b) >= 12 && int64(binary.LittleEndian.Uint32(b[4:]))+8 <= int64(len(b))
}

// bmpComplete: the file is at least as long as its header says.
func bmpComplete(b []byte) bool {
	return len(b) >= 14 && int64(binary.LittleEndian.Uint32(b[2:])) <= int64(len(b))
}
