package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/tensor"
)

// TestGroupNormPaths runs GroupNorm and its backward through each kernel
// path (one block per group; split into chunks sized as in production;
// split into chunks of 37 and warps of 7 elements, so that small shapes
// cross chunk, piece and channel boundaries) and compares them with the
// CPU backend: y, the saved mean and rstd, and dx, dgamma, dbeta added
// into random prefills, with the backward also run for dx only and for
// the parameters only. The backward halves get the CPU's saved mean and
// rstd, so they are compared on the same input.
func TestGroupNormPaths(t *testing.T) {
	gpu := device(t)
	shapes := []tensor.NormParams{
		{N: 2, C: 6, HW: 5, Groups: 3, Eps: 1e-5},
		{N: 1, C: 4, HW: 1, Groups: 4, Eps: 1e-5},    // one element per group: y is beta, dx gets 0
		{N: 3, C: 8, HW: 7, Groups: 1, Eps: 1e-6},    // one group
		{N: 2, C: 300, HW: 1, Groups: 3, Eps: 1e-5},  // hw 1: a channel per element
		{N: 1, C: 6, HW: 4133, Groups: 3, Eps: 1e-5}, // chunks end inside channels
		{N: 3, C: 64, HW: 1024, Groups: 32, Eps: 1e-5},
	}
	for _, path := range []string{"simple", "split", "split-tiny"} {
		prev, err := cuda.SetGroupNormPath(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(path, func(t *testing.T) {
			for _, dt := range dtypes {
				t.Run(dt.String(), func(t *testing.T) {
					p := &pair{t: t, gpu: gpu, cpu: cpu.New(), dt: dt, rng: rand.New(rand.NewPCG(uint64(dt), 31))}
					for _, np := range shapes {
						for _, silu := range []bool{false, true} {
							for _, affine := range []bool{false, true} {
								np.SiLU = silu
								checkGroupNormPair(p, np, affine)
							}
						}
					}
				})
			}
		})
		if _, err := cuda.SetGroupNormPath(prev); err != nil {
			t.Fatal(err)
		}
	}
}

func checkGroupNormPair(p *pair, np tensor.NormParams, affine bool) {
	p.t.Helper()
	tol := tolFor(p.dt)
	name := fmt.Sprintf("GroupNorm N%d C%d HW%d G%d silu=%v affine=%v", np.N, np.C, np.HW, np.Groups, np.SiLU, affine)
	n, ng := np.N*np.C*np.HW, np.N*np.Groups
	xv := randn(p.rng, n)
	for i := range xv {
		xv[i] = 0.7 + 1.3*xv[i] // a mean away from 0, as activations have
	}
	xg, xc := p.up(xv)
	var gg, gc, bg, bc tensor.Storage
	if affine {
		gv := randn(p.rng, np.C)
		for i := range gv {
			gv[i] = 1 + 0.5*gv[i]
		}
		gg, gc = p.up(gv)
		bg, bc = p.up(randn(p.rng, np.C))
	}
	yg, yc := p.outs(n, false)
	mg, mc := p.outs(ng, true)
	rg, rc := p.outs(ng, true)
	p.gpu.GroupNorm(yg, mg, rg, xg, gg, bg, np)
	p.cpu.GroupNorm(yc, mc, rc, xc, gc, bc, np)
	p.check(name+" y", yg, yc, tol)
	p.check(name+" mean", mg, mc, 1e-5)
	p.check(name+" rstd", rg, rc, 1e-5)

	// Backward from the CPU's saved statistics.
	sv := make([]float32, ng)
	p.cpu.Download(sv, mc)
	p.gpu.Upload(mg, sv)
	p.cpu.Download(sv, rc)
	p.gpu.Upload(rg, sv)
	dyg, dyc := p.up(randn(p.rng, n))
	for _, which := range []string{"all", "dx", "params"} {
		if which == "params" && !affine {
			continue
		}
		var dxg, dxc, dgg, dgc, dbg, dbc tensor.Storage
		if which != "params" {
			dxg, dxc = p.up(randn(p.rng, n))
		}
		if which != "dx" && affine {
			dgg, dgc = p.up(randn(p.rng, np.C))
			dbg, dbc = p.up(randn(p.rng, np.C))
		}
		p.gpu.GroupNormBackward(dxg, dgg, dbg, dyg, xg, mg, rg, gg, bg, np)
		p.cpu.GroupNormBackward(dxc, dgc, dbc, dyc, xc, mc, rc, gc, bc, np)
		if dxg != nil {
			p.check(name+" backward("+which+") dx", dxg, dxc, 2*tol)
		}
		if dgg != nil {
			p.check(name+" backward("+which+") dgamma", dgg, dgc, 2*tol)
			p.check(name+" backward("+which+") dbeta", dbg, dbc, 2*tol)
		}
		for _, s := range []tensor.Storage{dxg, dgg, dbg} {
			p.gpu.Free(s)
		}
	}
	for _, s := range []tensor.Storage{xg, gg, bg, yg, mg, rg, dyg} {
		p.gpu.Free(s)
	}
}

// TestSetGroupNormPath checks the path names round-trip and an unknown
// one is refused without changing the setting.
func TestSetGroupNormPath(t *testing.T) {
	prev, err := cuda.SetGroupNormPath("split-tiny")
	if err != nil {
		t.Fatal(err)
	}
	defer cuda.SetGroupNormPath(prev)
	if _, err := cuda.SetGroupNormPath("fast"); err == nil {
		t.Fatal(`SetGroupNormPath("fast") gave no error`)
	}
	if got, err := cuda.SetGroupNormPath("simple"); err != nil || got != "split-tiny" {
		t.Fatalf(`after an unknown path the setting is %q (%v), want "split-tiny" kept`, got, err)
	}
}
