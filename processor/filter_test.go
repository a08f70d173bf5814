package processor

import (
	"fmt"
	"math/bits"
	"testing"
)

// TestFilter: a key added is always seen again, and at 10 bits a key a
// key never added is seen (a false positive, which costs a store read)
// about 1.2% of the time; a filter that put every probe in a few bits, or
// hashed to a few blocks, would be far above.
func TestFilter(t *testing.T) {
	const n = 200_000
	f := newFilter(10 * n)
	// 10n bits are 3,906.25 blocks: 3,907 of them, not the 4,096 of the
	// power of two above, nor the 2,048 below.
	if got := len(f.bits) * 64; got < 10*n || got >= 10*n+64*filterBlockWords {
		t.Fatalf("a filter of %d bits has %d", 10*n, got)
	}
	for i := range n {
		f.add(fmt.Appendf(nil, "in-%d", i))
	}
	for i := range n {
		if !f.seen(fmt.Appendf(nil, "in-%d", i)) {
			t.Fatalf("in-%d added, not seen", i)
		}
	}
	// seen adds what it checks: check few, so that they fill it little.
	const m = n / 20
	fp := 0
	for i := range m {
		if f.seen(fmt.Appendf(nil, "out-%d", i)) {
			fp++
		}
	}
	// Every block takes keys: one the hash never picked (the last, had
	// it masked its low bits) would put its keys' probes in the others.
	for b := range len(f.bits) / filterBlockWords {
		set := 0
		for _, w := range f.bits[b*filterBlockWords:][:filterBlockWords] {
			set += bits.OnesCount64(w)
		}
		if set == 0 {
			t.Fatalf("block %d of %d holds no key", b, len(f.bits)/filterBlockWords)
		}
	}
	rate := float64(fp) / m
	t.Logf("false positives: %.2f%% at %d bits a key", 100*rate, len(f.bits)*64/n)
	if rate > 0.025 {
		t.Errorf("false positives: %.2f%%, want about 1.2%%", 100*rate)
	}
}
