package service

import (
	"context"
	"testing"
	"testing/synctest"
)

// TestGate: a taker waits while what it asks for would pass the limit,
// and goes on when bytes are given back; a lone taker larger than the
// limit is let in; a taker whose context ends gives up.
func TestGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(100)
		ctx := context.Background()
		if !g.acquire(ctx, 60) || !g.acquire(ctx, 40) {
			t.Fatal("takers within the limit waited")
		}
		got := make(chan bool, 1)
		go func() { got <- g.acquire(ctx, 10) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatalf("a taker passed the limit: %d held", g.held())
		default:
		}
		g.adjust(-30) // a batch smaller than its share: 70 held
		synctest.Wait()
		if !<-got {
			t.Fatal("the waiting taker gave up")
		}
		if h := g.held(); h != 80 {
			t.Fatalf("held %d, want 80", h)
		}
		g.adjust(25) // a batch larger than its share does not wait
		if h := g.held(); h != 105 {
			t.Fatalf("held %d, want 105", h)
		}

		cctx, cancel := context.WithCancel(ctx)
		go func() { got <- g.acquire(cctx, 1) }()
		synctest.Wait()
		cancel()
		if <-got {
			t.Fatal("a taker whose context ended was let in")
		}
		if h := g.held(); h != 105 {
			t.Fatalf("held %d after a taker gave up, want 105", h)
		}

		g.release(105)
		if !g.acquire(ctx, 1000) {
			t.Fatal("a lone taker larger than the limit waited")
		}
		go func() { got <- g.acquire(ctx, 1) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a taker passed the limit behind a large one")
		default:
		}
		g.release(1000)
		if !<-got {
			t.Fatal("the waiting taker gave up")
		}
	})
}
