package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"loco/pkg/golden"
	"loco/pkg/latentcache"
	"loco/pkg/latentcache/encode"
	"loco/pkg/manifest"
	"loco/pkg/safetensors"
	"loco/pkg/train/traintest"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/*.txtar")

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// mkdata writes DIR/train.jsonl and the cache DIR/cache for a tiny recipe:
// 3 images in "img/2_pralyco woman", 4 in "reg/1_woman", one 192×128
// bucket, latents encoded (nominally) with the VAE of MODEL.
func mkdata(dir, model, trainCaption string) error {
	f, err := safetensors.Open(model)
	if err != nil {
		return err
	}
	vae, err := encode.HashVAE(f)
	f.Close()
	if err != nil {
		return err
	}
	cache, err := latentcache.Open(filepath.Join(dir, "cache"))
	if err != nil {
		return err
	}
	cache.AddVAE(vae, latentcache.VAEInfo{File: model, DType: "f32", Version: "test"})
	lat := traintest.Latents{}
	out, err := os.Create(filepath.Join(dir, "train.jsonl"))
	if err != nil {
		return err
	}
	defer out.Close()
	w := manifest.NewWriter(out)
	for i := 0; i < 7; i++ {
		reg := i >= 3
		concept, rep, caption := "2_pralyco woman", 2, "pralyco woman"
		if trainCaption != "" {
			caption = trainCaption
		}
		root := "img"
		if reg {
			concept, rep, caption, root = "1_woman", 1, "woman", "reg"
		}
		key := fmt.Sprintf("%032x", i+1)
		lat.Add(key, 16, 24, uint64(i+1), 0)
		if err := cache.Put(lat[key], vae); err != nil {
			return err
		}
		b := [2]int{192, 128}
		k, _ := json.Marshal(key)
		r := &manifest.Record{Schema: 1, Path: fmt.Sprintf("%s/%s/%d.png", root, concept, i), Concept: concept, Repeats: rep,
			IsReg: reg, Caption: caption, Bucket: &b, Extra: map[string]json.RawMessage{"latent_key": k}}
		if err := w.Write(r); err != nil {
			return err
		}
	}
	if err := cache.Flush(); err != nil {
		return err
	}
	return cache.Close()
}

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"loco-train": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// mkmodel PATH SEED writes a tiny SD 1.x checkpoint (fp16).
		"mkmodel": func() {
			var seed uint64
			fmt.Sscan(os.Args[2], &seed)
			fail(traintest.WriteCheckpoint(os.Args[1], seed, safetensors.F16))
		},
		// mkdata DIR MODEL [CAPTION] writes records and a latent cache for
		// MODEL's VAE; CAPTION (with \n for line breaks) replaces the train
		// images' caption.
		"mkdata": func() {
			caption := ""
			if len(os.Args) > 3 {
				caption = strings.ReplaceAll(os.Args[3], `\n`, "\n")
			}
			fail(mkdata(os.Args[1], os.Args[2], caption))
		},
		// meta FILE KEY prints one metadata value of a safetensors file.
		"meta": func() {
			f, err := safetensors.Open(os.Args[1])
			fail(err)
			v, ok := f.Metadata()[os.Args[2]]
			if !ok {
				fail(fmt.Errorf("%s: no metadata key %s", os.Args[1], os.Args[2]))
			}
			fmt.Println(v)
		},
	})
}

func TestScripts(t *testing.T) {
	vocab, ok := golden.Shared("clip/bpe_simple_vocab_16e6.txt.gz")
	if !ok {
		t.Skip("../shared/clip not found: skipping the loco-train scripts")
	}
	testscript.Run(t, testscript.Params{Dir: "testdata", UpdateScripts: *update, Setup: func(env *testscript.Env) error {
		env.Setenv("VOCAB", vocab)
		env.Setenv("SOURCE_DATE_EPOCH", "1700000000")
		return nil
	}})
}
