// Package tensor is loco's compute engine: the Tensor type, the op-level
// Backend interface that the CPU and CUDA backends implement, and the
// autograd tape.
//
// Shapes are row-major in PyTorch order (N,C,H,W; Linear weights [out,in];
// conv weights [K,C,R,S]). A Tensor is always contiguous; views (Reshape)
// share storage.
//
// Operations validate shapes and panic with an *OpError naming the op and
// the shapes; Catch turns such a panic into an error at an API edge. Model
// code is therefore written as plain expressions.
//
// Autograd: an operation records its backward half on the engine's tape only
// when one of its inputs needs a gradient. Backward halves add into gradient
// buffers, so accumulation over micro-batches is free. Checkpoint re-runs a
// block's forward during the backward pass instead of keeping its
// activations.
//
// Memory: tensors made by operations come from the engine's per-step arena
// and are released together by Engine.EndStep; weights and optimizer state
// are allocated persistently. The garbage collector never owns device memory.
package tensor
