package sample

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Parameters is the "parameters" text AUTOMATIC1111 stores in its PNGs:
//
//	<prompt>
//	Negative prompt: <negative prompt>      (only when there is one)
//	Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512[, Model: name][, Clip skip: 2]
func Parameters(p Prompt, c Config, seed int64, clipSkip int, model string) string {
	var b strings.Builder
	b.WriteString(p.Prompt)
	b.WriteByte('\n')
	if p.Negative != "" {
		fmt.Fprintf(&b, "Negative prompt: %s\n", p.Negative)
	}
	fmt.Fprintf(&b, "Steps: %d, Sampler: %s, CFG scale: %s, Seed: %d, Size: %dx%d",
		p.Steps, c.DisplayName(), pyFloat(p.Scale), seed, p.Width, p.Height)
	if model != "" {
		fmt.Fprintf(&b, ", Model: %s", model)
	}
	if clipSkip > 1 {
		fmt.Fprintf(&b, ", Clip skip: %d", clipSkip)
	}
	return b.String()
}

// pyFloat formats v as Python's str(float) does for ordinary values
// (7.5 → "7.5", 7 → "7.0").
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// EncodePNG writes img as PNG with a text chunk "parameters" = params right
// after the header, as PIL writes A1111's: tEXt when the text is Latin-1,
// otherwise an uncompressed iTXt (UTF-8).
func EncodePNG(w io.Writer, img image.Image, params string) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	b := buf.Bytes()
	const sigLen, ihdrLen = 8, 8 + 13 + 4
	if len(b) < sigLen+ihdrLen || string(b[sigLen+4:sigLen+8]) != "IHDR" {
		return fmt.Errorf("png: encoder output does not start with IHDR")
	}
	head, tail := b[:sigLen+ihdrLen], b[sigLen+ihdrLen:]
	if _, err := w.Write(head); err != nil {
		return err
	}
	typ, data := textChunk("parameters", params)
	if err := writeChunk(w, typ, data); err != nil {
		return err
	}
	_, err := w.Write(tail)
	return err
}

// textChunk is the type and data of a tEXt or iTXt chunk.
func textChunk(key, text string) (string, []byte) {
	var data []byte
	latin1 := true
	for _, r := range text {
		if r > 0xff {
			latin1 = false
			break
		}
	}
	if latin1 {
		data = append(data, key...)
		data = append(data, 0)
		for _, r := range text {
			data = append(data, byte(r))
		}
		return "tEXt", data
	}
	data = append(data, key...)
	data = append(data, 0, 0, 0) // separator, no compression, method 0
	data = append(data, 0, 0)    // empty language tag and translated keyword
	data = append(data, text...)
	return "iTXt", data
}

func writeChunk(w io.Writer, typ string, data []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)))
	copy(hdr[4:], typ)
	crc := crc32.NewIEEE()
	crc.Write(hdr[4:])
	crc.Write(data)
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	for _, p := range [][]byte{hdr[:], data, sum[:]} {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// WritePNG writes the result to path atomically (a temporary file renamed
// on success).
func (r *Result) WritePNG(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := EncodePNG(tmp, r.Image, r.Parameters); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadParameters returns the "parameters" text of a PNG (tEXt or
// uncompressed iTXt), and whether it has one.
func ReadParameters(data []byte) (string, bool, error) {
	if len(data) < 8 || string(data[1:4]) != "PNG" {
		return "", false, fmt.Errorf("png: not a PNG file")
	}
	for p := data[8:]; len(p) >= 12; {
		n := int(binary.BigEndian.Uint32(p[:4]))
		if n < 0 || 12+n > len(p) {
			return "", false, fmt.Errorf("png: chunk of %d bytes runs past the end", n)
		}
		typ, body := string(p[4:8]), p[8:8+n]
		if key, rest, ok := bytes.Cut(body, []byte{0}); ok && string(key) == "parameters" {
			switch typ {
			case "tEXt":
				r := make([]rune, len(rest))
				for i, c := range rest {
					r[i] = rune(c)
				}
				return string(r), true, nil
			case "iTXt":
				if len(rest) >= 2 && rest[0] == 0 {
					rest = rest[2:]
					if _, rest, ok = bytes.Cut(rest, []byte{0}); ok {
						if _, rest, ok = bytes.Cut(rest, []byte{0}); ok {
							return string(rest), true, nil
						}
					}
				}
			}
		}
		p = p[12+n:]
	}
	return "", false, nil
}
