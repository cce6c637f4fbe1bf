package manifest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTripKeepsUnknownFields(t *testing.T) {
	in := `{"schema":1,"path":"img/30_a b/x.jpg","size":123,"sha256":"ab","format":"jpeg","width":640,"height":480,"exif_orientation":6,"oriented_width":480,"oriented_height":640,"concept":"30_a b","repeats":30,"trigger":"a","class":"b","caption":"a <b> & c","caption_source":"folder","is_reg":false,"zeta":{"k":[1, 2]},"alpha":"x"}` + "\n"
	recs, err := ReadAll(strings.NewReader(in), "in.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	r := recs[0]
	if r.OrientedWidth != 480 || r.ExifOrientation != 6 || r.Caption != "a <b> & c" {
		t.Errorf("fields not decoded: %+v", r)
	}
	if len(r.Extra) != 2 || string(r.Extra["alpha"]) != `"x"` {
		t.Errorf("Extra = %v", r.Extra)
	}
	var out bytes.Buffer
	if err := NewWriter(&out).Write(r); err != nil {
		t.Fatal(err)
	}
	// Known fields in order, then extras sorted and compacted.
	want := strings.Replace(in, `,"zeta":{"k":[1, 2]},"alpha":"x"}`, `,"alpha":"x","zeta":{"k":[1,2]}}`, 1)
	if out.String() != want {
		t.Errorf("round trip:\n got %s\nwant %s", out.String(), want)
	}
	// Second pass is byte-identical.
	recs2, err := ReadAll(&out, "out")
	if err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	NewWriter(&out2).Write(recs2[0])
	if out2.String() != want {
		t.Errorf("second round trip differs:\n%s", out2.String())
	}
}

func TestBucketFields(t *testing.T) {
	e := -0.048
	r := &Record{Path: "a.png", Bucket: &[2]int{576, 448}, Resized: &[2]int{597, 448}, Crop: &[4]int{10, 0, 586, 448}, AspectError: &e}
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(r); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"schema":1`, `"bucket":[576,448]`, `"resized":[597,448]`, `"crop":[10,0,586,448]`, `"aspect_error":-0.048`} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %s: %s", s, buf.String())
		}
	}
	if strings.Contains(buf.String(), "reg_repeats") {
		t.Errorf("train record carries reg_repeats: %s", buf.String())
	}
}

func TestEpochRepeats(t *testing.T) {
	zero, five := 0, 5
	for _, c := range []struct {
		r    Record
		want int
	}{
		{Record{Repeats: 30}, 30},
		{Record{Repeats: 1, IsReg: true, RegRepeats: &five}, 5},
		{Record{Repeats: 1, IsReg: true, RegRepeats: &zero}, 0},
		{Record{Repeats: 2, IsReg: true}, 2},
	} {
		if got := c.r.EpochRepeats(); got != c.want {
			t.Errorf("%+v: EpochRepeats = %d, want %d", c.r, got, c.want)
		}
	}
}

func TestReaderErrorsNameTheLine(t *testing.T) {
	good := `{"schema":1,"path":"a.png","width":1,"height":1}`
	for _, c := range []struct {
		name, in string
		line     int
		msg      string
	}{
		{"not json", good + "\nhello\n", 2, "not a JSON object"},
		{"truncated", good + "\n\n" + `{"schema":1,"path":"b`, 3, "invalid JSON"},
		{"array", `[1,2]`, 1, "not a JSON object"},
		{"missing path", `{"schema":1}`, 1, `lacks the field "path"`},
		{"missing schema", `{"path":"x"}`, 1, `lacks the field "schema"`},
		{"missing required", good + "\n" + `{"schema":1,"path":"b.png","width":3}`, 2, `lacks the field "height"`},
		{"null required", `{"schema":1,"path":"b.png","width":3,"height":null}`, 1, `lacks the field "height"`},
		{"wrong type", `{"schema":1,"path":"b.png","width":"wide","height":3}`, 1, `field "width"`},
		{"newer schema", `{"schema":99,"path":"b.png","width":3,"height":3}`, 1, "newer"},
		{"newer schema, other fields", `{"schema":2,"path":"b.png"}`, 1, "schema version 2 is newer"},
		{"bad schema", `{"schema":0,"path":"b.png","width":3,"height":3}`, 1, "invalid schema"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadAll(strings.NewReader(c.in), "recs.jsonl", "width", "height")
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != c.line || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "recs.jsonl:") {
				t.Errorf("err = %q (line %d), want line %d and %q", err, le.Line, c.line, c.msg)
			}
		})
	}
}

func TestReaderEmptyAndCRLF(t *testing.T) {
	r := NewReader(strings.NewReader("\r\n  \n{\"schema\":1,\"path\":\"a\"}\r\n"), "")
	rec, err := r.Next()
	if err != nil || rec.Path != "a" || r.Line() != 3 {
		t.Fatalf("rec=%v err=%v line=%d", rec, err, r.Line())
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(`{"schema":1,"path":"a","x":[1,{"y":null}]}`)
	f.Add("{\"schema\":1,\"path\":\"a\"}\n{")
	f.Fuzz(func(t *testing.T, s string) {
		recs, err := ReadAll(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		again, err := ReadAll(&buf, "again")
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-read of written records failed: %v", err)
		}
	})
}
