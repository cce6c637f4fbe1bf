package safetensors

import (
	"bytes"
	"testing"
)

// FuzzParseHeader feeds arbitrary bytes to the reader. It must never
// panic; whatever it accepts must be readable tensor by tensor, tile the
// data section, and survive re-encoding unchanged.
func FuzzParseHeader(f *testing.F) {
	for _, tc := range malformedCases() {
		f.Add(tc.file)
	}
	f.Add(rawFile(`{"__metadata__":{"a":"b"},"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, 4, -1))
	f.Add(rawFile(`{"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"x":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]}}`, 1, -1))
	var buf bytes.Buffer
	a, _ := FromFloat32("a", BF16, []int{2, 2}, []float32{1, 2, 3, 4})
	b, _ := FromInt64("b", []int{1}, []int64{-5})
	if err := Encode(&buf, []Tensor{a, b}, map[string]string{"k": "v\n"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %v is %T, not *FormatError", err, err)
			}
			return
		}
		var total int64
		var tensors []Tensor
		for _, name := range r.Names() {
			info, ok := r.Info(name)
			if !ok || info.Offset < 8+r.HeaderSize() || info.Offset+info.Size > int64(len(data)) {
				t.Fatalf("%q: Info %+v, %v outside the file", name, info, ok)
			}
			total += info.Size
			raw, err := r.ReadRaw(name)
			if err != nil || int64(len(raw)) != info.Size {
				t.Fatalf("ReadRaw(%q): %d bytes, %v", name, len(raw), err)
			}
			switch info.DType {
			case F32, F16, BF16, F64:
				if _, err := r.ReadFloat32(name); err != nil {
					t.Fatal(err)
				}
			case U64, F8E4M3, F8E5M2:
			default:
				if _, err := r.ReadInt64(name); err != nil {
					t.Fatal(err)
				}
			}
			tensors = append(tensors, Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
		if total != int64(len(data))-8-r.HeaderSize() {
			t.Fatalf("tensors cover %d bytes of a %d-byte data section", total, int64(len(data))-8-r.HeaderSize())
		}
		// Names that are not valid UTF-8 cannot be in an accepted header,
		// so every accepted file can be written back.
		var out bytes.Buffer
		if err := Encode(&out, tensors, r.Metadata()); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		s, err := NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()), "re-encoded")
		if err != nil {
			t.Fatalf("re-encoded file refused: %v", err)
		}
		for _, tt := range tensors {
			got, err := s.ReadRaw(tt.Name)
			if err != nil || !bytes.Equal(got, tt.Data) {
				t.Fatalf("%q changed in re-encoding", tt.Name)
			}
		}
	})
}
