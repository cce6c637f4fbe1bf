package train

import (
	"testing"
)

// BenchmarkTinyStep is one LoCon training step of the tiny model (golden
// unet_tiny config, latents 2×4×16×24, text encoder trained): inputs,
// forward, backward and the AdamW update.
func BenchmarkTinyStep(b *testing.B) {
	tr, _ := tinyRun(b, b.TempDir(), func(o *Options) { o.MultiresIterations = 10 })
	bs := tr.Plan.EpochBatches(tr.Opt.Seed, 0)
	i := 0
	for b.Loop() {
		in, err := tr.BatchInputs(0, i%len(bs), bs[i%len(bs)])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tr.ForwardBackward(in, 1); err != nil {
			b.Fatal(err)
		}
		if _, _, err := tr.update(); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/step")
}
