package safetensors

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Spec describes a tensor to be written: everything but its data.
type Spec struct {
	Name  string
	DType DType
	Shape []int
}

// layout is a validated header ready to be written: the tensors in file
// order with their data offsets, and the encoded, padded JSON.
type layout struct {
	specs   []Spec // in file order
	byName  map[string]Spec
	begin   map[string]int64 // data offset of each tensor, relative to the data section
	size    map[string]int64
	json    []byte // the header, padded with spaces to a multiple of 8
	dataLen int64
}

// newLayout validates specs and metadata and lays the file out as the
// reference writer does: tensors sorted by descending dtype rank, then by
// name byte-wise; compact JSON with __metadata__ first (keys sorted);
// spaces up to a multiple of 8 bytes.
func newLayout(path string, specs []Spec, metadata map[string]string) (*layout, error) {
	fail := func(tensor, format string, args ...any) error {
		return &FormatError{Path: path, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	l := &layout{
		specs:  slices.Clone(specs),
		byName: make(map[string]Spec, len(specs)),
		begin:  make(map[string]int64, len(specs)),
		size:   make(map[string]int64, len(specs)),
	}
	for _, s := range l.specs {
		if _, dup := l.size[s.Name]; dup {
			return nil, fail(s.Name, "given twice")
		}
		if s.Name == metadataKey {
			return nil, fail(s.Name, "the name is reserved for metadata")
		}
		if !utf8.ValidString(s.Name) {
			return nil, fail(s.Name, "name is not valid UTF-8")
		}
		if s.DType.Size() == 0 {
			return nil, fail(s.Name, "unknown dtype %q", s.DType)
		}
		n := int64(s.DType.Size())
		for _, d := range s.Shape {
			if d < 0 {
				return nil, fail(s.Name, "negative dimension in shape %v", s.Shape)
			}
			if d != 0 && n > (1<<62)/int64(d) {
				return nil, fail(s.Name, "shape %v is too large", s.Shape)
			}
			n *= int64(d)
		}
		l.size[s.Name] = n
		l.byName[s.Name] = s
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fail("", "metadata %q is not valid UTF-8", k)
		}
	}
	slices.SortFunc(l.specs, func(a, b Spec) int {
		if ra, rb := a.DType.rank(), b.DType.rank(); ra != rb {
			return rb - ra
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})

	js := []byte{'{'}
	if len(metadata) > 0 {
		js = appendString(js, metadataKey)
		js = append(js, ':', '{')
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				js = append(js, ',')
			}
			js = appendString(js, k)
			js = append(js, ':')
			js = appendString(js, metadata[k])
		}
		js = append(js, '}')
	}
	for _, s := range l.specs {
		if len(js) > 1 {
			js = append(js, ',')
		}
		l.begin[s.Name] = l.dataLen
		end := l.dataLen + l.size[s.Name]
		js = appendString(js, s.Name)
		js = append(js, `:{"dtype":`...)
		js = appendString(js, string(s.DType))
		js = append(js, `,"shape":[`...)
		for i, d := range s.Shape {
			if i > 0 {
				js = append(js, ',')
			}
			js = strconv.AppendInt(js, int64(d), 10)
		}
		js = append(js, `],"data_offsets":[`...)
		js = strconv.AppendInt(js, l.dataLen, 10)
		js = append(js, ',')
		js = strconv.AppendInt(js, end, 10)
		js = append(js, ']', '}')
		l.dataLen = end
	}
	js = append(js, '}')
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	if len(js) > MaxHeaderSize {
		return nil, fail("", "header would be %d bytes, over the limit of %d", len(js), MaxHeaderSize)
	}
	l.json = js
	return l, nil
}

// prefix returns the 8-byte length followed by the header.
func (l *layout) prefix() []byte {
	b := make([]byte, 8, 8+len(l.json))
	n := uint64(len(l.json))
	for i := range 8 {
		b[i] = byte(n >> (8 * i))
	}
	return append(b, l.json...)
}

// appendString appends s as a JSON string the way serde_json writes it:
// only '"', '\\' and control characters below 0x20 are escaped (\b \t \n
// \f \r, the rest as \u00xx with lower-case hex); everything else,
// non-ASCII included, is copied as is. s must be valid UTF-8.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
