package processor

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestVideoLasts checks videoLasts against a map, across the switch from
// the sorted slice to a map, and its encoding round trip.
func TestVideoLasts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ids := range []int{5, maxListedVideos, 3 * maxListedVideos} {
		var v videoLasts
		model := map[string]int64{}
		for i := range 20 * ids {
			switch rng.IntN(20) {
			case 0: // prune
				lo := int64(i/ids) - 1
				v.prune(lo)
				maps.DeleteFunc(model, func(_ string, last int64) bool { return last <= lo })
			default:
				id, last := fmt.Sprintf("v%d", rng.IntN(ids)), int64(i/ids)+int64(rng.IntN(3))
				v.set(id, last)
				if prev, ok := model[id]; !ok || last > prev {
					model[id] = last
				}
			}
			if v.len() != len(model) {
				t.Fatalf("%d ids, op %d: len %d, want %d", ids, i, v.len(), len(model))
			}
		}
		lo, hi := int64(3), int64(12)
		var want int64
		for _, last := range model {
			if last > lo && last <= hi {
				want++
			}
		}
		if got := v.count(lo, hi); got != want {
			t.Errorf("%d ids: count(%d, %d) = %d, want %d", ids, lo, hi, got, want)
		}
		const base = 7
		b := v.appendTo(nil, base)
		r := &creatorReader{b: b}
		back, ok := readVideoLasts(r, base, nil)
		if !ok || r.bad || len(r.b) != 0 {
			t.Fatalf("%d ids: read back: ok %v, bad %v, %d bytes left", ids, ok, r.bad, len(r.b))
		}
		got := map[string]int64{}
		for _, x := range back.s {
			got[x.id] = x.last
		}
		maps.Copy(got, back.m)
		if !maps.Equal(got, model) {
			t.Errorf("%d ids: read back %d videos, want %d", ids, len(got), len(model))
		}
		if again := back.appendTo(nil, base); !slices.Equal(again, b) {
			t.Errorf("%d ids: encoded again differs", ids)
		}
	}
	// Out of order, or twice: not a valid encoding.
	for _, ids := range [][]string{{"b", "a"}, {"a", "a"}} {
		var b []byte
		b = append(b, 2)
		for _, id := range ids {
			b = appendStr(b, id)
			b = append(b, 0)
		}
		if _, ok := readVideoLasts(&creatorReader{b: b}, 0, nil); ok {
			t.Errorf("%q read as valid", ids)
		}
	}
}
