package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"loco/pkg/golden"
	"loco/pkg/safetensors"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"loco-merge": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// mkfiles DIR writes base.safetensors (the golden tiny UNet and text
		// encoder in one checkpoint), unet.safetensors and te.safetensors
		// (the golden LoCons) and sdxl.safetensors (a network with an SDXL
		// module name) into DIR. LOCO_GOLDEN names the golden folder.
		"mkfiles": func() {
			if err := mkfiles(os.Args[1], os.Getenv("LOCO_GOLDEN")); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		},
	})
}

func TestScripts(t *testing.T) {
	root, ok := golden.Root()
	if !ok {
		t.Skip("no ../shared/golden (set LOCO_GOLDEN)")
	}
	root, _ = filepath.Abs(root)
	testscript.Run(t, testscript.Params{Dir: "testdata", Setup: func(e *testscript.Env) error {
		e.Setenv("LOCO_GOLDEN", root)
		return nil
	}})
}

func mkfiles(dir, root string) error {
	read := func(path string) ([]safetensors.Tensor, map[string]string, error) {
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		var out []safetensors.Tensor
		for _, k := range f.Names() {
			info, _ := f.Info(k)
			b, err := f.ReadRaw(k)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, safetensors.Tensor{Name: k, DType: info.DType, Shape: info.Shape, Data: b})
		}
		return out, f.Metadata(), nil
	}
	u, _, err := read(filepath.Join(root, "locon_unet_tiny", "model.safetensors"))
	if err != nil {
		return err
	}
	te, _, err := read(filepath.Join(root, "locon_te_tiny", "model.safetensors"))
	if err != nil {
		return err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "base.safetensors"), append(u, te...), nil); err != nil {
		return err
	}
	for name, src := range map[string]string{"unet": "locon_unet_tiny", "te": "locon_te_tiny"} {
		ts, md, err := read(filepath.Join(root, src, "locon.safetensors"))
		if err != nil {
			return err
		}
		if err := safetensors.WriteFile(filepath.Join(dir, name+".safetensors"), ts, md); err != nil {
			return err
		}
		if name == "te" {
			for i := range ts {
				ts[i].Name = "lora_te1_" + ts[i].Name[len("lora_te_"):]
			}
			if err := safetensors.WriteFile(filepath.Join(dir, "sdxl.safetensors"), ts, md); err != nil {
				return err
			}
		}
	}
	return nil
}
