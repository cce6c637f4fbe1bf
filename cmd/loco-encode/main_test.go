package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"loco/pkg/dataset/datasettest"
	"loco/pkg/latentcache/encode/encodetest"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/*.txtar")

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(reexecEnv) == "1" {
		// Run as loco-encode itself (TestKillAndRerun starts and kills it).
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"loco-encode": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// mkimage PATH W H [SEED] writes a test picture, encoded by the
		// extension of PATH.
		"mkimage": func() {
			var w, h int
			seed := uint64(1)
			fmt.Sscan(os.Args[2], &w)
			fmt.Sscan(os.Args[3], &h)
			if len(os.Args) > 4 {
				fmt.Sscan(os.Args[4], &seed)
			}
			b, err := datasettest.Encode(filepath.Ext(os.Args[1]), datasettest.Pattern(w, h, seed), 0)
			fail(err)
			fail(os.WriteFile(os.Args[1], b, 0o644))
		},
		// mkvae PATH SEED [drop KEY | reshape KEY] writes a tiny VAE checkpoint.
		"mkvae": func() {
			seed, _ := strconv.ParseUint(os.Args[2], 10, 64)
			var drop, reshape string
			if len(os.Args) > 4 {
				if os.Args[3] == "drop" {
					drop = os.Args[4]
				} else {
					reshape = os.Args[4]
				}
			}
			fail(encodetest.WriteVAE(os.Args[1], encodetest.TinyVAE(), seed, encodetest.Faults{Drop: drop, Reshape: reshape}))
		},
		// damage DIR flip|truncate: flips a byte in the middle of the first
		// shard of the cache DIR, or cuts its last 10 bytes.
		"damage": func() {
			shards, _ := filepath.Glob(filepath.Join(os.Args[1], "shard-*.zst"))
			if len(shards) == 0 {
				fail(fmt.Errorf("no shard in %s", os.Args[1]))
			}
			b, err := os.ReadFile(shards[0])
			fail(err)
			if os.Args[2] == "flip" {
				b[len(b)/2] ^= 0x40
			} else {
				b = b[:len(b)-10]
			}
			fail(os.WriteFile(shards[0], b, 0o644))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata", UpdateScripts: *update})
}
