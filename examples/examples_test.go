// Package examples holds the example Makefiles (pralyco: the recipe end to
// end; sweep: several runs from one latent cache). This test runs their
// demo targets on the bundled demo data with a tiny random model.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runMake(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -C %s %s: %v\n%s", dir, strings.Join(args, " "), err, out)
	}
}

func exists(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("missing output: %v", err)
		} else if st.Size() == 0 {
			t.Errorf("%s is empty", p)
		}
	}
}

func glob(t *testing.T, pattern string, want int) {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) != want {
		t.Errorf("%s: %d files %v, want %d", pattern, len(m), m, want)
	}
}

func needMake(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not found: the example Makefiles are not run")
	}
	if testing.Short() {
		t.Skip("-short: the example Makefiles are not run")
	}
}

func TestPralyco(t *testing.T) {
	needMake(t)
	tmp := t.TempDir()
	demo, tools := filepath.Join(tmp, "demo"), filepath.Join(tmp, "bin")
	runMake(t, "pralyco", "demo", "DEMO="+demo, "TOOLS="+tools)
	out := filepath.Join(demo, "out")
	exists(t, filepath.Join(out, "model", "pralyco.safetensors"), filepath.Join(out, "model", "pralyco-000001.safetensors"),
		filepath.Join(out, "model", "pralyco-loss.png"), filepath.Join(out, "samples", "sheet.png"),
		filepath.Join(out, "pralyco-merged.safetensors"), filepath.Join(out, "merged", "sheet.png"))
	// One sample per epoch (the prompt fixes seed 42) and a sheet per round.
	glob(t, filepath.Join(out, "model", "sample", "pralyco_e00000?_00_*_42.png"), 2)
	glob(t, filepath.Join(out, "model", "sample", "pralyco_e00000?_sheet.png"), 2)
	// plan-check ran inside demo; the plans it compared are there and equal.
	a, _ := os.ReadFile(filepath.Join(out, "plan-flags.txt"))
	b, _ := os.ReadFile(filepath.Join(out, "plan-config.txt"))
	if len(a) == 0 || string(a) != string(b) {
		t.Errorf("plans differ:\nflags:\n%s\nconfig:\n%s", a, b)
	}
	if !strings.Contains(string(a), "epochs: 4") || !strings.Contains(string(a), "batch size 3, gradient accumulation 12") {
		t.Errorf("the plan is not the recipe's:\n%s", a)
	}
}

func TestSweep(t *testing.T) {
	needMake(t)
	tmp := t.TempDir()
	demo, tools := filepath.Join(tmp, "demo"), filepath.Join(tmp, "bin")
	runMake(t, "sweep", "-j2", "demo", "DEMO="+demo, "TOOLS="+tools)
	out := filepath.Join(demo, "out")
	for _, r := range []string{"4_2_1e-4", "8_4_1e-3", "8_8_5e-5"} {
		exists(t, filepath.Join(out, "runs", r, "net.safetensors"), filepath.Join(out, "runs", r, "sample.png"),
			filepath.Join(out, "runs", r, "net-loss.png"))
	}
	exists(t, filepath.Join(out, "compare.png"))
	// One cache for all runs: three records' worth of latents encoded once.
	glob(t, filepath.Join(out, "cache", "index.json"), 1)
}
