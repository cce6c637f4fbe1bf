package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/dataset/datasettest"
	"loco/pkg/imageio"
	"loco/pkg/manifest"
)

func demo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := datasettest.Write(dir, datasettest.Demo); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func jpg(t *testing.T, w, h int) []byte {
	t.Helper()
	b, err := datasettest.Encode(".jpg", datasettest.Pattern(w, h, uint64(w*h)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanDemo(t *testing.T) {
	dir := demo(t)
	img, reg := filepath.Join(dir, "img"), filepath.Join(dir, "reg")
	var calls int
	res, err := Scan(Options{TrainRoots: []string{img}, RegRoots: []string{reg}, Jobs: 3, Progress: func(d, n int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 {
		t.Errorf("problems: %v", res.Problems)
	}
	if res.TrainImages != 8 || res.RegImages != 5 || res.T != 240 || res.RegRaw != 5 || res.RegBalanced != 240 || calls != 13 {
		t.Errorf("counts: train %d reg %d T %d raw %d balanced %d progress %d", res.TrainImages, res.RegImages, res.T, res.RegRaw, res.RegBalanced, calls)
	}
	// Sorted: train before reg, paths in order.
	for i := 1; i < len(res.Records); i++ {
		a, b := res.Records[i-1], res.Records[i]
		if a.IsReg == b.IsReg && a.Path >= b.Path {
			t.Errorf("records out of order: %s before %s", a.Path, b.Path)
		}
	}
	byName := map[string]int{}
	for i, r := range res.Records {
		byName[filepath.Base(r.Path)] = i
		if len(r.SHA256) != 64 || r.Size <= 0 || r.Schema != 1 {
			t.Errorf("%s: bad file fields %+v", r.Path, r)
		}
	}
	rot := res.Records[byName["04_rotated.jpg"]]
	if rot.ExifOrientation != 6 || rot.Width != 640 || rot.Height != 480 || rot.OrientedWidth != 480 || rot.OrientedHeight != 640 {
		t.Errorf("rotated JPEG: %+v", rot)
	}
	if r := res.Records[byName["01.jpg"]]; r.Caption != "pralyco woman, smiling, outdoors" || r.CaptionSrc != "file" {
		t.Errorf("01.jpg caption %q from %s", r.Caption, r.CaptionSrc)
	}
	if r := res.Records[byName["08_face_400_300_120_120.jpg"]]; r.Caption != "pralyco woman, close-up portrait" || !strings.HasSuffix(r.CaptionFile, "08_face.caption") {
		t.Errorf("face-crop caption: %q from %q", r.Caption, r.CaptionFile)
	}
	if r := res.Records[byName["02.png"]]; r.Caption != "pralyco woman" || r.CaptionSrc != "folder" || r.Trigger != "pralyco" || r.Class != "woman" || r.Repeats != 30 || r.Format != "png" {
		t.Errorf("02.png: %+v", r)
	}
	r := res.Records[byName["r01.jpg"]]
	if !r.IsReg || r.Caption != "woman" || r.RegRepeats == nil || *r.RegRepeats != 48 {
		t.Errorf("reg record: %+v", r)
	}
	// 07.JPG (all upper case) is found by kohya too: no mixed-case note.
	for _, n := range res.Notes {
		if strings.Contains(n, "mixed-case") {
			t.Errorf("unexpected note %q", n)
		}
	}
}

func TestScanDeterministic(t *testing.T) {
	dir := demo(t)
	opt := Options{TrainRoots: []string{filepath.Join(dir, "img")}, RegRoots: []string{filepath.Join(dir, "reg")}}
	var first string
	for _, jobs := range []int{1, 2, 7} {
		opt.Jobs = jobs
		res, err := Scan(opt)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := manifest.NewWriter(&buf)
		for _, r := range res.Records {
			w.Write(r)
		}
		s := buf.String()
		if first == "" {
			first = s
		} else if s != first {
			t.Errorf("jobs=%d: different result", jobs)
		}
	}
}

// problems returns the problems of a scan keyed by base name.
func problems(res *Result) map[string]error {
	m := map[string]error{}
	for _, p := range res.Problems {
		m[filepath.Base(p.Path)] = p.Err
	}
	return m
}

func TestScanBadInput(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	good := jpg(t, 64, 48)
	c := filepath.Join(img, "10_thing")
	write(t, filepath.Join(c, "a.jpg"), good)
	write(t, filepath.Join(c, "zero.jpg"), nil)
	write(t, filepath.Join(c, "truncated.jpg"), good[:len(good)/2])
	write(t, filepath.Join(c, "corrupt.png"), append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...))
	write(t, filepath.Join(c, "notes.webp"), []byte("this is text, not an image"))
	write(t, filepath.Join(c, "bomb.png"), bombPNG(t))
	write(t, filepath.Join(c, "cap.jpg"), good)
	write(t, filepath.Join(c, "cap.caption"), nil) // empty caption file
	write(t, filepath.Join(c, "badutf.jpg"), good)
	write(t, filepath.Join(c, "badutf.caption"), []byte("caf\xe9\n"))
	write(t, filepath.Join(c, "Mixed.Jpg"), good)
	write(t, filepath.Join(c, ".hidden.jpg"), good)
	write(t, filepath.Join(c, "photo.avif"), []byte("x"))
	write(t, filepath.Join(c, "sub", "deep.jpg"), good) // not recursive
	if err := os.Mkdir(filepath.Join(c, "dir.jpg"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Symlink loop inside a concept folder, and a concept folder that is a loop.
	if err := os.Symlink("loop2.jpg", filepath.Join(c, "loop1.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop1.jpg", filepath.Join(c, "loop2.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("3_selfloop", filepath.Join(img, "3_selfloop")); err != nil {
		t.Fatal(err)
	}
	// Folder names.
	write(t, filepath.Join(img, "noprefix", "x.jpg"), good)
	write(t, filepath.Join(img, "0_zero", "x.jpg"), good)
	write(t, filepath.Join(img, "-1_neg", "x.jpg"), good)
	write(t, filepath.Join(img, "loose.jpg"), good)
	// The same folder twice (through a symlink): used once.
	if err := os.Symlink("10_thing", filepath.Join(img, "10_thing_again")); err != nil {
		t.Fatal(err)
	}

	opt := Options{TrainRoots: []string{img}, MaxPixels: 1 << 20}
	res, err := Scan(opt)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"zero.jpg":      imageio.ErrEmpty,
		"truncated.jpg": imageio.ErrTruncated,
		"corrupt.png":   imageio.ErrCorrupt,
		"notes.webp":    imageio.ErrNotImage,
		"bomb.png":      imageio.ErrTooLarge,
		"cap.jpg":       errEmptyCaption,
		"badutf.jpg":    nil,
		"loop1.jpg":     nil,
		"loop2.jpg":     nil,
		"3_selfloop":    nil,
		"noprefix":      ErrNoRepeats,
		"0_zero":        ErrBadRepeats,
		"-1_neg":        ErrBadRepeats,
	}
	got := problems(res)
	for name, werr := range want {
		err, ok := got[name]
		if !ok {
			t.Errorf("%s: not reported", name)
			continue
		}
		if werr != nil && !errors.Is(err, werr) {
			t.Errorf("%s: %v, want %v", name, err, werr)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want %d", res.Problems, len(want))
	}
	if !strings.Contains(fmt.Sprint(got["badutf.jpg"]), "UTF-8") || !strings.Contains(fmt.Sprint(got["loop1.jpg"]), "symbolic links") {
		t.Errorf("messages: %v / %v", got["badutf.jpg"], got["loop1.jpg"])
	}
	var paths []string
	for _, r := range res.Records {
		paths = append(paths, filepath.Base(r.Path))
	}
	if strings.Join(paths, " ") != "Mixed.Jpg a.jpg" {
		t.Errorf("records %v, want [Mixed.Jpg a.jpg]", paths)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, s := range []string{"Mixed.Jpg: mixed-case", "photo.avif", "directly in the train folder"} {
		if !strings.Contains(notes, s) {
			t.Errorf("notes lack %q:\n%s", s, notes)
		}
	}

	opt.Strict = true
	if _, err := Scan(opt); err == nil || !strings.Contains(err.Error(), "--strict") {
		t.Errorf("strict: err = %v", err)
	}
}

func bombPNG(t *testing.T) []byte {
	// A real 2048×1024 PNG: over the 1 Mpx limit of the test.
	b, err := datasettest.Encode(".png", datasettest.Pattern(2048, 1024, 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanRootErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "file"), []byte("x"))
	write(t, filepath.Join(dir, "flat", "a.jpg"), jpg(t, 8, 8))
	write(t, filepath.Join(dir, "ok", "1_x", "a.jpg"), jpg(t, 8, 8))
	write(t, filepath.Join(dir, "onlybad", "1_x", "a.jpg"), nil)
	for _, c := range []struct {
		name  string
		train []string
		reg   []string
		msg   string
	}{
		{"none", nil, nil, "no train folder"},
		{"missing", []string{filepath.Join(dir, "nope")}, nil, "does not exist"},
		{"missing reg", []string{filepath.Join(dir, "ok")}, []string{filepath.Join(dir, "nope")}, "regularization folder"},
		{"file", []string{filepath.Join(dir, "file")}, nil, "not a directory"},
		{"images directly in root", []string{filepath.Join(dir, "flat")}, nil, "must be the parent of concept folders"},
		{"only bad images", []string{filepath.Join(dir, "onlybad")}, nil, "no train images"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Scan(Options{TrainRoots: c.train, RegRoots: c.reg})
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want %q", err, c.msg)
			}
		})
	}
}

// Permission errors cannot be produced for real when tests run as root,
// so they are injected through the package's file-system hooks.
func TestScanUnreadable(t *testing.T) {
	dir := demo(t)
	img := filepath.Join(dir, "img")
	concept := filepath.Join(img, "30_pralyco woman")
	denied := func(p string) error { return &fs.PathError{Op: "open", Path: p, Err: fs.ErrPermission} }
	t.Run("file", func(t *testing.T) {
		old := openFile
		defer func() { openFile = old }()
		openFile = func(p string) (*os.File, error) {
			if filepath.Base(p) == "02.png" {
				return nil, denied(p)
			}
			return old(p)
		}
		res, err := Scan(Options{TrainRoots: []string{img}})
		if err != nil {
			t.Fatal(err)
		}
		if e := problems(res)["02.png"]; !errors.Is(e, fs.ErrPermission) || res.TrainImages != 7 {
			t.Errorf("problem %v, %d images", e, res.TrainImages)
		}
	})
	t.Run("concept folder", func(t *testing.T) {
		old := readDir
		defer func() { readDir = old }()
		readDir = func(p string) ([]os.DirEntry, error) {
			if p == concept {
				return nil, denied(p)
			}
			return old(p)
		}
		res, err := Scan(Options{TrainRoots: []string{img, filepath.Join(dir, "reg")}})
		if err != nil {
			t.Fatal(err)
		}
		if e := problems(res)["30_pralyco woman"]; !errors.Is(e, fs.ErrPermission) {
			t.Errorf("problem %v", e)
		}
	})
	t.Run("root", func(t *testing.T) {
		old := readDir
		defer func() { readDir = old }()
		readDir = func(p string) ([]os.DirEntry, error) { return nil, denied(p) }
		_, err := Scan(Options{TrainRoots: []string{img}})
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("err = %v", err)
		}
	})
	if os.Geteuid() != 0 {
		t.Run("real chmod", func(t *testing.T) {
			p := filepath.Join(concept, "03.jpg")
			if err := os.Chmod(p, 0); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(p, 0o644)
			res, err := Scan(Options{TrainRoots: []string{img}})
			if err != nil {
				t.Fatal(err)
			}
			if e := problems(res)["03.jpg"]; !errors.Is(e, fs.ErrPermission) {
				t.Errorf("problem %v", e)
			}
		})
	}
}

func TestScanCaptions(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "img", "2_sks dog")
	good := jpg(t, 16, 16)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		write(t, filepath.Join(c, n+".png"), good) // JPEG content, .png name: format comes from content
	}
	write(t, filepath.Join(c, "a.txt"), []byte("  first line  \r\nsecond line\n"))
	write(t, filepath.Join(c, "b.txt"), []byte("\n\nlater"))     // blank first line: empty caption
	write(t, filepath.Join(c, "c.txt"), []byte("old mac\rline")) // lone CR ends a line
	write(t, filepath.Join(c, "d.txt"), []byte("\xef\xbb\xbfbom"))
	res, err := Scan(Options{TrainRoots: []string{filepath.Join(dir, "img")}, CaptionExtension: "txt"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first line", "", "old mac", "\ufeffbom", "sks dog"}
	for i, r := range res.Records {
		if r.Caption != want[i] || r.Format != "jpeg" || r.Repeats != 2 {
			t.Errorf("%s: caption %q format %s, want %q", r.Path, r.Caption, r.Format, want[i])
		}
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "1 of 5 images have no .txt file") {
		t.Errorf("notes: %v", res.Notes)
	}
}

// TestScanCaptionLines: with AllCaptionLines (kohya's enable_wildcard)
// every non-empty line is kept, stripped, joined by "\n"; a file of blank
// lines gives the empty caption; an empty file is still an error.
func TestScanCaptionLines(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "img", "2_sks dog")
	good := jpg(t, 16, 16)
	for _, n := range []string{"a", "b", "c", "d"} {
		write(t, filepath.Join(c, n+".png"), good)
	}
	write(t, filepath.Join(c, "a.txt"), []byte("  first line  \r\n\r\nsecond {a|b}\rthird\n\n"))
	write(t, filepath.Join(c, "b.txt"), []byte(" \n\t\n"))
	write(t, filepath.Join(c, "c.txt"), []byte("\xef\xbb\xbfone line"))
	for _, all := range []bool{false, true} {
		res, err := Scan(Options{TrainRoots: []string{filepath.Join(dir, "img")}, CaptionExtension: "txt", AllCaptionLines: all})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"first line", "", "\ufeffone line", "sks dog"}
		if all {
			want[0] = "first line\nsecond {a|b}\nthird"
		}
		for i, r := range res.Records {
			if r.Caption != want[i] {
				t.Errorf("all lines %t: %s: caption %q, want %q", all, r.Path, r.Caption, want[i])
			}
		}
	}
	write(t, filepath.Join(c, "d.txt"), nil)
	res, _ := Scan(Options{TrainRoots: []string{filepath.Join(dir, "img")}, CaptionExtension: "txt", AllCaptionLines: true})
	if len(res.Problems) != 1 || !errors.Is(res.Problems[0].Err, errEmptyCaption) {
		t.Errorf("empty caption file with all lines: problems %v", res.Problems)
	}
}
