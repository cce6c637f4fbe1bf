package tokenizer

import "container/heap"

// heapMinSymbols is the word length from which bpe switches to the heap
// version; shorter words (nearly all) take the plain loop.
const heapMinSymbols = 64

// mergesOrdered reports whether every merge that uses a symbol ranks
// after every merge that produces it, as in a vocabulary written by BPE
// training. Then a merge never creates a pair that ranks before itself,
// and bpeHeap gives exactly the result of the plain loop.
func mergesOrdered(merges [][2]string) bool {
	firstUse := make(map[string]int, len(merges))
	for r, m := range merges {
		for _, s := range m {
			if _, ok := firstUse[s]; !ok {
				firstUse[s] = r
			}
		}
	}
	for r, m := range merges {
		if u, ok := firstUse[m[0]+m[1]]; ok && u <= r {
			return false
		}
	}
	return true
}

// pairEntry is a candidate merge of the symbols at pos and the next one.
type pairEntry struct {
	rank, pos, a, b int32
}

type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// bpeHeap is bpe in O(n log n): pairs are merged in order of (rank,
// position), which for ordered merges is the plain loop's order (all
// occurrences of the lowest-ranked pair, left to right, then the next).
func (t *Tokenizer) bpeHeap(word []int32) []int32 {
	n := len(word)
	sym := append([]int32(nil), word...)
	next := make([]int32, n)
	prev := make([]int32, n)
	for i := range n {
		next[i], prev[i] = int32(i+1), int32(i-1)
	}
	next[n-1] = -1
	h := make(pairHeap, 0, n)
	push := func(pos int32) {
		k := next[pos]
		if k < 0 {
			return
		}
		if m, ok := t.merges[uint64(sym[pos])<<32|uint64(uint32(sym[k]))]; ok {
			heap.Push(&h, pairEntry{rank: m.rank, pos: pos, a: sym[pos], b: sym[k]})
		}
	}
	for i := range n - 1 {
		if m, ok := t.merges[uint64(sym[i])<<32|uint64(uint32(sym[i+1]))]; ok {
			h = append(h, pairEntry{rank: m.rank, pos: int32(i), a: sym[i], b: sym[i+1]})
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		e := heap.Pop(&h).(pairEntry)
		i := e.pos
		if sym[i] != e.a {
			continue // stale: the symbol at i has changed or gone
		}
		j := next[i]
		if j < 0 || sym[j] != e.b {
			continue
		}
		sym[i] = t.merges[uint64(e.a)<<32|uint64(uint32(e.b))].result
		sym[j] = -1
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if p := prev[i]; p >= 0 {
			push(p)
		}
		push(i)
	}
	out := word[:0]
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, sym[i])
	}
	return out
}
