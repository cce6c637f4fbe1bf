package imageio

import (
	"encoding/binary"
	"errors"
)

// JPEGOrientation returns the EXIF orientation (1..8) of a JPEG file given
// its leading bytes, or 1 when it has none. It walks the marker segments
// from SOI up to the start of scan and reads tag 0x0112 of IFD0 from the
// first APP1 "Exif" segment. A malformed EXIF block is an error; a value
// outside 1..8 is treated as 1, as Pillow's exif_transpose does.
func JPEGOrientation(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, errors.New("not a JPEG file (no SOI marker)")
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return 0, errors.New("JPEG marker expected")
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7): // no length
			i += 2
			continue
		case m == 0xDA || m == 0xD9: // start of scan, end of image: no EXIF after
			return 1, nil
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 0, errors.New("JPEG segment runs past the end of the file")
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1, nil
}

// tiffOrientation reads the orientation tag from a TIFF-structured EXIF
// block (byte-order mark, magic 42, offset of IFD0).
func tiffOrientation(t []byte) (int, error) {
	if len(t) < 8 {
		return 0, errors.New("EXIF block too short")
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, errors.New("EXIF block has no byte-order mark")
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0, errors.New("EXIF block has a bad TIFF magic number")
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0, errors.New("EXIF IFD0 offset out of range")
	}
	n := int(bo.Uint16(t[ifd:]))
	if ifd+2+12*n > len(t) {
		return 0, errors.New("EXIF IFD0 runs past the end of the block")
	}
	for k := range n {
		e := t[ifd+2+12*k:]
		if bo.Uint16(e) != 0x0112 {
			continue
		}
		var v int
		switch typ := bo.Uint16(e[2:]); typ {
		case 3: // SHORT: the value sits in the first two bytes of the field
			v = int(bo.Uint16(e[8:]))
		case 4: // LONG, seen in some writers
			v = int(bo.Uint32(e[8:]))
		default:
			return 1, nil
		}
		if v < 1 || v > 8 {
			return 1, nil
		}
		return v, nil
	}
	return 1, nil
}

// OrientedSize is the (w, h) after applying orientation o to a stored
// w×h image: orientations 5..8 swap the sides.
func OrientedSize(w, h, o int) (int, int) {
	if o >= 5 && o <= 8 {
		return h, w
	}
	return w, h
}

// PNGOrientation returns the orientation from a PNG file's eXIf chunk (a
// TIFF-structured EXIF block, PNG 1.5 extension; Pillow reads it), or 1
// when it has none. The chunk sequence is walked from the signature to
// IEND; a chunk running past the end of the file is an error.
func PNGOrientation(b []byte) (int, error) {
	if len(b) < 8 || string(b[:8]) != "\x89PNG\r\n\x1a\n" {
		return 0, errors.New("not a PNG file (no signature)")
	}
	for i := 8; i+8 <= len(b); {
		n := int64(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		end := int64(i) + 12 + n
		if n > 1<<31-1 || end > int64(len(b)) {
			return 0, errors.New("PNG chunk " + typ + " runs past the end of the file")
		}
		switch typ {
		case "eXIf":
			return tiffOrientation(b[i+8 : i+8+int(n)])
		case "IEND":
			return 1, nil
		}
		i = int(end)
	}
	return 1, nil
}

// WebPOrientation returns the orientation from a WebP file's EXIF chunk
// (extended format, VP8X), or 1 when it has none. Some writers start the
// chunk with JPEG's "Exif\0\0" header; both forms are read.
func WebPOrientation(b []byte) (int, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return 0, errors.New("not a WebP file (no RIFF/WEBP header)")
	}
	for i := 12; i+8 <= len(b); {
		typ := string(b[i : i+4])
		n := int64(binary.LittleEndian.Uint32(b[i+4:]))
		end := int64(i) + 8 + n + n&1 // chunks are padded to an even size
		if int64(i)+8+n > int64(len(b)) {
			return 0, errors.New("WebP chunk " + typ + " runs past the end of the file")
		}
		if typ == "EXIF" {
			t := b[i+8 : i+8+int(n)]
			if len(t) >= 6 && string(t[:6]) == "Exif\x00\x00" {
				t = t[6:]
			}
			return tiffOrientation(t)
		}
		i = int(end)
	}
	return 1, nil
}
