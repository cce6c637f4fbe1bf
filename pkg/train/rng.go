package train

import (
	"hash/fnv"
	"math/rand/v2"
)

// Stream returns the random generator of one purpose at one position of a
// run: every draw of training derives from (seed, purpose, a, b) through a
// counter-based construction (a PCG seeded by a hash of the tuple), so a
// run is reproducible, can resume at any update without saving generator
// state, and does not depend on the number of threads (spec/train.md §15).
// Bit-exact reproduction of kohya's random streams is not a goal.
func Stream(seed uint64, purpose string, a, b int) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(purpose))
	p := h.Sum64()
	return rand.New(rand.NewPCG(mix(seed^p), mix(uint64(a)<<32^uint64(uint32(b))^p*0x9e3779b97f4a7c15)))
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// normals fills v with N(0, 1) draws.
func normals(r *rand.Rand, v []float32) {
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
}
