package sample

import (
	"strconv"
	"strings"
)

// Weighted is a piece of prompt text with its attention weight.
type Weighted struct {
	Text   string
	Weight float64
}

// ParseAttention reads AUTOMATIC1111's emphasis syntax as kohya's
// long-prompt pipeline does: "(text)" multiplies the weight by 1.1,
// "[text]" divides it by 1.1, "(text:w)" multiplies it by w, nesting
// multiplies; "\(", "\)", "\[", "\]", "\\" are literal; brackets left open
// are closed at the end. Neighbouring pieces of equal weight are merged.
func ParseAttention(text string) []Weighted {
	var res []Weighted
	var round, square []int
	mul := func(from int, m float64) {
		for i := from; i < len(res); i++ {
			res[i].Weight *= m
		}
	}
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\\':
			if i+1 < len(text) && strings.IndexByte(`()[]\`, text[i+1]) >= 0 {
				res = append(res, Weighted{text[i+1 : i+2], 1})
				i += 2
			} else {
				i++ // a lone backslash is dropped
			}
			continue
		case c == '(':
			round = append(round, len(res))
		case c == '[':
			square = append(square, len(res))
		case c == ')' && len(round) > 0:
			mul(round[len(round)-1], 1.1)
			round = round[:len(round)-1]
		case c == ']' && len(square) > 0:
			mul(square[len(square)-1], 1/1.1)
			square = square[:len(square)-1]
		case c == ':':
			// ":<number>)" closes a round bracket with an explicit weight.
			j := i + 1
			if j < len(text) && (text[j] == '+' || text[j] == '-') {
				j++
			}
			for j < len(text) && (text[j] == '.' || (text[j] >= '0' && text[j] <= '9')) {
				j++
			}
			if j > i+1 && j < len(text) && text[j] == ')' {
				if w, err := strconv.ParseFloat(text[i+1:j], 64); err == nil && len(round) > 0 {
					mul(round[len(round)-1], w)
					round = round[:len(round)-1]
					i = j + 1
					continue
				} else if err == nil || len(round) == 0 {
					// kohya: the match is a piece of text when no bracket is open.
					res = append(res, Weighted{text[i : j+1], 1})
					i = j + 1
					continue
				}
			}
			res = append(res, Weighted{":", 1})
		case c == ')' || c == ']':
			res = append(res, Weighted{string(c), 1})
		default:
			j := i
			for j < len(text) && strings.IndexByte(`\()[]:`, text[j]) < 0 {
				j++
			}
			res = append(res, Weighted{text[i:j], 1})
			i = j
			continue
		}
		i++
	}
	for _, p := range round {
		mul(p, 1.1)
	}
	for _, p := range square {
		mul(p, 1/1.1)
	}
	if len(res) == 0 {
		return []Weighted{{"", 1}}
	}
	out := []Weighted{res[0]}
	for _, r := range res[1:] {
		if last := &out[len(out)-1]; last.Weight == r.Weight {
			last.Text += r.Text
		} else {
			out = append(out, r)
		}
	}
	return out
}
