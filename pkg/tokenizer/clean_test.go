package tokenizer

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// readHexLines reads a testdata file of "hex code points<TAB>hex code
// points" lines.
func readHexLines(t *testing.T, name string) [][2]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		a, b, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("%s:%d: no tab", name, line)
		}
		out = append(out, [2]string{decodeHex(t, a), decodeHex(t, b)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeHex(t *testing.T, s string) string {
	var b strings.Builder
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseUint(f, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteRune(rune(v))
	}
	return b.String()
}

func TestNFCAgainstPython(t *testing.T) {
	lines := readHexLines(t, "testdata/nfc.txt")
	bad := 0
	for _, l := range lines {
		if got := nfc(l[0]); got != l[1] {
			if bad++; bad <= 10 {
				t.Errorf("nfc(%+q) = %+q, Python gives %+q", l[0], got, l[1])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d NFC cases differ", bad, len(lines))
	}
	t.Logf("%d NFC cases (Unicode %s)", len(lines), unicodeVersion)
}

func TestLowerAgainstPython(t *testing.T) {
	lines := readHexLines(t, "testdata/lower.txt")
	for _, l := range lines {
		if got := pyLower(l[0]); got != l[1] {
			t.Errorf("pyLower(%+q) = %+q, Python gives %+q", l[0], got, l[1])
		}
	}
	for _, c := range []struct{ in, want string }{
		{"ΣΊΣΥΦΟΣ", "σίσυφος"},
		{"ΟΔΟΣ.", "οδος."},
		{"Σ", "σ"},
		{"ΑΣ'Β", "ασ'β"},   // the apostrophe is case-ignorable: Σ is not final
		{"ΑΣ' Β", "ας' β"}, // a space is not: Σ is final
		{"İstanbul", "i\u0307stanbul"},
		{"MiXeD", "mixed"},
	} {
		if got := pyLower(c.in); got != c.want {
			t.Errorf("pyLower(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestFixText checks the ftfy port on ftfy's own documented examples and
// on the corners that the golden cases do not reach.
func TestFixText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// unescape_html
		{"P&eacute;rez", "Pérez"},
		{"P&EACUTE;REZ", "PÉREZ"},
		{"BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"},
		{"&ntilde; &Ntilde; &NTILDE; &nTILDE;", "ñ Ñ Ñ &nTILDE;"},
		{"&Jscr;ohn &HilbertSpace;ancock", "𝒥ohn ℋancock"},
		{"&checkmark;", "✓"},
		{"&amp;amp;amp;", "&"},
		{"&ampx; &amp", "&ampx; &amp"}, // only complete names, with ';'
		{"&#x41;&#66;&#X43;", "ABC"},
		{"&#59; &#12ab; &#x;", "&#59; &#12ab; &#x;"}, // ';' results and partial numbers stay
		{"&#0;", "\uFFFD"},
		{"&#128;&#150;", "€–"},
		{"a&#1;b", "ab"},
		{"&#99999999999999999999999;", "\uFFFD"},
		{"&semi;", ";"},
		{"&aaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaa;"}, // over 24 characters
		{"<p>&amp;</p>", "<p>&amp;</p>"},
		{"&amp;\n<b>&amp;\n&amp;", "&\n<b>&amp;\n&amp;"}, // from the first line with '<' on
		// terminal escapes, controls, line breaks
		{"\x1b[36;44mI'm blue, da ba dee da ba doo...\x1b[0m", "I'm blue, da ba dee da ba doo..."},
		{"a\x00\x08\tb\x0b\x7fc\ufeff\u206a\ufff9", "a\tbc"},
		{"one\r\ntwo\rthree\u2028four\u2029five", "one\ntwo\nthree\nfour\nfive"},
		{"\u0085", "…"}, // C1 control read as windows-1252 before line breaks are fixed
		{"price \u0080 \u0081", "price € \u0081"},
		// ligatures, width, quotes
		{"ﬂuﬃeﬆ", "fluffiest"},
		{"ＬＯＵＤ\u3000ＮＯＩＳＥＳ", "LOUD NOISES"},
		{"Ｕﾀｰﾝ", "Uターン"},
		{"ｶﾞｷﾞ", "ガギ"}, // halfwidth voiced marks compose under NFC
		{"\u201chere\u2019s a test\u201d \u02bc", "\"here's a test\" '"},
		// mojibake
		{"schÃ¶n", "schön"},
		{"â€œmojibakeâ€\u009d", "\"mojibake\""},
		{"cafÃƒÂ©", "café"}, // twice mis-decoded
		{"café crème", "café crème"},
		{"e\u0301", "é"},
	} {
		if got := fixText(c.in); got != c.want {
			t.Errorf("fixText(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestWhitespaceClean(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{" \t\n\r\v\f\x1c\x1d\x1e\x1f\u0085\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000", ""},
		{"  a  b\u00a0\u00a0c  ", "a b c"},
		{"a\u200bb", "a\u200bb"}, // ZERO WIDTH SPACE is not whitespace
	} {
		if got := whitespaceClean(c.in); got != c.want {
			t.Errorf("whitespaceClean(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestPretokens(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"it's 42nd!!'s", []string{"it", "'s", "4", "2", "nd", "!!'", "s"}},
		{"we'll'd 'x", []string{"we", "'ll", "'d", "'", "x"}},
		{"<|startoftext|>a<|endoftext|>", []string{"<|startoftext|>", "a", "<|endoftext|>"}},
		{"<|endoftext|", []string{"<|", "endoftext", "|"}},
		{"'ſ", []string{"'ſ"}}, // case-insensitive: ſ folds to s
		{"a½b", []string{"a", "½", "b"}},
		{"日本 😀🎉", []string{"日本", "😀🎉"}},
	} {
		var got []string
		for p := range pretokens(c.in) {
			got = append(got, p)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("pretokens(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
