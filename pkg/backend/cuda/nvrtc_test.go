package cuda

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// loadCompilerOrSkip loads NVRTC, which needs no device, or skips.
func loadCompilerOrSkip(t *testing.T) *compiler {
	t.Helper()
	c, err := loadCompiler()
	if err != nil {
		t.Skipf("no NVRTC on this machine, kernel sources not compiled: %v", err)
	}
	return c
}

// TestKernelsCompile compiles every embedded kernel source to PTX for
// compute_90 with the local NVRTC, so that syntax and type errors in the
// kernels show without a GPU.
func TestKernelsCompile(t *testing.T) {
	c := loadCompilerOrSkip(t)
	t.Logf("NVRTC %d.%d from %s", c.major, c.minor, c.path)
	for name, src := range kernelSources() {
		t.Run(name, func(t *testing.T) {
			opts := append([]string{"--gpu-architecture=compute_90"}, kernelOptions...)
			ptx, err := c.compile(name+".cu", src, opts, false)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(ptx, []byte(".entry")) {
				t.Fatalf("%s: PTX has no kernel entry", name)
			}
			for _, want := range expectedKernels[name] {
				for _, s := range []string{"f32", "f16", "bf16"} {
					k := want
					if strings.Contains(k, "%s") {
						k = strings.ReplaceAll(k, "%s", s)
					} else if s != "f32" {
						continue
					}
					if !bytes.Contains(ptx, []byte(".entry "+k+"(")) {
						t.Errorf("%s: kernel %s missing from PTX", name, k)
					}
				}
			}
			if testing.Verbose() && os.Getenv("LOCO_CUDA_DUMP_PTX") != "" {
				os.WriteFile(name+".ptx", ptx, 0o644)
			}
		})
	}
}

func TestCompileErrorShowsLog(t *testing.T) {
	c := loadCompilerOrSkip(t)
	_, err := c.compile("broken.cu", "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
		[]string{"--gpu-architecture=compute_90"}, false)
	if err == nil {
		t.Fatal("compiling a broken source succeeded")
	}
	if !strings.Contains(err.Error(), "broken.cu") || !strings.Contains(err.Error(), "undefined_name") {
		t.Fatalf("error does not name the source and the problem: %v", err)
	}
}
