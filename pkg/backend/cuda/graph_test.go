package cuda

import (
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"loco/pkg/golden"
	"loco/pkg/tensor"
)

// TestGraphSymbolsAreOptional: the graph entry points are not among the
// symbols the backend requires, bindOptional leaves absent ones 0, and
// BeginCapture then names what is missing instead of calling through a
// null pointer.
func TestGraphSymbolsAreOptional(t *testing.T) {
	var d driverAPI
	required := map[string]bool{}
	for _, s := range d.syms() {
		required[s.name] = true
	}
	for _, s := range d.graphSyms() {
		if required[s.name] {
			t.Errorf("%s is a required driver symbol; an old driver would not load", s.name)
		}
	}
	var c cublasAPI
	for _, s := range c.syms() {
		if s.name == "cublasSetWorkspace_v2" {
			t.Error("cublasSetWorkspace_v2 is a required cuBLAS symbol")
		}
	}

	// A driver that has cuGraphLaunch and cuStreamEndCapture only.
	have := map[string]uintptr{"cuGraphLaunch": 0x1000, "cuStreamEndCapture": 0x2000}
	lookup := func(h uintptr, name string) (uintptr, error) {
		if h != 7 {
			t.Errorf("lookup in handle %d, want 7", h)
		}
		if p, ok := have[name]; ok {
			return p, nil
		}
		return 0, errors.New("undefined symbol: " + name)
	}
	b := &Backend{mem: newAllocator(&fakeMemory{limit: 1 << 20, live: map[uintptr]uint64{}})}
	bindOptional(7, b.drv.graphSyms(), lookup)
	if b.drv.cuGraphLaunch != 0x1000 || b.drv.cuStreamEndCapture != 0x2000 {
		t.Errorf("found symbols not bound: cuGraphLaunch %#x, cuStreamEndCapture %#x", b.drv.cuGraphLaunch, b.drv.cuStreamEndCapture)
	}
	if b.drv.cuStreamBeginCapture != 0 || b.drv.cuGraphInstantiateWithFlags != 0 || b.drv.cuGraphGetNodes != 0 {
		t.Error("absent symbols were bound")
	}
	err := b.BeginCapture()
	if err == nil {
		t.Fatal("BeginCapture succeeded on a driver without cuStreamBeginCapture_v2")
	}
	msg := err.Error()
	for _, want := range []string{"cuda.BeginCapture", "cuStreamBeginCapture_v2", "cuGraphInstantiateWithFlags", "cuGraphExecDestroy", "11.4"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	for _, absent := range []string{"cuGraphLaunch,", "cuStreamEndCapture"} {
		if strings.Contains(msg, absent) {
			t.Errorf("error %q names %q, which the driver has", msg, absent)
		}
	}
	if b.Capturing() || b.mem.keep {
		t.Error("a refused BeginCapture left the backend capturing")
	}
}

// wantCaptureError checks that err is the *tensor.OpError of op refused
// during capture.
func wantCaptureError(t *testing.T, op string, err error) {
	t.Helper()
	var oe *tensor.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s during capture: got %v (%T), want a *tensor.OpError", op, err, err)
	}
	if oe.Op != op || !strings.Contains(oe.Msg, "not allowed while capturing a CUDA graph") {
		t.Errorf("%s during capture: error %q", op, err)
	}
}

// TestCaptureGuards drives the capture state of a Backend without a
// device: the calls that would synchronise refuse before reaching the
// driver, and the allocator never frees cached blocks while a capture or
// a graph may hold their addresses.
func TestCaptureGuards(t *testing.T) {
	f := &fakeMemory{limit: 10 << 20, live: map[uintptr]uint64{}}
	b := &Backend{mem: newAllocator(f)}
	x := b.Alloc(tensor.F32, 6<<18) // 6 MiB
	b.Free(x)                       // cached

	b.graph.capturing = true // as BeginCapture leaves it
	b.holdCache()
	wantCaptureError(t, "cuda.Sync", b.Sync())
	y := b.Alloc(tensor.F32, 4)
	wantCaptureError(t, "cuda.Download", tensor.Catch(func() { b.Download(make([]float32, 4), y) }))
	wantCaptureError(t, "cuda.Graph.Launch", (&Graph{b: b}).Launch())
	wantCaptureError(t, "cuda.Graph.Close", tensor.Catch(func() { (&Graph{b: b}).Close() }))
	if err := b.BeginCapture(); err == nil || !strings.Contains(err.Error(), "already in progress") {
		t.Errorf("second BeginCapture: %v", err)
	}

	// Out of memory while capturing: an error, the cache untouched.
	_, err := b.mem.alloc(8 << 20)
	if err == nil || !strings.Contains(err.Error(), "kept for a CUDA graph") {
		t.Errorf("allocation beyond the device while capturing: %v", err)
	}
	if f.frees != 0 || b.mem.cached != 6<<20 {
		t.Errorf("cuMemFree called %d times while capturing (cached %d)", f.frees, b.mem.cached)
	}
	// A live graph keeps the cache too.
	b.graph.capturing, b.graph.live = false, 1
	b.holdCache()
	if _, err := b.mem.alloc(8 << 20); err == nil || f.frees != 0 {
		t.Errorf("with a live graph: err %v, %d frees", err, f.frees)
	}
	// With neither, the cache goes back to the device on out-of-memory.
	b.graph.live = 0
	b.holdCache()
	if _, err := b.mem.alloc(8 << 20); err != nil || f.frees != 1 {
		t.Errorf("without graphs: err %v, %d frees, want the cached block freed", err, f.frees)
	}
	if _, err := b.EndCapture(); err == nil || !strings.Contains(err.Error(), "no capture in progress") {
		t.Errorf("EndCapture without BeginCapture: %v", err)
	}
	if err := (&Graph{b: b, closed: true}).Launch(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Launch of a closed graph: %v", err)
	}
}

// TestBeginCaptureRefusesDebugSync: LOCO_CUDA_SYNC=1 cannot be captured.
func TestBeginCaptureRefusesDebugSync(t *testing.T) {
	old := debugSync
	debugSync = true
	t.Cleanup(func() { debugSync = old })
	b := &Backend{mem: newAllocator(&fakeMemory{limit: 1 << 20, live: map[uintptr]uint64{}})}
	for _, s := range b.drv.graphSyms() {
		*s.addr = 1 // present, never called
	}
	err := b.BeginCapture()
	if err == nil || !strings.Contains(err.Error(), "LOCO_CUDA_SYNC") {
		t.Errorf("BeginCapture with LOCO_CUDA_SYNC=1: %v", err)
	}
	if b.Capturing() {
		t.Error("capturing after a refused BeginCapture")
	}
}

var (
	graphDevOnce sync.Once
	graphDev     *Backend
	graphDevErr  error
)

// graphDevice opens a CUDA backend for the device test of this (internal)
// package, or skips; LOCO_REQUIRE_CUDA=1 turns the skip into a failure.
func graphDevice(t *testing.T) *Backend {
	t.Helper()
	graphDevOnce.Do(func() { graphDev, graphDevErr = New(0) })
	if graphDevErr != nil {
		if os.Getenv("LOCO_REQUIRE_CUDA") == "1" {
			t.Fatalf("LOCO_REQUIRE_CUDA=1 but no CUDA backend: %v", graphDevErr)
		}
		t.Skipf("no CUDA device (set LOCO_REQUIRE_CUDA=1 to fail instead): %v", graphDevErr)
	}
	return graphDev
}

// TestGraphCaptureReplay captures an upload, a GEMM, a copy through a
// buffer allocated and freed inside the capture, an add and a scale, then
// replays the graph twice: after the outputs and the uploaded buffer were
// overwritten (the replay must redo the captured upload), and after one
// GEMM operand changed (the replay must read it anew). Each replay is
// compared with the same ops run eagerly.
func TestGraphCaptureReplay(t *testing.T) {
	b := graphDevice(t)
	const m, k, n = 64, 96, 80
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		t.Run(dt.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, uint64(dt)))
			rnd := func(l int) []float32 {
				v := make([]float32, l)
				for i := range v {
					v[i] = float32(rng.NormFloat64())
				}
				return v
			}
			hA, hB, hB2, hU := rnd(m*k), rnd(k*n), rnd(k*n), rnd(m*n)
			A, B, U := b.Alloc(dt, m*k), b.Alloc(dt, k*n), b.Alloc(dt, m*n)
			C, D := b.Alloc(dt, m*n), b.Alloc(dt, m*n)
			defer func() {
				for _, s := range []tensor.Storage{A, B, U, C, D} {
					b.Free(s)
				}
			}()
			b.Upload(A, hA)
			b.Upload(B, hB)
			ops := func() {
				b.Upload(U, hU)
				b.Gemm(C, A, B, tensor.GemmParams{M: m, N: n, K: k, Alpha: 1})
				tmp := b.Alloc(dt, m*n)
				b.Copy(tmp, C)
				b.Binary(tensor.OpAdd, D, tmp, U, tensor.Broadcast{Inner: 1, BLen: m * n})
				b.Free(tmp)
				b.Scale(D, D, 0.5)
			}
			download := func() []float32 {
				out := make([]float32, m*n)
				b.Download(out, D)
				return out
			}
			ops() // compiles the kernels before the capture
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}

			if err := b.BeginCapture(); err != nil {
				t.Fatalf("BeginCapture: %v", err)
			}
			var g *Graph
			func() {
				defer func() {
					if b.Capturing() {
						if _, err := b.EndCapture(); err != nil {
							t.Logf("EndCapture after a failure: %v", err)
						}
					}
				}()
				if err := tensor.Catch(ops); err != nil {
					t.Fatalf("ops during capture: %v", err)
				}
				wantCaptureError(t, "cuda.Sync", b.Sync())
				wantCaptureError(t, "cuda.Download", tensor.Catch(func() { download() }))
				if st := b.captureStatus(); st != 1 && st != -1 {
					t.Fatalf("capture status %d after the refused calls, want 1 (active)", st)
				}
				var err error
				if g, err = b.EndCapture(); err != nil {
					t.Fatalf("EndCapture: %v", err)
				}
			}()
			defer g.Close()
			t.Logf("%v", g)
			if g.Nodes() != -1 && g.Nodes() < 5 {
				t.Errorf("%d nodes captured, want at least 5 (upload, GEMM, copy, add, scale)", g.Nodes())
			}
			if len(g.staged) != 1 {
				t.Errorf("%d staged uploads, want 1", len(g.staged))
			}

			tol := 1e-6
			if dt != tensor.F32 {
				tol = 1e-3 // cuBLAS may pick another kernel once it has its own workspace
			}
			check := func(what string) {
				t.Helper()
				ops()
				want := download()
				b.Fill(D, 0)
				b.Fill(C, 0)
				b.Upload(U, make([]float32, m*n))
				if err := g.Launch(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if err := b.Sync(); err != nil {
					t.Fatalf("%s: Sync after Launch: %v", what, err)
				}
				got := download()
				e := golden.RelL2(got, want)
				t.Logf("%s: replay vs eager rel. L2 %.3g", what, e)
				if !(e <= tol) {
					t.Errorf("%s: replay differs from the eager ops: rel. L2 %.3g > %g (got[0] %g, want[0] %g)", what, e, tol, got[0], want[0])
				}
			}
			check("replay 1")
			b.Upload(B, hB2)
			check("replay 2, B changed")
			g.Close()
			if b.mem.keep {
				t.Error("allocator still keeps its cache after the last graph closed")
			}
			if err := g.Launch(); err == nil {
				t.Error("Launch after Close succeeded")
			}
		})
	}
}
