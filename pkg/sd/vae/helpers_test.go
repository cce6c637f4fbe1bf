package vae_test

import "loco/pkg/tensor"

// countingBackend tracks the bytes of live storage made by Alloc, and
// their peak.
type countingBackend struct {
	tensor.Backend
	size       map[tensor.Storage]int
	live, peak int
}

func newCounting(b tensor.Backend) *countingBackend {
	return &countingBackend{Backend: b, size: map[tensor.Storage]int{}}
}

func (c *countingBackend) Alloc(dt tensor.DType, n int) tensor.Storage {
	s := c.Backend.Alloc(dt, n)
	c.size[s] = n * dt.Size()
	c.live += n * dt.Size()
	c.peak = max(c.peak, c.live)
	return s
}

func (c *countingBackend) Free(s tensor.Storage) {
	if n, ok := c.size[s]; ok {
		c.live -= n
		delete(c.size, s)
	}
	c.Backend.Free(s)
}
