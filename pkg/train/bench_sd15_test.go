package train

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
	"loco/pkg/train/traintest"
)

// EnvBenchSD15 gates BenchmarkSD15Step: the real-size step takes tens of
// seconds and about 10 GB, so `go test ./...` (and a plain -bench run)
// skips it.
const EnvBenchSD15 = "LOCO_BENCH_SD15"

// vmStatus reads a field of /proc/self/status in bytes (0 if absent).
func vmStatus(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && name == field {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v * 1024
		}
	}
	return 0
}

// cpuSeconds is the process's user + system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkSD15Step is one LoCon training step of loco-train's loop on the
// CPU backend with the real-size SD 1.5 UNet and text encoder (seeded
// random float32 weights): the recipe's network (dim 8/alpha 4, conv 4/4,
// preset full, text encoder trained, 354 modules), one 512×512 image
// (64×64 latent), batch 1, multires noise; latent sampling, noise, forward,
// backward, clipping and AdamW — with and without gradient checkpointing.
// It reports the median wall seconds per step (the machine is shared, so
// the median of the timed steps is the number to quote), the median CPU
// seconds per step (user + system, steadier under load; on an idle
// machine wall ≈ CPU / cores), and the peak RSS (VmHWM, reset before each
// case; run one case per process for a clean peak). Run it only on purpose:
//
//	LOCO_BENCH_SD15=1 go test -run '^$' -bench 'SD15Step/checkpointing=false' -benchtime 5x -timeout 60m ./pkg/train
//	LOCO_BENCH_SD15=1 go test -run '^$' -bench 'SD15Step/checkpointing=true' -benchtime 5x -timeout 60m ./pkg/train
func BenchmarkSD15Step(b *testing.B) {
	if os.Getenv(EnvBenchSD15) == "" {
		b.Skipf("set %s=1 to run the real-size SD 1.5 training step (tens of seconds per step, ~10 GB)", EnvBenchSD15)
	}
	t0 := time.Now()
	e := tensor.NewEngine(cpu.New())
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, &sd.RandomSource{E: e, DType: tensor.F32, Seed: 1}), unet.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, &sd.RandomSource{E: e, DType: tensor.F32, Seed: 2})
	te := clip.New(tb, clip.DefaultConfig())
	if tb.Err() != nil {
		b.Fatal(tb.Err())
	}
	models := Models{E: e, UNet: u, TE: te, Tok: testTokenizer(b)}

	recs := recipeRecords(1, 0, [2]int{512, 512})
	lat := traintest.Latents{}
	lat.Add("30_pralyco woman-0", 64, 64, 1, 0)
	opt := DefaultOptions()
	opt.NetworkDim, opt.NetworkAlpha, opt.ConvDim, opt.ConvAlpha = 8, 4, 4, 4
	opt.MultiresIterations, opt.MultiresDiscount = 10, 0.1
	opt.Seed, opt.OutputDir = 1, b.TempDir()
	p, err := NewPlan(recs, "latent_key", 1, 1, 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := New(opt, p, models, lat)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built SD 1.5 UNet + CLIP and the LoCon (%d modules, %d values) in %v; RSS %.2f GB",
		len(tr.Net.Modules), tr.Net.Len(), time.Since(t0).Round(time.Second), vmStatus("VmRSS")/1e9)
	batches := p.EpochBatches(opt.Seed, 0)
	for _, ck := range []bool{true, false} {
		b.Run(fmt.Sprintf("checkpointing=%v", ck), func(b *testing.B) {
			tr.M.UNet.Checkpoint = ck
			debug.FreeOSMemory()
			if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
				b.Logf("cannot reset the peak RSS (%v): VmHWM covers the whole process", err)
			}
			var secs, cpus []float64
			i := 0
			for b.Loop() {
				s, c := time.Now(), cpuSeconds()
				in, err := tr.BatchInputs(0, i, batches[0])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tr.ForwardBackward(in, 1); err != nil {
					b.Fatal(err)
				}
				if _, _, err := tr.update(); err != nil {
					b.Fatal(err)
				}
				tr.Step++
				i++
				secs = append(secs, time.Since(s).Seconds())
				cpus = append(cpus, cpuSeconds()-c)
			}
			b.Logf("steps: wall %.2f s, CPU %.2f s", secs, cpus)
			sort.Float64s(secs)
			sort.Float64s(cpus)
			b.ReportMetric(secs[len(secs)/2], "s/step-median")
			b.ReportMetric(secs[0], "s/step-min")
			b.ReportMetric(cpus[len(cpus)/2], "cpu-s/step-median")
			b.ReportMetric(vmStatus("VmHWM")/1e9, "peak-RSS-GB")
		})
	}
}
