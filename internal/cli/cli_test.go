package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
)

func TestPermute(t *testing.T) {
	flags := []ucli.Flag{&ucli.StringSliceFlag{Name: "reg"}, &ucli.BoolFlag{Name: "strict"}, &ucli.IntFlag{Name: "jobs", Aliases: []string{"j"}}}
	for _, c := range []struct{ in, want []string }{
		{[]string{"img", "--reg", "reg"}, []string{"--reg", "reg", "--", "img"}},
		{[]string{"img", "--strict", "b", "-j", "3", "--reg=r"}, []string{"--strict", "-j", "3", "--reg=r", "--", "img", "b"}},
		{[]string{"--", "-odd-name"}, []string{"--", "-odd-name"}},
		{[]string{"--strict"}, []string{"--strict"}},
		{[]string{"-"}, []string{"--", "-"}},
	} {
		if got := Permute(c.in, flags); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Permute(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFail(t *testing.T) {
	var buf bytes.Buffer
	r := NewReporter("loco-x", &buf)
	if code := r.Fail(WithHints(errors.New("bad\nthing"), "try this")); code != ExitError {
		t.Errorf("code %d", code)
	}
	if code := r.Fail(Usagef("flag %s", "-z")); code != ExitUsage {
		t.Errorf("code %d", code)
	}
	r.Warnf("careful")
	want := "loco-x: error: bad; thing\n\ttry this\nloco-x: error: flag -z\n\trun 'loco-x --help' for usage\nloco-x: warning: careful\n"
	if buf.String() != want || r.Warnings() != 1 {
		t.Errorf("got %q", buf.String())
	}
	if r.Fail(nil) != ExitOK {
		t.Error("nil error is not ExitOK")
	}
}

func TestOutputAtomic(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.jsonl")
	o, err := CreateOutput(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("partial")
	o.Flush()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Fatal("final name exists before Commit")
	}
	o.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Abort left %v", ents)
	}
	o, _ = CreateOutput(name, nil)
	o.WriteString("done\n")
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	o.Abort() // no effect after Commit
	if b, _ := os.ReadFile(name); string(b) != "done\n" {
		t.Fatalf("content %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left temporary files: %v", ents)
	}
	var sb strings.Builder
	o, _ = CreateOutput("-", &sb)
	o.WriteString("x")
	o.Commit()
	if sb.String() != "x" {
		t.Error("stdout output")
	}
	if _, err := CreateOutput(filepath.Join(dir, "no", "such", "dir", "f"), nil); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	if p := NewProgress(ProgressAuto, &buf, "x", 3); p != nil {
		t.Error("auto progress into a buffer")
	}
	p := NewProgress(ProgressAlways, &buf, "scan", 2)
	p.Add(1)
	p.Add(1)
	p.Finish()
	if !strings.Contains(buf.String(), "scan: 2/2\n") {
		t.Errorf("progress %q", buf.String())
	}
	if _, err := ParseProgress("sometimes"); err == nil {
		t.Error("bad --progress accepted")
	}
	var nilp *Progress
	nilp.Add(1)
	nilp.Finish()
}

func TestProgressFlag(t *testing.T) {
	f := ProgressFlag("instant")
	if f.Name != "progress" || !strings.HasSuffix(f.Usage, "never (instant)") {
		t.Errorf("flag %q, usage %q", f.Name, f.Usage)
	}
	if m, err := ParseProgress(f.Value); err != nil || m != ProgressAuto {
		t.Errorf("default %q parses as %q, %v", f.Value, m, err)
	}
	if ProgressFlag("").Usage != "progress on stderr: auto (if a terminal), always, never" {
		t.Errorf("usage without a note: %q", ProgressFlag("").Usage)
	}
}
