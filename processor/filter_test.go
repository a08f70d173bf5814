package processor

import (
	"fmt"
	"testing"
)

// TestFilter: a key added is always seen again, and at 10 bits a key a
// key never added is seen (a false positive, which costs a store read)
// about 1.2% of the time; a filter that put every probe in a few bits, or
// hashed to a few blocks, would be far above.
func TestFilter(t *testing.T) {
	const n = 200_000
	f := newFilter(10 * n)
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
	rate := float64(fp) / m
	t.Logf("false positives: %.2f%% at %d bits a key", 100*rate, len(f.bits)*64/n)
	if rate > 0.025 {
		t.Errorf("false positives: %.2f%%, want about 1.2%%", 100*rate)
	}
}
