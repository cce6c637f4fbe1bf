package imageio

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"

	"github.com/disintegration/imaging"
)

// Decode decodes the whole file content b to 8-bit RGB (alpha 255) with the
// EXIF orientation applied. It checks the same limits as Probe first.
func Decode(b []byte, maxPixels int64) (*image.NRGBA, Info, error) {
	info, err := Probe(b, maxPixels)
	if err != nil {
		return nil, Info{}, err
	}
	f, _ := sniff(b)
	img, err := f.decode(bytes.NewReader(b))
	if err != nil {
		return nil, Info{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.name, err)
	}
	return Orient(toRGB(img), info.Orientation), info, nil
}

// toRGB converts to NRGBA with alpha dropped (not composited): the colour
// stored under each pixel is kept, as Pillow's convert("RGB") does. For
// premultiplied sources (image.RGBA) the stored colour is already scaled
// by alpha; Go's decoders return non-premultiplied types for PNG and WebP
// with alpha, so this only affects exotic inputs.
func toRGB(src image.Image) *image.NRGBA {
	b := src.Bounds()
	dst := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	switch s := src.(type) {
	case *image.NRGBA:
		for y := 0; y < b.Dy(); y++ {
			copy(dst.Pix[y*dst.Stride:y*dst.Stride+4*b.Dx()], s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):])
		}
	case *image.YCbCr, *image.Gray, *image.RGBA:
		draw.Draw(dst, dst.Rect, src, b.Min, draw.Src)
	default:
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				c := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				i := dst.PixOffset(x, y)
				dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2] = c.R, c.G, c.B
			}
		}
	}
	for i := 3; i < len(dst.Pix); i += 4 {
		dst.Pix[i] = 255
	}
	return dst
}

// Orient applies EXIF orientation o (1..8) to img.
func Orient(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6: // rotate 90° clockwise (imaging rotates counter-clockwise)
		return imaging.Rotate270(img)
	case 7:
		return imaging.Transverse(img)
	case 8: // rotate 90° counter-clockwise
		return imaging.Rotate90(img)
	}
	return img
}
