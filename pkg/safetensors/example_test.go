package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"loco/pkg/safetensors"
)

func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "net.safetensors")

	// Write: one F16 weight and a scalar alpha, with metadata.
	w, err := safetensors.FromFloat32("lora.down.weight", safetensors.F16, []int{2, 3}, []float32{0.5, -1, 2, 0.1, 0, 3})
	if err != nil {
		log.Fatal(err)
	}
	alpha, err := safetensors.FromFloat32("lora.alpha", safetensors.F32, nil, []float32{4})
	if err != nil {
		log.Fatal(err)
	}
	if err := safetensors.WriteFile(path, []safetensors.Tensor{w, alpha}, map[string]string{"ss_network_dim": "8"}); err != nil {
		log.Fatal(err)
	}

	// Read it back.
	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		v, err := f.ReadFloat32(name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(name, info.DType, info.Shape, v)
	}
	fmt.Println(f.Metadata())
	// Output:
	// lora.alpha F32 [] [4]
	// lora.down.weight F16 [2 3] [0.5 -1 2 0.099975586 0 3]
	// map[ss_network_dim:8]
}

// A checkpoint too large for memory is written tensor by tensor.
func ExampleCreate() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	specs := []safetensors.Spec{
		{Name: "a", DType: safetensors.BF16, Shape: []int{4}},
		{Name: "b", DType: safetensors.F16, Shape: []int{2}},
	}
	w, err := safetensors.Create(filepath.Join(dir, "big.safetensors"), specs, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort() // removes the temporary file unless Close succeeded
	if err := w.WriteFloat32("b", []float32{1, 65519}); err != nil {
		log.Fatal(err)
	}
	if err := w.WriteFloat32("a", []float32{1, 2, 3, 1.00390625}); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "big.safetensors"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	a, _ := f.ReadFloat32("a")
	b, _ := f.ReadFloat32("b")
	fmt.Println(a, b)
	// Output: [1 2 3 1] [1 65504]
}
