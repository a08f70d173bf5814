package view

import (
	"context"
	"sync"
	"sync/atomic"
)

// gate holds the readers of a topic while it is shut: a reader calls wait
// before each fetch. The zero gate is open.
type gate struct {
	mu   sync.Mutex
	shut chan struct{} // nil while open; closed when opened again
	// waiting counts the readers held now.
	waiting atomic.Int32
}

// set opens or shuts the gate.
func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case open && g.shut != nil:
		close(g.shut)
		g.shut = nil
	case !open && g.shut == nil:
		g.shut = make(chan struct{})
	}
}

// isOpen reports whether the gate is open.
func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shut == nil
}

// wait returns once the gate is open, or false when ctx ends first.
func (g *gate) wait(ctx context.Context) bool {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if shut == nil {
		return true
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-shut:
		return true
	case <-ctx.Done():
		return false
	}
}
