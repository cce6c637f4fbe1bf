package sample

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestEncodePNG(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	for y := range 3 {
		for x := range 5 {
			c := img.NRGBAAt(x, y)
			c.A = 255
			img.SetNRGBA(x, y, c)
		}
	}
	for _, text := range []string{
		"photo of a café\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512", // Latin-1: tEXt
		"猫の写真\nSteps: 20, Sampler: DDIM, CFG scale: 7.0, Seed: 2, Size: 512x768",               // iTXt
	} {
		var b bytes.Buffer
		if err := EncodePNG(&b, img, text); err != nil {
			t.Fatal(err)
		}
		got, ok, err := ReadParameters(b.Bytes())
		if err != nil || !ok || got != text {
			t.Fatalf("parameters %q (%v, %v), want %q", got, ok, err, text)
		}
		dec, err := png.Decode(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("Go's decoder rejects the file (chunk CRC?): %v", err)
		}
		for y := range 3 {
			for x := range 5 {
				if color.NRGBAModel.Convert(dec.At(x, y)) != img.NRGBAAt(x, y) {
					t.Fatalf("pixel %d,%d changed", x, y)
				}
			}
		}
		want := "tEXt"
		if text[0] > 0x7f && []rune(text)[0] > 0xff {
			want = "iTXt"
		}
		if !bytes.Contains(b.Bytes()[:64], []byte(want+"parameters")) {
			t.Fatalf("no %s chunk right after IHDR", want)
		}
	}
	if _, _, err := ReadParameters([]byte("GIF89a")); err == nil {
		t.Fatal("a GIF was read as PNG")
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	if _, ok, err := ReadParameters(b.Bytes()); ok || err != nil {
		t.Fatalf("plain PNG: found %v, err %v", ok, err)
	}
}

func TestParameters(t *testing.T) {
	p := NewPrompt("pralyco, photo of a woman")
	got := Parameters(p, EulerAncestralKohya(), 123, 1, "")
	want := "pralyco, photo of a woman\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 123, Size: 512x512"
	if got != want {
		t.Fatalf("%q\nwant %q", got, want)
	}
	p.Negative, p.Scale, p.Width = "lowres", 7, 768
	got = Parameters(p, DDIMKohya(), 5, 2, "sd15")
	want = "pralyco, photo of a woman\nNegative prompt: lowres\nSteps: 30, Sampler: DDIM, CFG scale: 7.0, Seed: 5, Size: 768x512, Model: sd15, Clip skip: 2"
	if got != want {
		t.Fatalf("%q\nwant %q", got, want)
	}
}

func TestWritePNGAtomic(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	r := &Result{Image: img, Parameters: "x"}
	dir := t.TempDir()
	path := filepath.Join(dir, "a.png")
	if err := r.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d files left in the folder", len(ents))
	}
	if err := r.WritePNG(filepath.Join(dir, "missing", "a.png")); err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
}
