package dataset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Errors of ParseFolderName.
var (
	// ErrNoRepeats: the name does not start with an integer (kohya skips
	// the folder with a warning).
	ErrNoRepeats = errors.New("folder name does not start with a number of repeats (expected <repeats>_<caption>, e.g. 10_sks dog)")
	// ErrBadRepeats: the repeats are 0 or negative (kohya skips the folder
	// silently; loco warns).
	ErrBadRepeats = errors.New("repeats must be at least 1")
)

// ParseFolderName splits a concept folder name as sd-scripts does: split on
// every "_", the first piece is the repeats (Python int() rules), the other
// pieces joined back with "_" are the folder caption (kohya's
// class_tokens). "30_pralyco woman" gives 30, "pralyco woman"; "30" gives
// 30, "" (no "_" at all is accepted); "30__x" gives 30, "_x".
func ParseFolderName(name string) (repeats int, caption string, err error) {
	first, rest, _ := strings.Cut(name, "_")
	n, ok := pythonInt(first)
	if !ok {
		return 0, "", ErrNoRepeats
	}
	if n < 1 {
		return 0, "", fmt.Errorf("%w (got %d)", ErrBadRepeats, n)
	}
	return n, rest, nil
}

// pythonInt parses s like Python's int(s): surrounding whitespace, an
// optional sign, leading zeros, and "_" between digits are allowed. (The
// caller has already split on "_", so the last rule never applies here.)
// Unlike Python, only ASCII digits are accepted: Python also takes other
// Unicode decimal digits such as "٣", which no one uses for repeats. Values
// that do not fit in 32 bits are refused.
func pythonInt(s string) (int, bool) {
	s = strings.TrimFunc(s, isPySpace)
	if s == "" {
		return 0, false
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg, s = true, s[1:]
	}
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false
	}
	if neg {
		v = -v
	}
	return int(v), true
}

// isPySpace is Python's str.isspace: Unicode white space plus the ASCII
// separators 0x1C..0x1F, which Go's unicode.IsSpace does not include.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

// SplitTrigger splits a folder caption into the informational trigger
// (first space-separated word) and class (the rest). kohya makes no such
// split: the whole caption is used; "<trigger> <class>" is only a naming
// convention.
func SplitTrigger(caption string) (trigger, class string) {
	t, c, _ := strings.Cut(strings.TrimSpace(caption), " ")
	return t, strings.TrimSpace(c)
}
