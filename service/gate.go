package service

import (
	"context"
	"sync"
)

// gate bounds the bytes of input a generation holds read but not yet
// applied, over all the partitions and topics it reads. Each fetcher
// takes its share before it fetches (what a full fetch may hold, decoded),
// trues it up to what the batch holds once filled, and the applying
// goroutine gives it back once the batch is applied. While the engine is
// behind, the fetchers wait and the records stay in the broker, not in
// the heap: a lagging service does not also run short of memory.
type gate struct {
	limit int64

	mu   sync.Mutex
	used int64
	// wake is closed when bytes are given back, if a taker waits on it
	// (nil while none does: the applying goroutine gives bytes back after
	// every batch, and most of the time no one waits).
	wake chan struct{}
}

func newGate(limit int64) *gate { return &gate{limit: limit} }

// acquire takes n bytes, waiting while they would pass the limit; it
// always lets one taker in when nothing is held, however large. It
// returns false when ctx ends first.
func (g *gate) acquire(ctx context.Context, n int64) bool {
	for {
		g.mu.Lock()
		if g.used == 0 || g.used+n <= g.limit {
			g.used += n
			g.mu.Unlock()
			return true
		}
		if g.wake == nil {
			g.wake = make(chan struct{})
		}
		w := g.wake
		g.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return false
		}
	}
}

// adjust changes what a taker holds by n bytes without waiting: a batch
// may hold more than was taken for it, or less.
func (g *gate) adjust(n int64) {
	if n > 0 {
		g.mu.Lock()
		g.used += n
		g.mu.Unlock()
		return
	}
	g.release(-n)
}

// release gives back n bytes.
func (g *gate) release(n int64) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.used -= n
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
	g.mu.Unlock()
}

// held returns the bytes held now.
func (g *gate) held() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}
