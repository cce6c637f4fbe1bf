package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// DefaultCaptionExtension is sd-scripts' default (the kohya_ss GUI uses
// ".txt"; pass --caption-extension .txt for GUI-prepared folders).
const DefaultCaptionExtension = ".caption"

// NormalizeCaptionExtension adds the leading dot kohya adds; empty means
// the default.
func NormalizeCaptionExtension(ext string) string {
	if ext == "" {
		return DefaultCaptionExtension
	}
	if !strings.HasPrefix(ext, ".") {
		return "." + ext
	}
	return ext
}

// captionCandidates are the caption files kohya tries for an image, in
// order: the image path with its extension replaced, then, when the path
// minus extension has at least 5 "_"-separated pieces, the path without its
// last 4 pieces (the face-crop naming scheme base_cx_cy_w_h.jpg).
//
// kohya splits the whole path, directories included, not just the file
// name, so "img/30_a_b_c/x_y.jpg" looks for "img/30.caption" as its second
// candidate. This is odd but it is what sd-scripts does; loco reproduces it
// (a caption file found this way is reported in caption_file).
func captionCandidates(imgPath, ext string) []string {
	base := strings.TrimSuffix(imgPath, filepath.Ext(imgPath))
	c := []string{base + ext}
	if tokens := strings.Split(base, "_"); len(tokens) >= 5 {
		c = append(c, strings.Join(tokens[:len(tokens)-4], "_")+ext)
	}
	return c
}

// errEmptyCaption: kohya stops on a caption file with no line at all.
var errEmptyCaption = errors.New("caption file is empty (0 bytes); kohya stops on it: write a caption or delete the file")

// findCaption returns the caption of an image from its caption file, with
// the file used, or found=false when there is none.
func findCaption(imgPath, ext string, allLines bool) (caption, file string, found bool, err error) {
	for _, c := range captionCandidates(imgPath, ext) {
		st, err := statFile(c)
		if err != nil || !st.Mode().IsRegular() {
			continue // kohya uses os.path.isfile: anything else does not count
		}
		caption, err := readCaption(c, allLines)
		return caption, c, true, err
	}
	return "", "", false, nil
}

// readCaption reads a caption file as kohya does: UTF-8 (invalid UTF-8 is an
// error), only the first line (Python's universal newlines: "\n", "\r\n"
// or "\r" end a line), stripped of surrounding white space. A UTF-8
// byte-order mark is not white space for Python and is kept at the start of
// the caption, as in kohya. With allLines (kohya's enable_wildcard), every
// line is stripped and the non-empty ones are joined with "\n": training
// with --enable-wildcard then picks one line per use, and training without
// it uses the first.
func readCaption(path string, allLines bool) (string, error) {
	b, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("caption file: %w", err)
	}
	if len(b) == 0 {
		return "", fmt.Errorf("%s: %w", path, errEmptyCaption)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("caption file %s is not valid UTF-8", path)
	}
	s := string(b)
	if !allLines {
		if i := strings.IndexAny(s, "\r\n"); i >= 0 {
			s = s[:i]
		}
		return strings.TrimFunc(s, isPySpace), nil
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"), "\n") {
		if l = strings.TrimFunc(l, isPySpace); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n"), nil
}

// File-system access, replaceable by tests to inject errors that cannot be
// produced for real when the tests run as root (permission denied).
var (
	readDir  = os.ReadDir
	readFile = os.ReadFile
	statFile = os.Stat
	openFile = os.Open
)
