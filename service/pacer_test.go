package service

import (
	"context"
	"testing"
	"testing/synctest"
)

// TestPacer: a partition more than the skew ahead of the slowest one being
// read waits until that one moves or catches up; a partition that has not
// read yet holds the others back; the slowest never waits; a waiter whose
// context ends gives up; all wait while an internal topic is too far
// behind, and while the stages hold too many likes and do not wait on the
// input to weigh them; with no limits nobody waits.
func TestPacer(t *testing.T) {
	const minute = 60_000
	ctx := context.Background()
	// waits starts p.wait(id) and reports, once every goroutine is
	// blocked, whether it is still waiting; the channel then gives its
	// result.
	waits := func(p *pacer, ctx context.Context, id int32) (bool, <-chan bool) {
		got := make(chan bool, 1)
		go func() { got <- p.wait(ctx, id) }()
		synctest.Wait()
		select {
		case ok := <-got:
			got <- ok
			return false, got
		default:
			return true, got
		}
	}
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(5*minute, 0, 0, []int32{0, 1, 2})
		p.read(0, 100, 10*minute)
		if waiting, _ := waits(p, ctx, 0); !waiting {
			t.Fatal("partition 0 read on while 1 and 2 had read nothing")
		}
		p.read(1, 100, 2*minute)
		p.read(2, 100, 30*minute)
		if waiting, _ := waits(p, ctx, 1); waiting {
			t.Fatal("the slowest partition waited")
		}
		waiting, got := waits(p, ctx, 0)
		if !waiting {
			t.Fatal("partition 0, 8 minutes ahead of 1, read on")
		}
		p.read(1, 100, 6*minute) // 0 is now 4 minutes ahead
		synctest.Wait()
		if !<-got {
			t.Fatal("partition 0 gave up")
		}
		waiting, got = waits(p, ctx, 2)
		if !waiting {
			t.Fatal("partition 2, 24 minutes ahead, read on")
		}
		p.read(0, 0, 0) // caught up: no longer in the way
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("partition 2 read on while 1 was 24 minutes behind")
		default:
		}
		p.read(1, 0, 0) // 1 caught up too: nobody is behind 2
		synctest.Wait()
		if !<-got {
			t.Fatal("partition 2 gave up")
		}

		p.read(1, 100, 7*minute) // 1 has more again, far behind 2
		cctx, cancel := context.WithCancel(ctx)
		waiting, got = waits(p, cctx, 2)
		if !waiting {
			t.Fatal("partition 2 read on while 1 was 23 minutes behind")
		}
		cancel()
		synctest.Wait()
		if <-got {
			t.Fatal("a waiter whose context ended did not give up")
		}

		// The internal topics behind: every partition waits, the slowest
		// too, until they are read down to the limit.
		q := newPacer(0, 100, 0, []int32{0, 1})
		q.read(0, 100, minute)
		q.behind(500)
		waiting, got = waits(q, ctx, 1)
		if !waiting {
			t.Fatal("a partition read on while an internal topic was 500 records behind, 100 allowed")
		}
		q.behind(200)
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a partition read on while an internal topic was 200 records behind, 100 allowed")
		default:
		}
		q.behind(100)
		synctest.Wait()
		if !<-got {
			t.Fatal("the waiter gave up")
		}

		// The stages hold too much and can free it without input: every
		// partition waits, the slowest too, until they wait on the input
		// or hold less.
		h := newPacer(0, 0, 1000, []int32{0, 1})
		h.read(0, 100, 9*minute)
		h.read(1, 100, 2*minute)
		h.holding(5000, false)
		waiting, slow := waits(h, ctx, 1)
		if !waiting {
			t.Fatal("the slowest partition read on while the stages held 5000 likes, 1000 allowed, and could free them without it")
		}
		waiting, got = waits(h, ctx, 0)
		if !waiting {
			t.Fatal("a partition read on while the stages held 5000 likes, 1000 allowed")
		}
		h.holding(5000, true) // the stages wait on the sources' progress
		synctest.Wait()
		if !<-slow || !<-got {
			t.Fatal("a waiter gave up")
		}
		h.holding(5000, false)
		if waiting, got = waits(h, ctx, 0); !waiting {
			t.Fatal("a partition read on while the stages held 5000 likes and could free them")
		}
		h.holding(900, false)
		synctest.Wait()
		if !<-got {
			t.Fatal("the waiter gave up")
		}

		off := newPacer(0, 0, 0, []int32{0, 1})
		off.read(0, 100, 60*minute)
		if waiting, _ := waits(off, ctx, 0); waiting {
			t.Fatal("a pacer with no skew held a partition back")
		}
		var none *pacer
		if waiting, _ := waits(none, ctx, 0); waiting {
			t.Fatal("a nil pacer held a partition back")
		}
	})
}
