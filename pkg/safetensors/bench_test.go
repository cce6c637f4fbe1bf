package safetensors

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchFile writes a 64 MiB F16 file (32 tensors of 1 Mi elements) and
// returns its path and the float32 values.
func benchFile(b *testing.B, dt DType) (string, []float32) {
	b.Helper()
	r := rand.New(rand.NewPCG(9, 9))
	v := randomFloats(r, 1<<20)
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	var specs []Spec
	for i := range 32 {
		specs = append(specs, Spec{Name: "t" + itoa(i), DType: dt, Shape: []int{1 << 10, 1 << 10}})
	}
	w, err := Create(path, specs, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range specs {
		if err := w.WriteFloat32(s.Name, v); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return path, v
}

// BenchmarkReadFloat32 reads every tensor of a file (warm page cache) into
// preallocated float32 buffers; MB/s counts file bytes.
func BenchmarkReadFloat32(b *testing.B) {
	for _, dt := range []DType{F16, BF16, F32} {
		for _, via := range []string{"mmap", "ReadAt"} {
			b.Run(string(dt)+"/"+via, func(b *testing.B) {
				path, v := benchFile(b, dt)
				var f *File
				var err error
				if via == "mmap" {
					f, err = Open(path)
				} else {
					raw, rerr := os.ReadFile(path)
					if rerr != nil {
						b.Fatal(rerr)
					}
					f, err = NewReader(bytes.NewReader(raw), int64(len(raw)), path)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				dst := make([]float32, len(v))
				b.SetBytes(int64(len(f.Names()) * len(v) * dt.Size()))
				for b.Loop() {
					for _, name := range f.Names() {
						if err := f.ReadFloat32Into(name, dst); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkWriteF16 streams 64 MiB of F16 from float32 to a file,
// including the fsync and rename; MB/s counts file bytes.
func BenchmarkWriteF16(b *testing.B) {
	v := randomFloats(rand.New(rand.NewPCG(9, 9)), 1<<20)
	dir := b.TempDir()
	var specs []Spec
	for i := range 32 {
		specs = append(specs, Spec{Name: "t" + itoa(i), DType: F16, Shape: []int{1 << 20}})
	}
	b.SetBytes(32 << 21)
	for b.Loop() {
		w, err := Create(filepath.Join(dir, "out.safetensors"), specs, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range specs {
			if err := w.WriteFloat32(s.Name, v); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
