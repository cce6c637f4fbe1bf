package tokenizer

//go:generate sh -c "python3 gen_unicode.py && gofmt -w unicode_tables.go"

import (
	"sort"
	"strings"
	"sync"
)

// Hangul syllable arithmetic (Unicode §3.12).
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

// nfcData holds the lookup maps built once from the generated tables.
type nfcData struct {
	decomp  map[rune][2]rune // canonical decomposition; [1] is 0 for singletons
	compose map[uint64]rune  // first<<32 | second -> primary composite
}

var loadNFC = sync.OnceValue(func() *nfcData {
	d := &nfcData{
		decomp:  make(map[rune][2]rune, len(canonDecomp)/4),
		compose: make(map[uint64]rune, len(canonDecomp)/8),
	}
	for i := 0; i < len(canonDecomp); i += 4 {
		c, a, b := rune(canonDecomp[i]), rune(canonDecomp[i+1]), rune(canonDecomp[i+2])
		d.decomp[c] = [2]rune{a, b}
		if canonDecomp[i+3] == 1 {
			d.compose[uint64(a)<<32|uint64(b)] = c
		}
	}
	return d
})

// combiningClass returns the canonical combining class of r.
func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	n := len(cccRanges) / 3
	i := sort.Search(n, func(i int) bool { return rune(cccRanges[3*i+1]) >= r })
	if i < n && rune(cccRanges[3*i]) <= r {
		return uint8(cccRanges[3*i+2])
	}
	return 0
}

// nfc returns s in Unicode normalisation form C, as Python's
// unicodedata.normalize("NFC", s) does with the tables' Unicode version.
func nfc(s string) string {
	// Every code point below U+0300 is a starter that composes with nothing
	// below U+0300, so such text is already in NFC.
	fast := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xCC { // lead bytes of U+0300 and above
			fast = false
			break
		}
	}
	if fast {
		return s
	}
	d := loadNFC()

	// 1. Full canonical decomposition.
	buf := make([]rune, 0, len(s))
	for _, r := range s {
		buf = d.decompose(buf, r)
	}
	// 2. Canonical ordering: stable sort of each run of non-starters by class.
	for i := 1; i < len(buf); i++ {
		cc := combiningClass(buf[i])
		if cc == 0 {
			continue
		}
		for j := i; j > 0; j-- {
			prev := combiningClass(buf[j-1])
			if prev == 0 || prev <= cc {
				break
			}
			buf[j-1], buf[j] = buf[j], buf[j-1]
		}
	}
	// 3. Canonical composition.
	out := buf[:0]
	starter := -1    // index in out of the last starter
	var lastCC uint8 // class of the last code point appended to out
	for _, r := range buf {
		cc := combiningClass(r)
		if starter >= 0 && (starter == len(out)-1 || (lastCC != 0 && lastCC < cc)) {
			if c, ok := d.composePair(out[starter], r); ok {
				out[starter] = c
				continue
			}
		}
		if cc == 0 {
			starter = len(out)
		}
		lastCC = cc
		out = append(out, r)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range out {
		b.WriteRune(r)
	}
	return b.String()
}

func (d *nfcData) decompose(buf []rune, r rune) []rune {
	if r >= hangulSBase && r < hangulSBase+hangulSCount {
		si := r - hangulSBase
		buf = append(buf, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
		if t := si % hangulTCount; t != 0 {
			buf = append(buf, hangulTBase+t)
		}
		return buf
	}
	p, ok := d.decomp[r]
	if !ok {
		return append(buf, r)
	}
	buf = d.decompose(buf, p[0])
	if p[1] != 0 {
		buf = d.decompose(buf, p[1])
	}
	return buf
}

func (d *nfcData) composePair(a, b rune) (rune, bool) {
	// Hangul L+V -> LV, LV+T -> LVT.
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	c, ok := d.compose[uint64(a)<<32|uint64(b)]
	return c, ok
}
