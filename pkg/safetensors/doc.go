// Package safetensors reads and writes the safetensors container used by
// Stable Diffusion checkpoints and LoRA/LoCon networks.
//
// Layout: an 8-byte little-endian header length N, N bytes of a UTF-8 JSON
// object, then the tensor data. The JSON maps each tensor name to its
// dtype, shape and [begin, end) byte offsets within the data section; the
// optional key "__metadata__" maps strings to strings. Data is
// little-endian and row-major (C order); shape [] is a scalar.
//
// Reading (Open, NewReader) parses the header and validates it the way the
// reference Rust implementation does: the header must be valid UTF-8 JSON
// no longer than the file or 100,000,000 bytes, metadata values must be
// strings, every dtype must be known, dimensions non-negative, each
// tensor's byte size must equal its element count × dtype size, and the
// tensors, sorted by offset, must tile the data section exactly (no gaps,
// no overlaps, nothing past or left over at the end of the file). Errors
// are *FormatError values naming the file and, where there is one, the
// tensor. Tensor data is read lazily, one tensor at a time, from a
// memory-mapped file where the system allows it and through io.ReaderAt
// otherwise. A *File may be read from several goroutines at once.
//
// Writing (WriteFile, Create, Encode) lays the file out as the reference
// writer does, so that files are byte-identical to those written by
// Python's safetensors ≥ 0.3 for the same tensors: compact JSON with
// "__metadata__" first (its keys sorted here, for reproducibility), tensors
// ordered by dtype (U64, I64, F64, F32, … BOOL) then by name byte-wise,
// data in that same order, and the header padded with spaces so that the
// data starts 8-byte aligned. Files are written to a temporary name in the
// target directory, synced and renamed into place, so a failed write never
// leaves a partial file under the final name. Create streams: it writes the
// header from the tensors' specifications and then accepts their data one
// tensor at a time, in any order, so a 2 GB checkpoint never has to be in
// memory at once.
//
// Float conversions (F16, BF16 ⇄ float32) are exact and round to nearest
// even; see package loco/pkg/half.
package safetensors
