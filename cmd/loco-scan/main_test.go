package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"loco/pkg/dataset/datasettest"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/*.txtar")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"loco-scan": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// demodata DIR writes the demo dataset (scripts/demodata).
		"demodata": func() {
			if err := datasettest.Write(os.Args[1], datasettest.Demo); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		},
		// mkimage PATH W H [ORIENTATION] writes a test picture, encoded by
		// the extension of PATH.
		"mkimage": func() {
			var w, h, o int
			fmt.Sscan(os.Args[2], &w)
			fmt.Sscan(os.Args[3], &h)
			if len(os.Args) > 4 {
				fmt.Sscan(os.Args[4], &o)
			}
			b, err := datasettest.Encode(filepath.Ext(os.Args[1]), datasettest.Pattern(w, h, 1), o)
			if err == nil {
				err = os.WriteFile(os.Args[1], b, 0o644)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata", UpdateScripts: *update})
}
