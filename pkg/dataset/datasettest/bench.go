package datasettest

import (
	"fmt"
	"os"
	"path/filepath"
)

// BenchStats summarises a generated benchmark set.
type BenchStats struct {
	Images int
	Bytes  int64
}

// benchBases are the distinct pictures of a benchmark set: camera-like
// sizes, mostly JPEG.
var benchBases = []struct {
	w, h int
	ext  string
}{
	{1024, 768, ".jpg"}, {768, 1024, ".jpg"}, {1536, 1024, ".jpg"}, {1024, 1536, ".jpg"},
	{1200, 1200, ".jpg"}, {1920, 1080, ".jpg"}, {1080, 1920, ".jpg"}, {800, 1200, ".png"},
	{1024, 1024, ".png"}, {2048, 1536, ".jpg"},
}

// WriteBench writes n images under dir/img/10_bench subject: the few
// distinct pictures of benchBases, each file made unique (and so hashed as
// a new file) by a JPEG comment segment or a PNG tEXt chunk holding its
// index. Writing is quick; scanning costs as for n distinct photos of the
// same sizes.
func WriteBench(dir string, n int) (BenchStats, error) {
	var st BenchStats
	sub := filepath.Join(dir, "img", "10_bench subject")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return st, err
	}
	bases := make([][]byte, len(benchBases))
	for i, b := range benchBases {
		enc, err := Encode(b.ext, Pattern(b.w, b.h, uint64(100+i)), 0)
		if err != nil {
			return st, err
		}
		bases[i] = enc
	}
	for i := range n {
		k := i % len(bases)
		tag := fmt.Appendf(nil, "loco bench image %06d", i)
		var b []byte
		if benchBases[k].ext == ".png" {
			b = insertPNGText(bases[k], tag)
		} else {
			b = InsertJPEGSegment(bases[k], 0xFE, tag)
		}
		name := filepath.Join(sub, fmt.Sprintf("%06d%s", i, benchBases[k].ext))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return st, err
		}
		st.Images++
		st.Bytes += int64(len(b))
	}
	return st, nil
}
