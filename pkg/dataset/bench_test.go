package dataset

import (
	"path/filepath"
	"testing"

	"loco/pkg/bucket"
	"loco/pkg/dataset/datasettest"
)

// BenchmarkScanBucket scans and buckets a generated set of 200 camera-size
// images (see BENCHMARKS.md for the 2,000-image run of the binaries).
func BenchmarkScanBucket(b *testing.B) {
	dir := b.TempDir()
	st, err := datasettest.WriteBench(dir, 200)
	if err != nil {
		b.Fatal(err)
	}
	bk, _, err := bucket.New(bucket.Params{Resolution: [2]int{512, 512}, MinReso: 256, MaxReso: 1024, Steps: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Bytes)
	for b.Loop() {
		res, err := Scan(Options{TrainRoots: []string{filepath.Join(dir, "img")}})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res.Records {
			if _, err := bk.Assign(r.OrientedWidth, r.OrientedHeight); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(st.Images)*float64(b.N)/b.Elapsed().Seconds(), "images/s")
}
