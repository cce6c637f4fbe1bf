package train

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"loco/pkg/manifest"
)

// recipeRecords makes the records of spec/train.md §12's worked example:
// nTrain images in "30_pralyco woman" and nReg in "1_woman", one bucket.
func recipeRecords(nTrain, nReg int, bucket [2]int) []*manifest.Record {
	var recs []*manifest.Record
	add := func(i int, concept string, rep int, reg bool, caption string) {
		k, _ := json.Marshal(fmt.Sprintf("%s-%d", concept, i))
		b := bucket
		recs = append(recs, &manifest.Record{Schema: 1, Path: fmt.Sprintf("%s/%d.png", concept, i), Concept: concept,
			Repeats: rep, IsReg: reg, Caption: caption, Bucket: &b, Extra: map[string]json.RawMessage{"latent_key": k}})
	}
	for i := 0; i < nTrain; i++ {
		add(i, "30_pralyco woman", 30, false, "pralyco woman")
	}
	for i := 0; i < nReg; i++ {
		add(i, "1_woman", 1, true, "woman")
	}
	return recs
}

func TestPlanWorkedExample(t *testing.T) {
	p, err := NewPlan(recipeRecords(20, 40, [2]int{512, 512}), "latent_key", 3, 12, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{{"T", p.T, 600}, {"R", p.R, 600}, {"M", p.M, 400}, {"U", p.U, 34}, {"total", p.TotalSteps, 136},
		{"GUI total", p.GUISteps, 134}, {"loop epochs", p.LoopEpochs, 4}, {"reg raw", p.RegRaw, 40}} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	for _, it := range p.Items {
		if it.Rec.IsReg && it.Repeats != 15 {
			t.Fatalf("reg image %s repeats %d, want 15", it.Rec.Path, it.Repeats)
		}
	}
	// The GUI total: 4 epochs looped, the last stopping after 32 of 34 updates.
	g, _ := NewPlan(recipeRecords(20, 40, [2]int{512, 512}), "latent_key", 3, 12, 4, 134)
	if g.LoopEpochs != 4 || g.TotalSteps-3*g.U != 32 {
		t.Errorf("GUI total: %d epochs, last epoch %d updates", g.LoopEpochs, g.TotalSteps-3*g.U)
	}
	// Without reg images.
	n, _ := NewPlan(recipeRecords(20, 0, [2]int{512, 512}), "latent_key", 3, 12, 4, 0)
	if n.M != 200 || n.U != 17 || n.GUISteps != 67 || n.TotalSteps != 68 {
		t.Errorf("no reg: M %d U %d GUI %d total %d, want 200 17 67 68", n.M, n.U, n.GUISteps, n.TotalSteps)
	}
	// T = 450 with 100 reg images: the first 50 get 5, the others 4.
	q, _ := NewPlan(recipeRecords(15, 100, [2]int{512, 512}), "latent_key", 3, 1, 1, 0)
	if q.R != 450 || q.Items[15].Repeats != 5 || q.Items[114].Repeats != 4 {
		t.Errorf("balancing: R %d, first %d, last %d", q.R, q.Items[15].Repeats, q.Items[114].Repeats)
	}
}

func TestPlanLRPoints(t *testing.T) {
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.03*want } // the spec rounds to 2–3 digits
	for _, c := range []struct {
		warm       int
		k          int
		wantLRTe4s float64
	}{{0, 0, 1e-4}, {0, 67, 5e-5}, {0, 133, 1.4e-8}, {13, 0, 0}, {13, 1, 7.7e-6}, {13, 13, 1e-4}, {13, 67, 5.84e-5}, {13, 133, 1.7e-8}} {
		l := LRSchedule{Name: "cosine", Warmup: c.warm, Total: 134}
		got := 1e-4 * l.Multiplier(c.k)
		if !near(got, c.wantLRTe4s) && !(c.wantLRTe4s == 0 && got == 0) {
			t.Errorf("warmup %d, k %d: lr %g, want %g", c.warm, c.k, got, c.wantLRTe4s)
		}
	}
	if w := Warmup(0.1, 134); w != 13 {
		t.Errorf("warmup 10%% of 134 = %d, want 13", w)
	}
	// The pre-2023-07-16 GA bug (N = 1608) would keep the LR at 0.983e-4.
	if got := 1e-4 * (LRSchedule{Name: "cosine", Total: 1608}).Multiplier(133); !near(got, 0.983e-4) {
		t.Errorf("GA-bug schedule at 133: %g", got)
	}
}

func TestEpochBatches(t *testing.T) {
	recs := recipeRecords(4, 6, [2]int{512, 512})
	for i := 0; i < 3; i++ { // a second bucket with 3 train images
		b := [2]int{448, 576}
		recs[i].Bucket = &b
	}
	p, err := NewPlan(recs, "latent_key", 4, 3, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 3×30 = 90 in bucket 448x576, 30 train + 120 reg in 512x512.
	if p.M != 23+38 || p.U != 21 {
		t.Fatalf("M %d U %d", p.M, p.U)
	}
	bs := p.EpochBatches(42, 0)
	if len(bs) != p.M {
		t.Fatalf("%d batches, want %d", len(bs), p.M)
	}
	uses := map[int]int{}
	short := 0
	for _, b := range bs {
		if len(b.Items) < 4 {
			short++
		}
		for _, i := range b.Items {
			if p.Items[i].Bucket != b.Bucket {
				t.Fatalf("item %d of bucket %v in a batch of %v", i, p.Items[i].Bucket, b.Bucket)
			}
			uses[i]++
		}
	}
	for i, it := range p.Items {
		if uses[i] != it.Repeats {
			t.Errorf("item %d used %d times, repeats %d", i, uses[i], it.Repeats)
		}
	}
	if short != 2 {
		t.Errorf("%d short batches, want 2 (one per bucket)", short)
	}
	again := p.EpochBatches(42, 0)
	other := p.EpochBatches(42, 1)
	same := func(a, b []Batch) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
	if !same(bs, again) || same(bs, other) {
		t.Error("epoch order is not a function of (seed, epoch)")
	}
	var upd int
	for i := range bs {
		if IsUpdate(i, len(bs), p.GradAccum) {
			upd++
		}
	}
	if upd != p.U {
		t.Errorf("%d update boundaries, want U = %d", upd, p.U)
	}
}

func TestNewPlanBadInput(t *testing.T) {
	recs := recipeRecords(2, 0, [2]int{512, 512})
	delete(recs[1].Extra, "latent_key")
	if _, err := NewPlan(recs, "latent_key", 1, 1, 1, 0); err == nil {
		t.Error("record without latent_key accepted")
	}
	if _, err := NewPlan(recipeRecords(0, 3, [2]int{512, 512}), "latent_key", 1, 1, 1, 0); err == nil {
		t.Error("reg-only records accepted")
	}
}
