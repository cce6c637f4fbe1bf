package sd_test

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/sdtest"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// procStatus reads fields (in kB) of /proc/self/status.
func procStatus(b *testing.B, fields ...string) map[string]float64 {
	b.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, want := range fields {
			if name == want {
				v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				out[name] = v
			}
		}
	}
	return out
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// sd15Checkpoint returns the random SD 1.5 fp16 checkpoint of
// $LOCO_BENCH_CKPT, or writes one to the temporary folder (reused by later
// runs) with the generator of scripts/mkcheckpoint.
func sd15Checkpoint(b *testing.B) string {
	b.Helper()
	path := os.Getenv("LOCO_BENCH_CKPT")
	if path == "" {
		path = filepath.Join(os.TempDir(), "loco-bench-sd15-random-fp16.safetensors")
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	var params []nn.ParamSpec
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, unet.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	vb := nn.NewBuilder(sd.VAEPrefix, nil)
	vae.New(vb, vae.DefaultConfig())
	cb := nn.NewBuilder(sd.TEPrefix, nil)
	clip.New(cb, clip.DefaultConfig())
	params = append(append(append(params, ub.Params()...), vb.Params()...), cb.Params()...)
	start := time.Now()
	if err := sd.WriteRandomCheckpoint(path, params, safetensors.F16, 1, map[string]string{"loco.size": "sd15"}); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.Logf("wrote %s (%.2f GB) in %.1f s", path, float64(st.Size())/1e9, time.Since(start).Seconds())
	return path
}

// BenchmarkLoadSD15 loads the random real-size fp16 checkpoint into the
// UNet, VAE and text encoder on the CPU (fp32 weights) and reports the
// time, the peak RSS during the load (VmHWM, reset before each load; it
// counts the mapped file pages read as well as the converted weights) and
// the anonymous and file-backed RSS right after it. Only with
// LOCO_BENCH_SD15=1 (writes a 2.1 GB file on first use; needs ~10 GB RAM).
func BenchmarkLoadSD15(b *testing.B) {
	if os.Getenv("LOCO_BENCH_SD15") == "" {
		b.Skip("set LOCO_BENCH_SD15=1 to load the real-size checkpoint")
	}
	path := sd15Checkpoint(b)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var peak, anon, file, secs, cpus float64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		resetPeakRSS(b)
		b.StartTimer()
		start, c0 := time.Now(), sdtest.CPUTime()

		ck, err := sd.OpenCheckpoint(path)
		if err != nil {
			b.Fatal(err)
		}
		e := tensor.NewEngine(cpu.New())
		src := ck.Source(e, tensor.F32)
		if _, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), unet.DefaultConfig()); err != nil {
			b.Fatal(err)
		}
		vb := nn.NewBuilder(sd.VAEPrefix, src)
		vae.New(vb, vae.DefaultConfig())
		cb := nn.NewBuilder(sd.TEPrefix, src)
		clip.New(cb, clip.DefaultConfig())
		if err := vb.Err(); err != nil {
			b.Fatal(err)
		}
		if err := cb.Err(); err != nil {
			b.Fatal(err)
		}
		if un := src.Unexpected(""); len(un) > 0 {
			b.Fatalf("unexpected tensors: %v", un)
		}

		secs += time.Since(start).Seconds()
		cpus += (sdtest.CPUTime() - c0).Seconds()
		b.StopTimer()
		s := procStatus(b, "VmHWM", "RssAnon", "RssFile")
		peak += s["VmHWM"] / 1e6 // kB -> GB
		anon += s["RssAnon"] / 1e6
		file += s["RssFile"] / 1e6
		ck.Close()
		runtime.KeepAlive(e)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(secs/n, "s/load")
	b.ReportMetric(cpus/n, "cpu-s/load")
	b.ReportMetric(float64(st.Size())/1e9/(secs/n), "fileGB/s")
	b.ReportMetric(peak/n, "peakRSS-GB")
	b.ReportMetric(anon/n, "anonRSS-GB")
	b.ReportMetric(file/n, "fileRSS-GB")
}
