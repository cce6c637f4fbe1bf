package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawFile assembles a file from a header string and dataLen bytes of
// non-zero data; the length prefix is len(header) unless n >= 0.
func rawFile(header string, dataLen int, n int64) []byte {
	if n < 0 {
		n = int64(len(header))
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(n))
	b = append(b, header...)
	for i := range dataLen {
		b = append(b, byte(i%251+1))
	}
	return b
}

type malformedCase struct {
	name   string
	file   []byte
	tensor string // the tensor the error must name, "" for none
	want   string // substring of the message
}

func malformedCases() []malformedCase {
	f32 := func(name string, shape string, b, e int) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + itoa(b) + `,` + itoa(e) + `]}`
	}
	return []malformedCase{
		{"shorter than the length", []byte{1, 2, 3}, "", "too short"},
		{"empty file", nil, "", "too short"},
		{"header longer than the file", rawFile(`{}`, 0, 1000), "", "runs past the end of the file"},
		{"header over the size limit", rawFile(`{}`, 0, MaxHeaderSize+1), "", "over the limit"},
		{"header not JSON", rawFile(`{not json}`, 0, -1), "", "not JSON"},
		{"header truncated JSON", rawFile(`{"a":{"dtype":"F32"`, 0, -1), "a", "not JSON"},
		{"header not an object", rawFile(`[1, 2]`, 0, -1), "", "not a JSON object"},
		{"header empty", rawFile(``, 0, -1), "", "not a JSON object"},
		{"header not UTF-8", rawFile("{\"a\xff\":1}", 0, -1), "", "UTF-8"},
		{"text after the object", rawFile(`{}  x`, 0, -1), "", "after the JSON object"},
		{"metadata with a number", rawFile(`{"__metadata__":{"a":1}}`, 0, -1), "", "__metadata__ must map strings to strings"},
		{"metadata not an object", rawFile(`{"__metadata__":"x"}`, 0, -1), "", "__metadata__"},
		{"unknown dtype", rawFile(`{"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}`, 4, -1), "w", `unknown dtype "F12"`},
		{"lower-case dtype", rawFile(`{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4, -1), "w", "unknown dtype"},
		{"negative dimension", rawFile(`{`+f32("w", "[-1,2]", 0, 8)+`}`, 8, -1), "w", "negative dimension"},
		{"fractional dimension", rawFile(`{`+f32("w", "[1.5]", 0, 4)+`}`, 4, -1), "w", `bad "shape"`},
		{"shape null", rawFile(`{`+f32("w", "null", 0, 4)+`}`, 4, -1), "w", `bad "shape"`},
		{"shape too large", rawFile(`{`+f32("w", "[4611686018427387904,4]", 0, 4)+`}`, 4, -1), "w", "too large"},
		{"size does not match the shape", rawFile(`{`+f32("w", "[3]", 0, 8)+`}`, 8, -1), "w", "hold 8 bytes, but F32 [3] needs 12"},
		{"offsets reversed", rawFile(`{`+f32("w", "[2]", 8, 0)+`}`, 8, -1), "w", "bad data_offsets [8, 0]"},
		{"offsets negative", rawFile(`{`+f32("w", "[2]", -8, 0)+`}`, 8, -1), "w", "bad data_offsets"},
		{"offsets not a pair", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4, -1), "w", "[begin, end]"},
		{"missing dtype", rawFile(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, 4, -1), "w", `no "dtype"`},
		{"entry not an object", rawFile(`{"w":5}`, 0, -1), "w", "not a JSON object"},
		{"duplicate tensor", rawFile(`{`+f32("w", "[1]", 0, 4)+`,`+f32("w", "[1]", 4, 8)+`}`, 8, -1), "w", "twice"},
		{"overlap", rawFile(`{`+f32("a", "[2]", 0, 8)+`,`+f32("b", "[2]", 4, 12)+`}`, 12, -1), "b", `overlap tensor "a"`},
		{"same offsets", rawFile(`{`+f32("a", "[2]", 0, 8)+`,`+f32("b", "[2]", 0, 8)+`}`, 8, -1), "b", `overlap tensor "a"`},
		{"gap between tensors", rawFile(`{`+f32("a", "[2]", 0, 8)+`,`+f32("b", "[2]", 12, 20)+`}`, 20, -1), "b", `gap of 4 bytes after tensor "a"`},
		{"gap at the start", rawFile(`{`+f32("a", "[2]", 4, 12)+`}`, 12, -1), "a", "gap of 4 bytes at the start"},
		{"data past the end of the file", rawFile(`{`+f32("a", "[2]", 0, 8)+`}`, 4, -1), "a", "past the end of the file"},
		{"bytes left after the last tensor", rawFile(`{`+f32("a", "[2]", 0, 8)+`}`, 16, -1), "", "data section is 16 bytes but the tensors cover 8"},
		{"data but no tensors", rawFile(`{}`, 8, -1), "", "data section is 8 bytes but the tensors cover 0"},
	}
}

func itoa(i int) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range malformedCases() {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, via := range []string{"Open", "NewReader"} {
				var err error
				var f *File
				if via == "Open" {
					f, err = Open(path)
				} else {
					f, err = NewReader(bytes.NewReader(tc.file), int64(len(tc.file)), path)
				}
				if err == nil {
					f.Close()
					t.Fatalf("%s: no error", via)
				}
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("%s: error %v is %T, not *FormatError", via, err, err)
				}
				msg := err.Error()
				if fe.Path != path || !strings.Contains(msg, path) {
					t.Errorf("%s: error %q does not name the file", via, msg)
				}
				if fe.Tensor != tc.tensor || tc.tensor != "" && !strings.Contains(msg, `"`+tc.tensor+`"`) {
					t.Errorf("%s: error %q names tensor %q, want %q", via, msg, fe.Tensor, tc.tensor)
				}
				if !strings.Contains(msg, tc.want) {
					t.Errorf("%s: error %q does not say %q", via, msg, tc.want)
				}
			}
		})
	}
}

// TestAccepted covers unusual but valid files.
func TestAccepted(t *testing.T) {
	tests := []struct {
		name   string
		file   []byte
		tensor []string
	}{
		{"no tensors", rawFile(`{}`, 0, -1), nil},
		{"metadata null", rawFile(`{"__metadata__":null}`, 0, -1), nil},
		{"unpadded header, odd length", rawFile(`{"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, 3, -1), []string{"x"}},
		{"listed out of offset order", rawFile(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2, -1), []string{"a", "b"}},
		{"leading whitespace", rawFile(" \n{}", 0, -1), nil},
		{"unknown keys ignored, whitespace", rawFile("{ \"x\" : {\"dtype\":\"BOOL\", \"extra\": [1], \"shape\":[2],\"data_offsets\":[0,2]} }\n  ", 2, -1), []string{"x"}},
		{"zero-size tensors share an offset", rawFile(`{"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},"f":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1, -1), []string{"e", "f", "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewReader(bytes.NewReader(tc.file), int64(len(tc.file)), "valid")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(f.Names(), ",") != strings.Join(tc.tensor, ",") {
				t.Errorf("Names() = %v, want %v", f.Names(), tc.tensor)
			}
			for _, name := range f.Names() {
				if _, err := f.ReadRaw(name); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	var buf bytes.Buffer
	tt, _ := FromFloat32("w", F32, []int{2}, []float32{1, 2})
	big := Tensor{Name: "u", DType: U64, Shape: []int{1}, Data: []byte{0, 0, 0, 0, 0, 0, 0, 0x80}}
	if err := Encode(&buf, []Tensor{tt, big}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "r.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "r.safetensors") {
			t.Errorf("%s: error %v, want one naming the file and saying %q", what, err, want)
		}
	}
	_, err = f.ReadRaw("nope")
	check("ReadRaw of a missing tensor", err, `"nope": no such tensor`)
	_, err = f.ReadInt64("u")
	check("ReadInt64 of a U64 over MaxInt64", err, "does not fit in int64")
	_, err = f.ReadInt64("w")
	check("ReadInt64 of F32", err, `"w": dtype F32 is not an integer type`)
	if _, ok := f.Info("nope"); ok {
		t.Errorf("Info of a missing tensor: ok")
	}
	f.Close()
	_, err = f.ReadFloat32("w")
	check("ReadFloat32 after Close", err, "closed")

	// A reader that fails mid-way.
	g, err := NewReader(&failingReader{buf.Bytes(), int64(buf.Len()) - 4}, int64(buf.Len()), "flaky")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadRaw("w"); err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("ReadRaw through a failing reader: %v", err)
	}
}

// failingReader serves b but fails at and after offset bad.
type failingReader struct {
	b   []byte
	bad int64
}

func (r *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.bad {
		return 0, errors.New("injected read error")
	}
	return copy(p, r.b[off:]), nil
}

func TestWriteErrors(t *testing.T) {
	ok := Tensor{Name: "ok", DType: F32, Shape: []int{1}, Data: []byte{0, 0, 0x80, 0x3f}}
	tests := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		tensor  string
		want    string
	}{
		{"duplicate", []Tensor{ok, ok}, nil, "ok", "given twice"},
		{"unknown dtype", []Tensor{{Name: "x", DType: "F12", Shape: []int{1}, Data: []byte{1}}}, nil, "x", "unknown dtype"},
		{"negative dimension", []Tensor{{Name: "x", DType: U8, Shape: []int{-1}, Data: nil}}, nil, "x", "negative dimension"},
		{"wrong data size", []Tensor{{Name: "x", DType: F16, Shape: []int{2}, Data: []byte{1, 2}}}, nil, "x", "has 2 bytes of data, F16 [2] needs 4"},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}}, nil, "__metadata__", "reserved"},
		{"name not UTF-8", []Tensor{{Name: "a\xff", DType: U8, Shape: []int{1}, Data: []byte{1}}}, nil, "a\xff", "UTF-8"},
		{"metadata not UTF-8", []Tensor{ok}, map[string]string{"k": "\xff"}, "", "UTF-8"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "out.safetensors")
			err := WriteFile(path, tc.tensors, tc.meta)
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Tensor != tc.tensor || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want a FormatError for tensor %q saying %q", err, tc.tensor, tc.want)
			}
			assertDirEmpty(t, dir)
		})
	}
}

func assertDirEmpty(t *testing.T, dir string, except ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.Contains(strings.Join(except, "\x00"), e.Name()) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestStreamingWriter(t *testing.T) {
	dir := t.TempDir()
	a, _ := FromFloat32("a", F16, []int{2, 2}, []float32{1, -2, 3.5, 1e-6})
	b, _ := FromFloat32("b", BF16, []int{3}, []float32{0.1, 0.2, 0.3})
	c := Tensor{Name: "c", DType: I64, Shape: []int{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}}
	meta := map[string]string{"format": "pt"}
	ref := filepath.Join(dir, "ref.safetensors")
	if err := WriteFile(ref, []Tensor{a, b, c}, meta); err != nil {
		t.Fatal(err)
	}

	// Written in another order, one through WriteFloat32: same bytes.
	path := filepath.Join(dir, "stream.safetensors")
	w, err := Create(path, []Spec{b.Spec(), c.Spec(), a.Spec()}, meta)
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		w.Write("c", c.Data),
		w.WriteFloat32("a", []float32{1, -2, 3.5, 1e-6}),
		w.Write("b", b.Data),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("final file exists before Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want, _ := os.ReadFile(ref)
	if !bytes.Equal(got, want) {
		t.Errorf("streamed file differs from WriteFile's:\n%q\n%q", got, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}

	// Misuse is refused with the tensor named.
	w, err = Create(path, []Spec{a.Spec(), b.Spec()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{w.Write("zz", nil), `"zz": not among the tensors`},
		{w.Write("a", a.Data[:4]), `"a": has 4 bytes of data, F16 [2 2] needs 8`},
		{w.WriteFloat32("a", []float32{1}), `"a": has 4 elements`},
		{w.Write("a", a.Data), ""},
		{w.Write("a", a.Data), `"a": written twice`},
		{w.Close(), `"b": never written`},
		{w.Write("b", b.Data), "closed"},
	} {
		if tc.want == "" && tc.err != nil || tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want)) {
			t.Errorf("got error %v, want %q", tc.err, tc.want)
		}
	}
	// The failed Close left the earlier file untouched and no temporary.
	if again, _ := os.ReadFile(path); !bytes.Equal(again, want) {
		t.Errorf("a failed write changed the existing file")
	}
	assertDirEmpty(t, dir, "ref.safetensors", "stream.safetensors")

	// Abort removes the temporary file.
	w, err = Create(filepath.Join(dir, "aborted.safetensors"), []Spec{a.Spec()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Abort()
	w.Abort()
	assertDirEmpty(t, dir, "ref.safetensors", "stream.safetensors")

	if _, err := Create(filepath.Join(dir, "no", "such", "dir.safetensors"), nil, nil); err == nil {
		t.Errorf("Create in a missing directory: no error")
	}
}
