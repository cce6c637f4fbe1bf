package dataset

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseFolderName(t *testing.T) {
	for _, c := range []struct {
		name    string
		repeats int
		caption string
		err     error
	}{
		// dataset.md §2 table.
		{"30_pralyco woman", 30, "pralyco woman", nil},
		{"1_woman", 1, "woman", nil},
		{"10_my_concept", 10, "my_concept", nil},
		{"40_sks dog_photo", 40, "sks dog_photo", nil},
		{"007_bond", 7, "bond", nil},
		{"5_", 5, "", nil},
		{"30", 30, "", nil},
		{"30__x", 30, "_x", nil},
		{"0_x", 0, "", ErrBadRepeats},
		{"-2_x", 0, "", ErrBadRepeats},
		{"pralyco", 0, "", ErrNoRepeats},
		{"x_10", 0, "", ErrNoRepeats},
		{"1.5_x", 0, "", ErrNoRepeats},
		// Python int() details.
		{" 3 _x", 3, "x", nil},
		{"+4_x", 4, "x", nil},
		{"\t12\n_x", 12, "x", nil},
		{"1e3_x", 0, "", ErrNoRepeats},
		{"3x_x", 0, "", ErrNoRepeats},
		{"_x", 0, "", ErrNoRepeats},
		{"-_x", 0, "", ErrNoRepeats},
		{"", 0, "", ErrNoRepeats},
		{"99999999999_x", 0, "", ErrNoRepeats},
		{"2_ spaced  caption ", 2, " spaced  caption ", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, cap, err := ParseFolderName(c.name)
			if !errors.Is(err, c.err) || r != c.repeats || cap != c.caption {
				t.Errorf("ParseFolderName(%q) = %d, %q, %v; want %d, %q, %v", c.name, r, cap, err, c.repeats, c.caption, c.err)
			}
		})
	}
}

func TestSplitTrigger(t *testing.T) {
	for _, c := range [][3]string{
		{"pralyco woman", "pralyco", "woman"},
		{"woman", "woman", ""},
		{"sks dog_photo of x", "sks", "dog_photo of x"},
		{"", "", ""},
	} {
		if tr, cl := SplitTrigger(c[0]); tr != c[1] || cl != c[2] {
			t.Errorf("SplitTrigger(%q) = %q, %q", c[0], tr, cl)
		}
	}
}

func TestBalanceReg(t *testing.T) {
	ones := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	fill := func(n, v int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	// T=450, 100 reg images: the first 50 get 5, the other 50 get 4.
	want450 := append(fill(50, 5), fill(50, 4)...)
	for _, c := range []struct {
		name    string
		repeats []int
		t       int
		want    []int
	}{
		{"recipe T=600, 40 images", ones(40), 600, fill(40, 15)},
		{"T=450, 100 images", ones(100), 450, want450},
		{"more reg than needed", ones(5), 3, []int{1, 1, 1, 0, 0}},
		{"crossing image keeps all its repeats", []int{2, 2, 2}, 3, []int{2, 2, 0}},
		{"exactly enough", []int{3, 1}, 4, []int{3, 1}},
		{"T=0 uses none", []int{1, 1}, 0, []int{0, 0}},
		{"second pass adds one each", []int{2, 1}, 6, []int{4, 2}},
		{"no reg images", nil, 10, []int{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := BalanceReg(c.repeats, c.t)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("BalanceReg(%v, %d) = %v, want %v", c.repeats, c.t, got, c.want)
			}
		})
	}
}

// BalanceReg's closed form for the later passes must equal kohya's loop.
func TestBalanceRegMatchesKohyaLoop(t *testing.T) {
	kohya := func(repeats []int, t int) []int {
		out := make([]int, len(repeats))
		n, first := 0, true
		for n < t {
			for i, r := range repeats {
				if first {
					out[i] = r
					n += r
				} else {
					out[i]++
					n++
				}
				if n >= t {
					break
				}
			}
			first = false
		}
		return out
	}
	for t0 := 0; t0 < 40; t0++ {
		for _, reps := range [][]int{{1}, {1, 2, 3}, {5, 1}, {1, 1, 1, 1, 1, 1, 1}} {
			if got, want := BalanceReg(reps, t0), kohya(reps, t0); !reflect.DeepEqual(got, want) {
				t.Errorf("T=%d %v: got %v, kohya %v", t0, reps, got, want)
			}
		}
	}
}

func TestCaptionCandidates(t *testing.T) {
	for _, c := range []struct {
		img  string
		want []string
	}{
		{"img/30_a/x.jpg", []string{"img/30_a/x.caption"}},
		{"img/30_a/x_1_2_3_4.jpg", []string{"img/30_a/x_1_2_3_4.caption", "img/30_a/x.caption"}},
		// kohya splits the whole path: the folder's "_" count too.
		{"img/30_a_b_c/x_y.jpg", []string{"img/30_a_b_c/x_y.caption", "img/30.caption"}},
		{"img/30_a/x.y.png", []string{"img/30_a/x.y.caption"}},
	} {
		if got := captionCandidates(c.img, ".caption"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("captionCandidates(%q) = %q, want %q", c.img, got, c.want)
		}
	}
	for in, want := range map[string]string{"": ".caption", "txt": ".txt", ".txt": ".txt"} {
		if got := NormalizeCaptionExtension(in); got != want {
			t.Errorf("NormalizeCaptionExtension(%q) = %q", in, got)
		}
	}
}

func FuzzParseFolderName(f *testing.F) {
	for _, s := range []string{"30_pralyco woman", "007_bond", "-2_x", " +3 _y", "1.5_x", "30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		r, _, err := ParseFolderName(name)
		if err == nil && r < 1 {
			t.Fatalf("%q: accepted repeats %d", name, r)
		}
	})
}
