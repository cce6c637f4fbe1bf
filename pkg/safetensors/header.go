package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header the reference implementation
// accepts, in bytes.
const MaxHeaderSize = 100_000_000

const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	DType  DType
	Shape  []int // nil or empty for a scalar
	Offset int64 // absolute byte offset of the data in the file
	Size   int64 // bytes
}

// NumElements returns the product of the dimensions (1 for a scalar).
func (ti TensorInfo) NumElements() int {
	n := 1
	for _, d := range ti.Shape {
		n *= d
	}
	return n
}

// FormatError reports a malformed file or a tensor that cannot be read or
// written as asked.
type FormatError struct {
	Path   string // the file, or the name given to NewReader
	Tensor string // "" when the problem is not about one tensor
	Msg    string
}

func (e *FormatError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("safetensors: %s: tensor %q: %s", e.Path, e.Tensor, e.Msg)
	}
	return fmt.Sprintf("safetensors: %s: %s", e.Path, e.Msg)
}

// header is a parsed and validated header.
type header struct {
	size     int64 // N, the JSON length (padding included)
	tensors  map[string]TensorInfo
	metadata map[string]string
}

// parseHeader parses the header of a file of fileSize bytes whose first
// bytes (at least 8, and all of the header when it fits) are in prefix,
// and checks the data layout against fileSize. path names the file in
// errors.
func parseHeader(path string, prefix []byte, fileSize int64) (*header, error) {
	fail := func(tensor, format string, args ...any) error {
		return &FormatError{Path: path, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	if fileSize < 8 || len(prefix) < 8 {
		return nil, fail("", "file is %d bytes, too short for the 8-byte header length", fileSize)
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderSize {
		return nil, fail("", "header length %d is over the limit of %d bytes", n, MaxHeaderSize)
	}
	if int64(n) > fileSize-8 {
		return nil, fail("", "header length %d runs past the end of the file (%d bytes)", n, fileSize)
	}
	if uint64(len(prefix)) < 8+n {
		return nil, fail("", "internal error: header not read in full")
	}
	js := prefix[8 : 8+n]
	if !utf8.Valid(js) {
		return nil, fail("", "header is not valid UTF-8")
	}
	// Leading whitespace is valid JSON and the reference reader takes it.
	if trimmed := bytes.TrimLeft(js, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fail("", "header is not a JSON object (it starts %q)", firstBytes(js))
	}

	h := &header{size: int64(n), tensors: map[string]TensorInfo{}}
	type entry struct {
		name       string
		begin, end int64
	}
	var entries []entry

	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil { // '{', checked above (cannot fail)
		return nil, fail("", "header is not JSON: %v", err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail("", "header is not JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fail("", "header is not JSON: key %v is not a string", tok)
		}
		if seen[name] {
			return nil, fail(name, "appears twice in the header")
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fail(name, "header is not JSON: %v", err)
		}
		if name == metadataKey {
			// null is allowed (no metadata); anything else must map
			// strings to strings.
			if err := json.Unmarshal(raw, &h.metadata); err != nil {
				return nil, fail("", "__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		ti, begin, end, err := parseTensor(raw)
		if err != nil {
			return nil, fail(name, "%v", err)
		}
		h.tensors[name] = ti
		entries = append(entries, entry{name, begin, end})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, fail("", "header is not JSON: %v", err)
	}
	if rest := js[dec.InputOffset():]; len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, fail("", "header has %q after the JSON object", firstBytes(bytes.TrimLeft(rest, " \t\r\n")))
	}

	// The tensors, sorted by offset, must tile the data section exactly.
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	dataStart := 8 + int64(n)
	dataLen := fileSize - dataStart
	var pos int64
	prev := ""
	for _, e := range entries {
		ti := h.tensors[e.name]
		switch {
		case e.begin > pos && prev == "":
			return nil, fail(e.name, "data offsets [%d, %d] leave a gap of %d bytes at the start of the data", e.begin, e.end, e.begin-pos)
		case e.begin > pos:
			return nil, fail(e.name, "data offsets [%d, %d] leave a gap of %d bytes after tensor %q", e.begin, e.end, e.begin-pos, prev)
		case e.begin < pos:
			return nil, fail(e.name, "data offsets [%d, %d] overlap tensor %q, which ends at %d", e.begin, e.end, prev, pos)
		case e.end-e.begin != ti.Size:
			return nil, fail(e.name, "data offsets [%d, %d] hold %d bytes, but %s %v needs %d", e.begin, e.end, e.end-e.begin, ti.DType, ti.Shape, ti.Size)
		case e.end > dataLen:
			return nil, fail(e.name, "data offsets [%d, %d] run past the end of the file (data section is %d bytes)", e.begin, e.end, dataLen)
		}
		ti.Offset = dataStart + e.begin
		h.tensors[e.name] = ti
		pos, prev = e.end, e.name
	}
	if pos != dataLen {
		return nil, fail("", "data section is %d bytes but the tensors cover %d", dataLen, pos)
	}
	return h, nil
}

// parseTensor decodes one tensor entry. Keys are matched exactly (JSON
// object keys are case-sensitive, unlike encoding/json's struct matching);
// unknown keys are ignored, as the reference reader does.
func parseTensor(raw json.RawMessage) (ti TensorInfo, begin, end int64, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return ti, 0, 0, fmt.Errorf("entry is not a JSON object")
	}
	var dtype string
	var shape, offsets []int64
	for _, f := range []struct {
		key string
		dst any
	}{{"dtype", &dtype}, {"shape", &shape}, {"data_offsets", &offsets}} {
		v, ok := fields[f.key]
		if !ok {
			return ti, 0, 0, fmt.Errorf("entry has no %q", f.key)
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return ti, 0, 0, fmt.Errorf("bad %q %s", f.key, v)
		}
	}
	ti.DType = DType(dtype)
	if ti.DType.Size() == 0 {
		return ti, 0, 0, fmt.Errorf("unknown dtype %q", dtype)
	}
	if shape == nil { // null
		return ti, 0, 0, fmt.Errorf("bad \"shape\" %s", fields["shape"])
	}
	ti.Shape = make([]int, len(shape))
	size := uint64(ti.DType.Size())
	for i, d := range shape {
		if d < 0 {
			return ti, 0, 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		ti.Shape[i] = int(d)
		hi, lo := bits.Mul64(size, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return ti, 0, 0, fmt.Errorf("shape %v is too large", shape)
		}
		size = lo
	}
	ti.Size = int64(size)
	if len(offsets) != 2 {
		return ti, 0, 0, fmt.Errorf("data_offsets must be [begin, end], got %s", fields["data_offsets"])
	}
	begin, end = offsets[0], offsets[1]
	if begin < 0 || end < begin {
		return ti, 0, 0, fmt.Errorf("bad data_offsets [%d, %d]", begin, end)
	}
	return ti, begin, end, nil
}

func firstBytes(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}
