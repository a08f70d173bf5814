package processor

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestColdCreators checks the arena of cold creators against a map,
// through the arena's moves (in place and to a new arena, both of which
// must happen): every entry's encoding and fields, and the bytes it
// counts, after random puts, replacements and removals.
func TestColdCreators(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cc := newColdCreators()
	type want struct {
		data    []byte
		changed int64
		dirty   bool
	}
	model := map[string]want{}
	inPlace, moved := 0, 0
	for op := range 200_000 {
		id := fmt.Sprintf("c%d", rng.IntN(3000))
		switch rng.IntN(3) {
		case 0, 1:
			data := bytes.Repeat([]byte{byte(op)}, 1+rng.IntN(300))
			w := want{data, int64(op), rng.IntN(2) == 0}
			before, base := len(cc.data), unsafe.SliceData(cc.data)
			if !cc.put([]byte(id), data, coldRef{changed: w.changed, dirty: w.dirty}) {
				t.Fatalf("op %d: put refused", op)
			}
			switch {
			case len(cc.data) > before+len(data):
				t.Fatalf("op %d: the arena grew by %d bytes for %d", op, len(cc.data)-before, len(data))
			case len(cc.data) == before+len(data):
			case unsafe.SliceData(cc.data) == base:
				inPlace++
			default:
				moved++
			}
			model[id] = w
		case 2:
			i := cc.find([]byte(id))
			if _, ok := model[id]; ok != (i >= 0) {
				t.Fatalf("op %d: %s held %v, want %v", op, id, i >= 0, ok)
			}
			if i >= 0 {
				cc.remove(i)
				delete(model, id)
			}
		}
	}
	if inPlace == 0 || moved == 0 {
		t.Errorf("the arena was compacted in place %d times and moved %d times", inPlace, moved)
	}
	if cc.len() != len(model) {
		t.Fatalf("%d held, want %d", cc.len(), len(model))
	}
	var held int64
	for id, w := range model {
		i := cc.find([]byte(id))
		if i < 0 {
			t.Fatalf("%s not held", id)
		}
		r := cc.ref(i)
		if !bytes.Equal(cc.encoded(i), w.data) || r.changed != w.changed || r.dirty != w.dirty || string(cc.id(i)) != id {
			t.Fatalf("%s: held %d bytes, changed %d, dirty %v; want %d, %d, %v", id, len(cc.encoded(i)), r.changed, r.dirty, len(w.data), w.changed, w.dirty)
		}
		held += entryBytes([]byte(id), uint32(len(w.data)))
	}
	if cc.bytes() != held {
		t.Errorf("bytes() = %d, want %d", cc.bytes(), held)
	}
	if live := len(cc.data) - cc.dead; int64(live) != held-int64(cc.len())*coldEntryBytes-int64(len(cc.t.keys)-cc.t.dead) {
		t.Errorf("arena: %d live bytes for %d held", live, held)
	}
}
