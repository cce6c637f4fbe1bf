package cuda

import (
	"fmt"
	"strings"
	"unsafe"

	"loco/pkg/tensor"
)

// CUDA graph capture: BeginCapture records the ops queued on the backend's
// stream instead of running them; EndCapture turns the record into a Graph
// that Launch replays with one cuGraphLaunch.
//
// What is safe while capturing:
//   - every op that only queues work on the stream: kernels, cuBLAS GEMMs
//     (alpha and beta are host values, captured as they are at capture
//     time), Copy, Fill, device-to-device copies;
//   - Alloc, Free and View: the caching allocator's bookkeeping; a cache
//     miss calls cuMemAlloc, which relaxed capture mode allows. A block
//     freed during capture is reused by later captured ops in stream
//     order, as it is eagerly. Cached blocks are never returned to the
//     device while capturing or while a Graph is alive (allocator.keep).
//   - Upload, and the id uploads of Embedding/EmbeddingBackward: the host
//     data is copied at capture time into a staging block the Graph owns
//     (fresh device memory, never touched by a captured op), and the
//     capture records a device-to-device copy from it. A replay therefore
//     uploads the values captured, not the host slice's current contents.
//
// What is refused while capturing, with an *tensor.OpError saying so:
//   - Sync (returns it), Download and SumSquares (panic): they wait for
//     results that do not exist until a replay. SumSquares has queued its
//     reduction kernel when it panics; the capture stays valid.
//   - Graph.Launch and Graph.Close, and a second BeginCapture.
//
// Memory: the graph's temporaries are blocks of the allocator's cache,
// fixed at capture. Storage allocated after EndCapture may be one of them,
// and each replay overwrites it. What must survive a replay (parameters,
// optimizer state, inputs written between replays) belongs in storage
// allocated before BeginCapture, or allocated during the capture and not
// freed.
//
// BeginCapture also refuses LOCO_CUDA_SYNC=1 (a synchronisation after
// every launch). Host-side decisions taken during capture (a step number
// in AdamW's bias correction, a loss scale, which blocks the allocator
// hands out) are frozen into the Graph: replaying it repeats them.

// captureRelaxed is CU_STREAM_CAPTURE_MODE_RELAXED: the capturing thread
// may still make calls that are unsafe during capture (cuMemAlloc), which
// the caching allocator needs on a miss.
const captureRelaxed = 2

// streamNonBlocking is CU_STREAM_NON_BLOCKING: no implicit ordering with
// the legacy NULL stream (and so none with the capturing stream).
const streamNonBlocking = 1

// graphState is the Backend's capture state.
type graphState struct {
	capturing bool
	live      int       // Graphs instantiated and not closed
	staged    []uintptr // staging blocks of the capture in progress (raw device memory)
	stagedLen int       // their bytes
	side      uintptr   // non-blocking stream that fills staging blocks during capture
	ws        uint64    // bytes of the cuBLAS workspace set by BeginCapture (0: none)
	wsNote    string    // why no workspace was set, if none
}

// Graph is a captured and instantiated sequence of the backend's ops.
type Graph struct {
	b           *Backend
	graph, exec uintptr
	staged      []uintptr
	stagedLen   int // bytes
	nodes       int // -1 when the driver lacks cuGraphGetNodes
	closed      bool
}

// captureError is the error of an op that is not allowed while capturing,
// nil when no capture is in progress.
func (b *Backend) captureError(op string) error {
	if !b.graph.capturing {
		return nil
	}
	return &tensor.OpError{Op: op, Msg: "not allowed while capturing a CUDA graph (it waits for results that exist only when the graph is replayed; call EndCapture first)"}
}

// refuseWhileCapturing panics with captureError's error during capture.
func (b *Backend) refuseWhileCapturing(op string) {
	if err := b.captureError(op); err != nil {
		panic(err)
	}
}

// Capturing reports whether a capture is in progress.
func (b *Backend) Capturing() bool { return b.graph.capturing }

// missingGraphSyms names the graph entry points BeginCapture needs that
// the driver lacks.
func (b *Backend) missingGraphSyms() []string {
	d := &b.drv
	var miss []string
	for _, s := range []struct {
		name string
		p    uintptr
	}{
		{"cuStreamBeginCapture_v2", d.cuStreamBeginCapture}, {"cuStreamEndCapture", d.cuStreamEndCapture},
		{"cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags}, {"cuGraphLaunch", d.cuGraphLaunch},
		{"cuGraphExecDestroy", d.cuGraphExecDestroy}, {"cuGraphDestroy", d.cuGraphDestroy},
	} {
		if s.p == 0 {
			miss = append(miss, s.name)
		}
	}
	return miss
}

// BeginCapture waits for the queued work, then starts capturing the
// stream's ops into a graph (cuStreamBeginCapture_v2, relaxed mode) until
// EndCapture. The first call also gives cuBLAS a workspace of its own
// (cublasSetWorkspace_v2, 32 MiB on sm_90 and newer, 4 MiB before, as
// cuBLAS recommends), so that captured GEMMs never allocate; it stays set.
func (b *Backend) BeginCapture() error {
	const op = "cuda.BeginCapture"
	if b.graph.capturing {
		return &tensor.OpError{Op: op, Msg: "a capture is already in progress"}
	}
	if miss := b.missingGraphSyms(); len(miss) > 0 {
		return &tensor.OpError{Op: op, Msg: "the CUDA driver lacks " + strings.Join(miss, ", ") + " (graph capture needs a CUDA 11.4 or newer driver)"}
	}
	if debugSync {
		return &tensor.OpError{Op: op, Msg: "LOCO_CUDA_SYNC=1 synchronises after every launch, which a capture does not allow"}
	}
	if err := b.Sync(); err != nil {
		return err
	}
	b.enter()
	defer b.leave()
	if b.graph.ws == 0 && b.graph.wsNote == "" {
		b.setBlasWorkspace()
	}
	if b.graph.side == 0 {
		if r := call(b.drv.cuStreamCreate, uintptr(unsafe.Pointer(&b.graph.side)), streamNonBlocking); r != 0 {
			b.graph.side = 0
			return &tensor.OpError{Op: op, Msg: "cuStreamCreate (staging stream): " + b.drv.errText(r)}
		}
	}
	if r := call(b.drv.cuStreamBeginCapture, b.stream, captureRelaxed); r != 0 {
		return &tensor.OpError{Op: op, Msg: "cuStreamBeginCapture_v2: " + b.drv.errText(r)}
	}
	b.graph.capturing = true
	b.holdCache()
	return nil
}

// setBlasWorkspace gives cuBLAS a workspace from the allocator. A cuBLAS
// without cublasSetWorkspace_v2, or a failure, is noted, not fatal: cuBLAS
// 12.2 and newer allocate their default workspace stream-ordered, which
// capture records.
func (b *Backend) setBlasWorkspace() {
	if b.blas.cublasSetWorkspace == 0 {
		b.graph.wsNote = "cuBLAS lacks cublasSetWorkspace_v2"
		return
	}
	size := uint64(4 << 20)
	if b.arch >= 90 {
		size = 32 << 20
	}
	p, err := b.mem.alloc(size)
	if err != nil {
		b.graph.wsNote = "allocating it: " + err.Error()
		return
	}
	if r := call(b.blas.cublasSetWorkspace, b.handle, p, uintptr(size)); r != 0 {
		_ = b.mem.release(p)
		b.graph.wsNote = "cublasSetWorkspace_v2: " + cublasStatusText(r)
		return
	}
	b.graph.ws = size
}

// stageUpload is hostToDevice during capture: the bytes go now, through
// the side stream, into fresh device memory the graph will own, and the
// capture records a copy from there to dst at this point of the stream.
// A block from the allocator's cache would not do: a captured op that ran
// before this point may use it as scratch, and on replay it would
// overwrite the staged values before the copy reads them.
func (b *Backend) stageUpload(op string, dst uintptr, src unsafe.Pointer, bytes int) {
	p, err := b.mem.raw.alloc(uint64(bytes))
	if err != nil {
		tensor.Errorf(op, "staging %d bytes of a captured upload: %v", bytes, err)
	}
	b.graph.staged = append(b.graph.staged, p)
	b.graph.stagedLen += bytes
	b.enter()
	defer b.leave()
	b.drv.check(op, "cuMemcpyHtoDAsync (staging a captured upload)", call(b.drv.cuMemcpyHtoDAsync, p, uintptr(src), uintptr(bytes), b.graph.side))
	b.drv.check(op, "cuStreamSynchronize (staging stream)", call(b.drv.cuStreamSynchronize, b.graph.side))
	b.drv.check(op, "cuMemcpyDtoDAsync (captured upload)", call(b.drv.cuMemcpyDtoDAsync, dst, p, uintptr(bytes), b.stream))
}

// holdCache keeps cached blocks on the device while a capture or a Graph
// may refer to them.
func (b *Backend) holdCache() { b.mem.keep = b.graph.capturing || b.graph.live > 0 }

// freeStaged gives staging blocks back to the device.
func (b *Backend) freeStaged(ps []uintptr) {
	for _, p := range ps {
		b.mem.raw.free(p)
	}
}

// EndCapture ends the capture begun by BeginCapture and instantiates the
// graph. When an op failed during capture, the driver reports the capture
// as invalidated here; the op itself panicked with the first error.
func (b *Backend) EndCapture() (*Graph, error) {
	const op = "cuda.EndCapture"
	if !b.graph.capturing {
		return nil, &tensor.OpError{Op: op, Msg: "no capture in progress (BeginCapture first)"}
	}
	b.enter()
	defer b.leave()
	var graph uintptr
	r := call(b.drv.cuStreamEndCapture, b.stream, uintptr(unsafe.Pointer(&graph)))
	b.graph.capturing = false
	staged, stagedLen := b.graph.staged, b.graph.stagedLen
	b.graph.staged, b.graph.stagedLen = nil, 0
	fail := func(msg string) (*Graph, error) {
		if graph != 0 {
			call(b.drv.cuGraphDestroy, graph)
		}
		b.freeStaged(staged)
		b.holdCache()
		return nil, &tensor.OpError{Op: op, Msg: msg}
	}
	if r != 0 {
		return fail("cuStreamEndCapture: " + b.drv.errText(r))
	}
	g := &Graph{b: b, graph: graph, staged: staged, stagedLen: stagedLen, nodes: -1}
	if b.drv.cuGraphGetNodes != 0 {
		var n uint64
		if call(b.drv.cuGraphGetNodes, graph, 0, uintptr(unsafe.Pointer(&n))) == 0 {
			g.nodes = int(n)
		}
	}
	if r := call(b.drv.cuGraphInstantiateWithFlags, uintptr(unsafe.Pointer(&g.exec)), graph, 0); r != 0 {
		return fail(fmt.Sprintf("cuGraphInstantiateWithFlags (%d nodes): %s", g.nodes, b.drv.errText(r)))
	}
	b.graph.live++
	b.holdCache()
	return g, nil
}

// captureStatus is cuStreamIsCapturing's CUstreamCaptureStatus for the
// stream: 0 none, 1 active, 2 invalidated; -1 when the driver lacks it.
func (b *Backend) captureStatus() int {
	if b.drv.cuStreamIsCapturing == 0 {
		return -1
	}
	b.enter()
	defer b.leave()
	var st int32
	b.drv.check("cuda.captureStatus", "cuStreamIsCapturing", call(b.drv.cuStreamIsCapturing, b.stream, uintptr(unsafe.Pointer(&st))))
	return int(st)
}

// Nodes is the number of nodes in the graph (-1 if the driver cannot say).
func (g *Graph) Nodes() int { return g.nodes }

// String describes the graph: nodes, staged uploads, cuBLAS workspace.
func (g *Graph) String() string {
	ws := fmt.Sprintf("cuBLAS workspace %d MiB", g.b.graph.ws>>20)
	if g.b.graph.ws == 0 {
		ws = "cuBLAS default workspace (" + g.b.graph.wsNote + ")"
	}
	return fmt.Sprintf("CUDA graph of %d nodes, %d staged uploads (%d bytes), %s", g.nodes, len(g.staged), g.stagedLen, ws)
}

// Launch queues one replay of the graph on the backend's stream; Sync
// waits for it and reports a device error.
func (g *Graph) Launch() error {
	const op = "cuda.Graph.Launch"
	if g == nil || g.closed {
		return &tensor.OpError{Op: op, Msg: "graph is closed"}
	}
	b := g.b
	if err := b.captureError(op); err != nil {
		return err
	}
	b.enter()
	defer b.leave()
	if r := call(b.drv.cuGraphLaunch, g.exec, b.stream); r != 0 {
		return &tensor.OpError{Op: op, Msg: "cuGraphLaunch: " + b.drv.errText(r)}
	}
	return nil
}

// Close waits for the stream, destroys the executable graph and the graph
// and frees the staging blocks. Closing twice is a no-op; closing during a
// capture panics (it would free device memory).
func (g *Graph) Close() {
	if g == nil || g.closed {
		return
	}
	b := g.b
	b.refuseWhileCapturing("cuda.Graph.Close")
	b.enter()
	defer b.leave()
	call(b.drv.cuStreamSynchronize, b.stream)
	call(b.drv.cuGraphExecDestroy, g.exec)
	call(b.drv.cuGraphDestroy, g.graph)
	b.freeStaged(g.staged)
	g.staged = nil
	g.closed = true
	b.graph.live--
	b.holdCache()
}
