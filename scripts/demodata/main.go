// Command demodata writes the synthetic Kohya-style dataset used by
// `make demo` and the tests: DIR/img/30_pralyco woman and DIR/reg/1_woman.
//
//	go run ./scripts/demodata demo
//	go run ./scripts/demodata -bench 2000 /tmp/bench   # benchmark set
package main

import (
	"flag"
	"fmt"
	"os"

	"loco/pkg/dataset/datasettest"
)

func main() {
	bench := flag.Int("bench", 0, "write a benchmark set of this many JPEG/PNG images instead of the demo")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: demodata [-bench N] DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)
	var err error
	if *bench > 0 {
		var st datasettest.BenchStats
		st, err = datasettest.WriteBench(dir, *bench)
		if err == nil {
			fmt.Fprintf(os.Stderr, "demodata: wrote %d images, %.1f MB, under %s\n", st.Images, float64(st.Bytes)/1e6, dir)
		}
	} else {
		err = datasettest.Write(dir, datasettest.Demo)
		if err == nil {
			fmt.Fprintf(os.Stderr, "demodata: wrote the demo dataset under %s\n", dir)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demodata: error: %v\n", err)
		os.Exit(1)
	}
}
