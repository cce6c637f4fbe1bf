package lycoris

import (
	"fmt"
	"math/rand/v2"

	"loco/pkg/tensor"
)

// Dropout holds the training-only dropouts of spec/locon.md §5.4, with the
// semantics of kohya's networks.lora (loco's LoCon forward is the
// two-branch form y = base(x) + s·up(down(x)), which is what those
// dropouts act on; LyCORIS's bypass mode does the same for rank and module
// dropout):
//   - Dropout (network_dropout, network_args "dropout"): each feature of
//     down(x) (after mid, with Tucker) is zeroed with probability p and the
//     kept ones scaled by 1/(1−p);
//   - Rank (rank_dropout): a mask over [batch, rank] — each rank channel of
//     each sample zeroed with probability p — and the branch scaled by
//     1/(1−p);
//   - Module (module_dropout): the whole branch of a module is skipped for
//     a step with probability p.
//
// LoHa modules support only Module. All three are probabilities in [0, 1).
type Dropout struct {
	Dropout, Rank, Module float64
}

// Any reports whether any dropout is on.
func (d Dropout) Any() bool { return d.Dropout > 0 || d.Rank > 0 || d.Module > 0 }

// SetDropout sets the dropouts applied while the network is in training
// mode (see Train). It is an error for a probability outside [0, 1), and
// for Dropout or Rank on a LoHa network.
func (n *Network) SetDropout(d Dropout) error {
	for _, x := range []struct {
		name string
		p    float64
	}{{"dropout", d.Dropout}, {"rank_dropout", d.Rank}, {"module_dropout", d.Module}} {
		if !(x.p >= 0 && x.p < 1) {
			return fmt.Errorf("lycoris: %s %g must be in [0, 1)", x.name, x.p)
		}
	}
	if d.Dropout > 0 || d.Rank > 0 {
		for _, m := range n.Modules {
			if m.algo == AlgoLoHa {
				return fmt.Errorf("lycoris: dropout and rank_dropout are not defined for LoHa modules (%s); module_dropout is", m.Name)
			}
		}
	}
	n.drop = d
	return nil
}

// Train puts the network in training mode for one forward (and its
// recomputation by gradient checkpointing): the dropout masks of module i
// derive from (seed, i) only, so a block re-run in the backward pass draws
// the same masks as its forward. Eval turns dropout off again (sampling,
// merging); a new network is in evaluation mode.
func (n *Network) Train(seed uint64) { n.training, n.dropSeed = true, seed }

// Eval turns the dropouts off.
func (n *Network) Eval() { n.training = false }

// dropRNG is the module's generator for the current training forward, or
// nil when no dropout applies.
func (m *Module) dropRNG() *rand.Rand {
	n := m.net
	if !n.training || !n.drop.Any() {
		return nil
	}
	return rand.New(rand.NewPCG(n.dropSeed, uint64(m.idx)*0x9e3779b97f4a7c15+1))
}

// skipped draws the module dropout.
func (m *Module) skipped(r *rand.Rand) bool {
	return m.net.drop.Module > 0 && r.Float64() < m.net.drop.Module
}

// dropFeatures applies Dropout and Rank to the rank features h (rank on
// axis 1 for convolutions, the last axis for Linear; batch on axis 0) as
// one mask that also carries the 1/(1−p) scales.
func (m *Module) dropFeatures(h *tensor.Tensor, r *rand.Rand) *tensor.Tensor {
	d := m.net.drop
	if d.Dropout == 0 && d.Rank == 0 {
		return h
	}
	s := h.Shape()
	n := s.Numel()
	rank, inner := s[len(s)-1], 1
	if m.Conv {
		rank, inner = s[1], s.Numel()/(s[0]*s[1])
	}
	mask := make([]float32, n)
	keep := float32(1)
	if d.Dropout > 0 {
		keep = float32(1 / (1 - d.Dropout))
		for i := range mask {
			if r.Float64() >= d.Dropout {
				mask[i] = keep
			}
		}
	} else {
		for i := range mask {
			mask[i] = 1
		}
	}
	if d.Rank > 0 {
		batch := s[0]
		rs := float32(1 / (1 - d.Rank))
		rm := make([]float32, batch*rank)
		for i := range rm {
			if r.Float64() > d.Rank {
				rm[i] = rs
			}
		}
		per := n / batch // values per sample
		for i := range mask {
			b := i / per
			var j int
			if m.Conv {
				j = (i / inner) % rank
			} else {
				j = i % rank
			}
			mask[i] *= rm[b*rank+j]
		}
	}
	return tensor.Mul(h, m.net.e.FromFloat32Of(h.DType(), mask, s...))
}
