package tokenizer

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// fixText is the part of ftfy.fix_text (ftfy 6.1.1, default configuration)
// that the tokenizer needs; see doc.go for what is and is not ported.
//
// As in ftfy, the text is fixed line by line (each segment ends after a
// '\n'), and from the first line that contains '<' on, HTML entities are
// left alone ("auto" mode: the text may be HTML).
func fixText(s string) string {
	var out strings.Builder
	out.Grow(len(s))
	unescape := true
	for len(s) > 0 {
		end := strings.IndexByte(s, '\n') + 1
		if end == 0 {
			end = len(s)
		}
		seg := s[:end]
		s = s[end:]
		if unescape && strings.IndexByte(seg, '<') >= 0 {
			unescape = false
		}
		out.WriteString(fixSegment(seg, unescape))
	}
	return out.String()
}

// fixSegment applies ftfy's fixers in ftfy's order until the text stops
// changing (fix_and_explain).
func fixSegment(s string, unescape bool) string {
	for {
		orig := s
		if unescape {
			s = unescapeHTML(s)
		}
		s = fixEncoding(s)
		s = fixC1Controls(s)
		s = mapRunes(s, ligatureMap)
		s = mapRunes(s, widthMap)
		s = uncurlQuotes(s)
		s = fixLineBreaks(s)
		// fix_surrogates has nothing to do: a Go string holds no surrogates.
		s = removeTerminalEscapes(s)
		s = removeControlChars(s)
		s = nfc(s)
		if s == orig {
			return s
		}
	}
}

// ligatureMap is ftfy's LIGATURES: Latin ligatures and digraphs split into
// their letters.
var ligatureMap = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn",
	'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// mapRunes replaces every rune found in m (str.translate).
func mapRunes(s string, m map[rune]string) string {
	var b *strings.Builder
	for i, r := range s {
		if r < 0x80 {
			if b != nil {
				b.WriteByte(byte(r))
			}
			continue
		}
		rep, ok := m[r]
		if ok && b == nil {
			b = new(strings.Builder)
			b.Grow(len(s))
			b.WriteString(s[:i])
		}
		switch {
		case ok:
			b.WriteString(rep)
		case b != nil:
			b.WriteRune(r)
		}
	}
	if b == nil {
		return s
	}
	return b.String()
}

// uncurlQuotes replaces U+02BC and U+2018..U+201B with "'", and
// U+201C..U+201F with '"'.
func uncurlQuotes(s string) string {
	if !strings.ContainsAny(s, "\u02bc\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == 0x2BC || (r >= 0x2018 && r <= 0x201B):
			return '\''
		case r >= 0x201C && r <= 0x201F:
			return '"'
		}
		return r
	}, s)
}

var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n")

// fixLineBreaks turns CRLF, CR, U+2028, U+2029 and U+0085 into '\n'.
func fixLineBreaks(s string) string {
	if !strings.ContainsAny(s, "\r\u2028\u2029\u0085") {
		return s
	}
	return lineBreaks.Replace(s)
}

// removeTerminalEscapes deletes ANSI escapes: ESC '[' (digits|';')* letter,
// where a digit is any Unicode decimal digit (Python's \d).
func removeTerminalEscapes(s string) string {
	if strings.IndexByte(s, 0x1B) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == 0x1B && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) {
				r, n := utf8.DecodeRuneInString(s[j:])
				if r != ';' && !unicode.IsDigit(r) {
					break
				}
				j += n
			}
			if j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
				i = j + 1
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// isRemovedControl is ftfy's CONTROL_CHARS: the control characters that
// remove_control_chars deletes (tab, LF, FF and CR are kept).
func isRemovedControl(r rune) bool {
	switch {
	case r <= 0x08, r == 0x0B, r >= 0x0E && r <= 0x1F, r == 0x7F:
		return true
	case r >= 0x206A && r <= 0x206F, r == 0xFEFF, r >= 0xFFF9 && r <= 0xFFFC:
		return true
	}
	return false
}

func removeControlChars(s string) string {
	for _, r := range s {
		if isRemovedControl(r) {
			return strings.Map(func(r rune) rune {
				if isRemovedControl(r) {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

// cp1252 maps bytes 0x80..0x9F of windows-1252 to Unicode; the five bytes
// that windows-1252 leaves undefined map to themselves, as in ftfy's
// "sloppy-windows-1252".
var cp1252 = [32]rune{
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
}

// cp1252Byte returns the sloppy-windows-1252 byte for r.
func cp1252Byte(r rune) (byte, bool) {
	if r < 0x80 || (r >= 0xA0 && r <= 0xFF) {
		return byte(r), true
	}
	for i, c := range cp1252 {
		if c == r {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

// fixC1Controls decodes each C1 control character (U+0080..U+009F) as the
// windows-1252 byte it stands for.
func fixC1Controls(s string) string {
	if !hasC1(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9F {
			return cp1252[r-0x80]
		}
		return r
	}, s)
}

func hasC1(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == 0xC2 && s[i+1] >= 0x80 && s[i+1] <= 0x9F {
			return true
		}
	}
	return false
}

// fixEncoding repairs mojibake: UTF-8 text that was decoded as Latin-1 or
// windows-1252. It is a subset of ftfy's fix_encoding (see doc.go): the
// whole text must re-encode to one of those two and then be valid UTF-8.
func fixEncoding(s string) string {
	for {
		next := fixEncodingStep(s)
		if next == s {
			return s
		}
		s = next
	}
}

func fixEncodingStep(s string) string {
	ascii := true
	latin1 := true
	for _, r := range s {
		if r >= 0x80 {
			ascii = false
		}
		if r > 0xFF {
			latin1 = false
		}
	}
	if ascii {
		return s
	}
	if latin1 {
		b := make([]byte, 0, len(s))
		for _, r := range s {
			b = append(b, byte(r))
		}
		if utf8.Valid(b) {
			return string(b)
		}
	}
	b := make([]byte, 0, len(s))
	ok := true
	for _, r := range s {
		c, in := cp1252Byte(r)
		if !in {
			ok = false
			break
		}
		b = append(b, c)
	}
	if ok && utf8.Valid(b) {
		return string(b)
	}
	if latin1 && hasC1(s) {
		// Latin-1 text with C1 controls: they were meant as windows-1252.
		return fixC1Controls(s)
	}
	return s
}

// unescapeHTML is ftfy's unescape_html: every match of
// &#?[0-9A-Za-z]{1,24}; that names an HTML5 entity (or the upper-cased
// name of a lower-case one), or is a complete numeric reference, is
// replaced by its text.
func unescapeHTML(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i:]
		n := entityLen(s)
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
			continue
		}
		b.WriteString(unescapeEntity(s[:n]))
		s = s[n:]
	}
}

// entityLen returns the length of the match of &#?[0-9A-Za-z]{1,24}; at
// the start of s, or 0.
func entityLen(s string) int {
	j := 1
	if j < len(s) && s[j] == '#' {
		j++
	}
	start := j
	for j < len(s) && j-start < 24 && isASCIIAlnum(s[j]) {
		j++
	}
	if j == start || j >= len(s) || s[j] != ';' {
		return 0
	}
	return j + 1
}

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// unescapeEntity replaces one entity match (with '&' and ';'), or returns
// it unchanged.
func unescapeEntity(m string) string {
	if m[1] == '#' {
		return numericEntity(m)
	}
	if v, ok := namedEntity(m); ok {
		return v
	}
	// An upper-cased lower-case entity name, like &EACUTE;, gives the
	// upper-cased text, unless the upper-case name is itself an entity or
	// starts with a legacy entity (html.unescape would change it).
	name := m[1 : len(m)-1]
	lower := strings.ToLower(name)
	if name != strings.ToUpper(lower) || html.UnescapeString(m) != m {
		return m
	}
	if v, ok := namedEntity("&" + lower + ";"); ok {
		return pyUpper(v)
	}
	return m
}

// namedEntity looks up "&name;" in the HTML5 entity table, without the
// prefix matching of legacy names that html.UnescapeString also does.
func namedEntity(m string) (string, bool) {
	v := html.UnescapeString(m)
	// A complete match consumed the ';'; a partial one left it at the end.
	if v == ";" || !strings.HasSuffix(v, ";") {
		return v, true
	}
	return "", false
}

// numericEntity decodes &#digits; or &#xhex; as Python's html.unescape
// does; anything else (or a result containing ';') is left as it is.
func numericEntity(m string) string {
	body := m[2 : len(m)-1]
	base := 10
	if body[0] == 'x' || body[0] == 'X' {
		base = 16
		body = body[1:]
	}
	if body == "" {
		return m
	}
	var num int64
	for i := 0; i < len(body); i++ {
		c := body[i]
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return m
		}
		if num <= 0x10FFFF {
			num = num*int64(base) + d
		}
	}
	var v string
	switch {
	case num == 0:
		v = "\uFFFD"
	case num == 0x0D:
		v = "\r"
	case num >= 0x80 && num <= 0x9F:
		v = string(cp1252[num-0x80])
	case num >= 0xD800 && num <= 0xDFFF, num > 0x10FFFF:
		v = "\uFFFD"
	case num <= 0x08, num == 0x0B, num >= 0x0E && num <= 0x1F, num == 0x7F,
		num >= 0xFDD0 && num <= 0xFDEF, num&0xFFFE == 0xFFFE:
		v = ""
	default:
		v = string(rune(num))
	}
	if strings.IndexByte(v, ';') >= 0 {
		return m
	}
	return v
}
