package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"os"
	"testing"

	"loco/pkg/dataset/datasettest"
)

func encode(t testing.TB, ext string, w, h, orientation int) []byte {
	t.Helper()
	b, err := datasettest.Encode(ext, datasettest.Pattern(w, h, 7), orientation)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProbeFormats(t *testing.T) {
	webpLossless, err := os.ReadFile("testdata/blue-purple-pink.lossless.webp")
	if err != nil {
		t.Fatal(err)
	}
	webpLossy, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		b      []byte
		format string
		w, h   int
		o      int
		ow, oh int
	}{
		{"jpeg", encode(t, ".jpg", 64, 48, 0), "jpeg", 64, 48, 1, 64, 48},
		{"jpeg exif 6 big-endian", encode(t, ".jpg", 64, 48, 6), "jpeg", 64, 48, 6, 48, 64},
		{"jpeg exif 3", encode(t, ".jpg", 64, 48, 3), "jpeg", 64, 48, 3, 64, 48},
		{"jpeg exif 8 little-endian", datasettest.InsertJPEGSegment(encode(t, ".jpg", 64, 48, 0), 0xE1, datasettest.ExifOrientation(8, false)), "jpeg", 64, 48, 8, 48, 64},
		{"jpeg exif 0 invalid", encode(t, ".jpg", 64, 48, 9), "jpeg", 64, 48, 1, 64, 48},
		{"png", encode(t, ".png", 30, 70, 0), "png", 30, 70, 1, 30, 70},
		{"bmp", encode(t, ".bmp", 33, 17, 0), "bmp", 33, 17, 1, 33, 17},
		{"webp lossless", webpLossless, "webp", 150, 100, 1, 150, 100},
		{"webp lossy", webpLossy, "webp", 150, 100, 1, 150, 100},
		// PNG eXIf and WebP EXIF chunks (Pillow's exif_transpose reads both).
		{"png exif 6", pngWithExif(t, encode(t, ".png", 30, 70, 0), 6, true), "png", 30, 70, 6, 70, 30},
		{"png exif 3 little-endian", pngWithExif(t, encode(t, ".png", 30, 70, 0), 3, false), "png", 30, 70, 3, 30, 70},
		{"webp exif 8", webpWithExif(t, webpLossy, 8, false), "webp", 150, 100, 8, 100, 150},
		{"webp exif 5 with Exif header", webpWithExif(t, webpLossy, 5, true), "webp", 150, 100, 5, 100, 150},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, err := Probe(c.b, 0)
			if err != nil {
				t.Fatal(err)
			}
			ow, oh := info.OrientedSize()
			if info.Format != c.format || info.Width != c.w || info.Height != c.h || info.Orientation != c.o || ow != c.ow || oh != c.oh {
				t.Errorf("got %+v oriented %dx%d, want %s %dx%d o=%d oriented %dx%d", info, ow, oh, c.format, c.w, c.h, c.o, c.ow, c.oh)
			}
		})
	}
}

// bigPNG is a valid PNG signature and IHDR claiming w×h, then IEND.
func bigPNG(w, h uint32) []byte {
	chunk := func(typ string, data []byte) []byte {
		c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		c = append(c, typ...)
		c = append(c, data...)
		return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0)
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, chunk("IHDR", ihdr)...)
	return append(b, chunk("IEND", nil)...)
}

func TestProbeBadInput(t *testing.T) {
	jpg := encode(t, ".jpg", 64, 48, 0)
	pngb := encode(t, ".png", 64, 48, 0)
	corruptHeader := append([]byte{0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x03}, bytes.Repeat([]byte{0x55}, 100)...)
	badExif := datasettest.InsertJPEGSegment(jpg, 0xE1, []byte("Exif\x00\x00XX\x00\x2a\x00\x00\x00\x08"))
	for _, c := range []struct {
		name string
		b    []byte
		max  int64
		want error
	}{
		{"empty", nil, 0, ErrEmpty},
		{"text", []byte("this is a caption, not an image\n"), 0, ErrNotImage},
		{"html", []byte("<html><body>404</body></html>"), 0, ErrNotImage},
		{"truncated jpeg", jpg[:len(jpg)/2], 0, ErrTruncated},
		{"truncated jpeg header", jpg[:20], 0, ErrCorrupt},
		{"truncated png", pngb[:len(pngb)-20], 0, ErrTruncated},
		{"corrupt jpeg header", corruptHeader, 0, ErrCorrupt},
		{"corrupt exif", badExif, 0, ErrCorrupt},
		{"png bomb", bigPNG(100000, 100000), 0, ErrTooLarge},
		{"over a small limit", pngb, 64*48 - 1, ErrTooLarge},
		{"zero width", bigPNG(0, 10), 0, ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Probe(c.b, c.max)
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := Probe(pngb, 64*48); err != nil {
		t.Errorf("at the pixel limit: %v", err)
	}
}

func lum(img *image.NRGBA, x, y int) int {
	i := img.PixOffset(x, y)
	return int(img.Pix[i]) + int(img.Pix[i+1]) + int(img.Pix[i+2])
}

// The generated pattern has a dark top-left quarter; after decoding with
// the orientation applied it must be where the viewer sees it.
func TestDecodeAppliesOrientation(t *testing.T) {
	const w, h = 64, 48
	for _, c := range []struct {
		o      int
		darkX  int // a point inside the dark quarter after orientation
		darkY  int
		wantWH [2]int
	}{
		{1, 4, 4, [2]int{64, 48}},
		{2, 60, 4, [2]int{64, 48}},  // mirrored: top right
		{3, 60, 44, [2]int{64, 48}}, // 180: bottom right
		{4, 4, 44, [2]int{64, 48}},  // flipped: bottom left
		{5, 4, 4, [2]int{48, 64}},   // transpose: top left
		{6, 44, 4, [2]int{48, 64}},  // 90 clockwise: top right
		{7, 44, 60, [2]int{48, 64}}, // transverse: bottom right
		{8, 4, 60, [2]int{48, 64}},  // 90 counter-clockwise: bottom left
	} {
		img, _, err := Decode(encode(t, ".png", w, h, 0), 0)
		if err != nil {
			t.Fatal(err)
		}
		img = Orient(img, c.o)
		if got := [2]int{img.Bounds().Dx(), img.Bounds().Dy()}; got != c.wantWH {
			t.Errorf("orientation %d: size %v, want %v", c.o, got, c.wantWH)
			continue
		}
		ww, hh := c.wantWH[0], c.wantWH[1]
		// The point mirrored through the centre is in a bright quarter.
		if d, b := lum(img, c.darkX, c.darkY), lum(img, ww-1-c.darkX, hh-1-c.darkY); d*2 > b {
			t.Errorf("orientation %d: (%d,%d) lum %d not darker than opposite corner %d", c.o, c.darkX, c.darkY, d, b)
		}
	}
}

func TestDecodeJPEGWithExif(t *testing.T) {
	img, info, err := Decode(encode(t, ".jpg", 64, 48, 6), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Orientation != 6 || img.Bounds().Dx() != 48 || img.Bounds().Dy() != 64 {
		t.Fatalf("info %+v, decoded %v", info, img.Bounds())
	}
	if d, b := lum(img, 44, 4), lum(img, 4, 60); d*2 > b {
		t.Errorf("rotated JPEG: dark quarter not at the top right (%d vs %d)", d, b)
	}
	for i := 3; i < len(img.Pix); i += 4 {
		if img.Pix[i] != 255 {
			t.Fatal("alpha not 255")
		}
	}
}

func TestDecodeWebPAndBMP(t *testing.T) {
	for _, name := range []string{"testdata/blue-purple-pink.lossless.webp", "testdata/blue-purple-pink.lossy.webp"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := Decode(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.Bounds().Dx() != 150 || img.Bounds().Dy() != 100 || lum(img, 75, 50) == 0 {
			t.Errorf("%s: decoded %v", name, img.Bounds())
		}
	}
	b := encode(t, ".bmp", 33, 17, 0)
	img, _, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := datasettest.Pattern(33, 17, 7)
	if !bytes.Equal(img.Pix, want.Pix) {
		t.Error("BMP round trip changed pixels")
	}
}

func TestDecodeKeepsColourUnderTransparency(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	copy(src.Pix, []byte{200, 100, 50, 0, 10, 20, 30, 128})
	b, err := datasettest.Encode(".png", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{200, 100, 50, 255, 10, 20, 30, 255}; !bytes.Equal(img.Pix, want) {
		t.Errorf("pixels %v, want %v (alpha dropped without compositing)", img.Pix, want)
	}
}

func FuzzJPEGOrientation(f *testing.F) {
	jpg, _ := datasettest.Encode(".jpg", datasettest.Pattern(8, 8, 1), 6)
	f.Add(jpg[:200])
	f.Add(datasettest.InsertJPEGSegment([]byte{0xFF, 0xD8, 0xFF, 0xD9}, 0xE1, datasettest.ExifOrientation(3, false)))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := JPEGOrientation(b)
		if err == nil && (o < 1 || o > 8) {
			t.Fatalf("orientation %d out of range", o)
		}
	})
}

func FuzzProbe(f *testing.F) {
	jpg, _ := datasettest.Encode(".jpg", datasettest.Pattern(8, 8, 1), 6)
	pngb, _ := datasettest.Encode(".png", datasettest.Pattern(8, 8, 1), 0)
	f.Add(jpg)
	f.Add(pngb)
	f.Add([]byte("RIFF\x10\x00\x00\x00WEBPVP8 "))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Probe(b, 1<<20)
		if err == nil && (info.Width <= 0 || info.Height <= 0 || int64(info.Width)*int64(info.Height) > 1<<20) {
			t.Fatalf("accepted %+v", info)
		}
	})
}

// pngWithExif inserts an eXIf chunk holding orientation o after IHDR.
func pngWithExif(t testing.TB, png []byte, o int, bigEndian bool) []byte {
	t.Helper()
	data := datasettest.ExifOrientation(o, bigEndian)[6:] // the TIFF block, without JPEG's "Exif\0\0"
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "eXIf"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	const afterIHDR = 8 + 4 + 4 + 13 + 4
	return append(append(append([]byte(nil), png[:afterIHDR]...), chunk...), png[afterIHDR:]...)
}

// webpWithExif turns a simple (VP8) WebP into the extended format with an
// EXIF chunk after the image data; withHeader keeps JPEG's "Exif\0\0"
// prefix, as some writers do.
func webpWithExif(t testing.TB, webp []byte, o int, withHeader bool) []byte {
	t.Helper()
	info, err := Probe(webp, 0)
	if err != nil {
		t.Fatal(err)
	}
	vp8x := []byte("VP8X")
	vp8x = binary.LittleEndian.AppendUint32(vp8x, 10)
	vp8x = append(vp8x, 0x08, 0, 0, 0) // flags: EXIF present
	for _, v := range []int{info.Width - 1, info.Height - 1} {
		vp8x = append(vp8x, byte(v), byte(v>>8), byte(v>>16))
	}
	exif := datasettest.ExifOrientation(o, false)
	if !withHeader {
		exif = exif[6:]
	}
	chunk := append([]byte("EXIF"), binary.LittleEndian.AppendUint32(nil, uint32(len(exif)))...)
	chunk = append(chunk, exif...)
	if len(exif)%2 == 1 {
		chunk = append(chunk, 0)
	}
	body := append(append(append([]byte("WEBP"), vp8x...), webp[12:]...), chunk...)
	return append(append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...), body...)
}

// A PNG or WebP with an orientation decodes turned, like a JPEG.
func TestDecodePNGAndWebPOrientation(t *testing.T) {
	webpLossy, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		b    []byte
		w, h int
	}{
		{"png", pngWithExif(t, encode(t, ".png", 30, 70, 0), 6, true), 70, 30},
		{"webp", webpWithExif(t, webpLossy, 8, false), 100, 150},
	} {
		img, info, err := Decode(c.b, 0)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h || info.Orientation == 1 {
			t.Errorf("%s: decoded %v (orientation %d), want %dx%d", c.name, b, info.Orientation, c.w, c.h)
		}
	}
	// A chunk that runs past the end is a corrupt file, not a crash.
	png := pngWithExif(t, encode(t, ".png", 30, 70, 0), 6, true)
	binary.BigEndian.PutUint32(png[33:], 1<<30)
	if _, err := PNGOrientation(png); err == nil {
		t.Error("PNG eXIf chunk longer than the file: no error")
	}
}
