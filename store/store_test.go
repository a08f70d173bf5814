package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/viralityhq/virality/scoring"
)

func openMem(t *testing.T) *DB {
	t.Helper()
	o := DefaultOptions()
	o.FS = vfs.NewMem()
	db, err := Open("state", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func commit(t *testing.T, p *Partition, fn func(w *Writer) error) {
	t.Helper()
	w := p.NewWriter()
	if err := fn(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	db := openMem(t)
	p := db.Partition(3)
	meta := Meta{Offset: 42, MaxTS: 1_793_491_200_000, NextTick: 1_793_491_210_000, Fingerprint: "f",
		Sinks: []SinkPos{{"scores", 10}, {"trending", 0}}, Merger: []byte(`{"done":1}`)}
	pair := Pair{Liked: true, EverLiked: true, LastUnlike: 5, Like: Like{TS: 9, Weight: 1024, Region: "US", EventID: "e1"},
		Later: []Like{{TS: 11, Weight: 3, Damp: scoring.DampedAccountRate | scoring.DampedLockstep, EventID: "e2"}}}
	cand := Candidate{Video: "v1", Score: 2.5, LastLike: 77, Region: "BR"}
	commit(t, p, func(w *Writer) error {
		return errorsJoin(w.SetMeta(&meta), w.SetPairEncoded(PairKey(nil, "v1", "u1"), pair.Append(nil)), w.SetCandidate(&cand),
			w.SetPending("v1", true), w.SetPending("v2", true), w.SetAccount(3, "u1", []AccountBucket{{-3, 1, 7, 0}, {100, 7, 1 << 31, 299}, {102, 300, 0, 1}}))
	})
	if got, ok, err := p.Meta(); err != nil || !ok || !reflect.DeepEqual(got, meta) {
		t.Errorf("meta %+v %v %v", got, ok, err)
	}
	if got, ok, err := p.Pair("v1", "u1"); err != nil || !ok || !reflect.DeepEqual(got, pair) {
		t.Errorf("pair %+v %v %v", got, ok, err)
	}
	if _, ok, _ := p.Pair("v1", "u2"); ok {
		t.Error("a pair never written exists")
	}
	var cands []Candidate
	_ = p.ScanCandidates(func(c Candidate) error { cands = append(cands, c); return nil })
	if !reflect.DeepEqual(cands, []Candidate{cand}) {
		t.Errorf("candidates %+v", cands)
	}
	commit(t, p, func(w *Writer) error { return w.SetPending("v1", false) })
	var pending []string
	_ = p.ScanPending(func(v string) error { pending = append(pending, v); return nil })
	if !reflect.DeepEqual(pending, []string{"v2"}) {
		t.Errorf("pending %v", pending)
	}
	if bs, err := p.Account("u1", []int64{3}, 3, 3, nil); err != nil || !reflect.DeepEqual(bs, []AccountBucket{{-3, 1, 7, 0}, {100, 7, 1 << 31, 299}, {102, 300, 0, 1}}) {
		t.Errorf("account %v %v", bs, err)
	}
	commit(t, p, func(w *Writer) error { return w.SetAccount(3, "u1", nil) })
	if bs, err := p.Account("u1", []int64{3}, 3, 3, nil); err != nil || len(bs) != 0 {
		t.Errorf("account %v %v after deleting it", bs, err)
	}
	// Other partitions do not see it.
	if _, ok, _ := db.Partition(4).Pair("v1", "u1"); ok {
		t.Error("partition 4 sees partition 3's pair")
	}
}

// TestVideoRecordRoundTrip: a video's record reads back as written, its
// times and decay epochs near its clock or not (before it, after it, zero,
// negative); and the same video decades later takes no more bytes
// than its clock's own need, its other times being written from it.
func TestVideoRecordRoundTrip(t *testing.T) {
	const days12 = 12 * 86_400_000 // the longest decay epoch
	typical := func(clock int64) *Video {
		v := NewVideo("v")
		v.Clock, v.FirstLike, v.LastEmitTS, v.Likes, v.Unique, v.Seq = clock, clock-7*3_600_000, clock-1_000, 12, 11, 13
		v.Regions = []RegionCount{{Region: "US", Likes: 12}}
		v.LastScore = 0.25
		for h, hl := range scoring.HalfLifeMS {
			v.Decay[h] = []scoring.DecaySum{{Epoch: scoring.DecayEpoch(clock-hl*12, hl), Sum: 1 << 33}, {Epoch: scoring.DecayEpoch(clock, hl), Sum: 5 << 20}}
		}
		for i := range 12 {
			v.Entries = append(v.Entries, Entry{TS: v.FirstLike + int64(i)*600_000, Weight: 1024, Damp: scoring.Damping(i % 2)})
		}
		return v
	}
	const clock = 1728 * days12 // 2024-09-15
	edges := []func(v *Video){
		func(v *Video) {},
		func(v *Video) { v.Clock = 0 },
		func(v *Video) { v.FirstLike, v.LastEmitTS = clock+5_000, 0 },
		func(v *Video) { v.Clock, v.FirstLike, v.LastEmitTS = -clock, clock, math.MinInt64/4 },
		func(v *Video) {
			v.Decay[0] = []scoring.DecaySum{{Epoch: -9, Sum: 1}, {Epoch: 1 << 40, Sum: math.MaxUint64}}
		},
		func(v *Video) {
			v.Entries = nil
			v.LockFrom, v.LockTo = clock-60_000, clock+60_000
			v.Lockstep = []byte{1, 2, 3}
		},
		func(v *Video) { v.Entries = []Entry{{TS: clock + 90_000_000, Weight: 1}} },
	}
	for i, edge := range edges {
		v := typical(clock)
		edge(v)
		b := v.marshal(nil)
		got := NewVideo("v")
		if err := got.unmarshal(b); err != nil {
			t.Fatalf("edge %d: %v", i, err)
		}
		if !bytes.Equal(got.marshal(nil), b) || got.Clock != v.Clock || got.FirstLike != v.FirstLike ||
			got.LastEmitTS != v.LastEmitTS || !reflect.DeepEqual(got.Decay, v.Decay) || !slices.Equal(got.Entries, v.Entries) ||
			got.LockFrom != v.LockFrom || got.LockTo != v.LockTo || !bytes.Equal(got.Lockstep, v.Lockstep) || got.LastScore != v.LastScore {
			t.Errorf("edge %d: read back %+v\nwrote %+v", i, got, v)
		}
	}
	// Written as themselves (format 10), the first like, the last record,
	// the first like time and the six epochs made the record 12 bytes
	// longer in 2024 than in 1970 (149 against 137); only the clock's
	// varint may grow now (by 4 bytes).
	early, late := len(typical(2*days12).marshal(nil)), len(typical(clock).marshal(nil))
	if late-early > 4 {
		t.Errorf("the video in 2024 takes %d bytes, %d more than in 1970", late, late-early)
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestVideoLikeTimes: like times live inline while few, then in per-hour
// keys; a write rewrites only changed hours and range-deletes old ones;
// every read gives back exactly what was written.
// TestTrimPair trims the event ID of a standing like before the watermark
// and nothing else: a pair not liked, liked at or after the watermark,
// with later likes kept or an empty ID is left as it is, and so is an
// encoding that does not read.
func TestTrimPair(t *testing.T) {
	like := Like{TS: 1_000, Weight: 70_000, Damp: 1, Region: "JP", EventID: "e-7f3a"}
	for _, c := range []struct {
		name string
		p    Pair
		wm   int64
		trim bool
	}{
		{"before the watermark", Pair{Liked: true, EverLiked: true, Like: like}, 1_001, true},
		{"after an unlike", Pair{Liked: true, EverLiked: true, LastUnlike: 900, Like: like}, 5_000, true},
		{"at the watermark", Pair{Liked: true, EverLiked: true, Like: like}, 1_000, false},
		{"no watermark", Pair{Liked: true, EverLiked: true, Like: like}, math.MinInt64, false},
		{"not liked", Pair{EverLiked: true, LastUnlike: 900}, 5_000, false},
		{"later likes", Pair{Liked: true, EverLiked: true, Like: like, Later: []Like{{TS: 1_000, EventID: "e-9"}}}, 5_000, false},
		{"no ID", Pair{Liked: true, EverLiked: true, Like: Like{TS: 1_000, Region: "JP"}}, 5_000, false},
	} {
		b := c.p.Append(nil)
		orig := bytes.Clone(b)
		got := TrimPair(b, c.wm)
		want := c.p
		if c.trim {
			want.Like.EventID = ""
		} else if !bytes.Equal(got, orig) {
			t.Errorf("%s: %x trimmed to %x", c.name, orig, got)
			continue
		}
		var p Pair
		if err := p.Decode(got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%s: %+v, want %+v", c.name, p, want)
		}
		if c.trim && len(got) != len(orig)-len(like.EventID) {
			t.Errorf("%s: %d bytes, want %d", c.name, len(got), len(orig)-len(like.EventID))
		}
	}
	p := Pair{Liked: true, EverLiked: true, Like: like}
	b := p.Append(nil)
	for n := range len(b) {
		if got := TrimPair(b[:n:n], 5_000); len(got) != n {
			t.Errorf("a pair cut to %d bytes trimmed to %d", n, len(got))
		}
	}
}

func TestVideoLikeTimes(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	v := NewVideo("v1")
	v.Clock, v.FirstLike, v.Likes, v.Unique, v.Seq = 1, 1, 0, 0, 0
	v.Regions = []RegionCount{{"US", 2}}
	v.Decay[scoring.H1h] = []scoring.DecaySum{{Epoch: 3, Sum: 99}}
	check := func(what string) {
		t.Helper()
		got, ok, err := p.Video("v1")
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", what, ok, err)
		}
		if !reflect.DeepEqual(got.Entries, v.Entries) && !(len(got.Entries) == 0 && len(v.Entries) == 0) {
			t.Fatalf("%s: %d entries read, %d written", what, len(got.Entries), len(v.Entries))
		}
		if got.Regions[0] != v.Regions[0] || got.Decay[scoring.H1h][0] != v.Decay[scoring.H1h][0] || got.Clock != v.Clock {
			t.Fatalf("%s: header differs: %+v", what, got)
		}
	}
	const hour = 3_600_000
	add := func(ts ...int64) {
		for _, x := range ts {
			v.Entries = append(v.Entries, Entry{TS: x, Weight: 1024})
			v.TimesChanged(x)
			v.Clock = max(v.Clock, x)
		}
		commit(t, p, func(w *Writer) error { return w.SetVideo(v) })
	}
	add(10*hour, 10*hour+5)
	check("inline")
	var many []int64
	for i := range 300 {
		many = append(many, 10*hour+10+int64(i)*60_000) // five hours
	}
	add(many...)
	check("bucketed")
	// Drop the first two hours, as the 24 h window does, and add more.
	cut := 0
	for v.Entries[cut].TS < 12*hour {
		cut++
	}
	v.Entries = v.Entries[cut:]
	add(16*hour, 16*hour+1)
	check("after dropping old hours")
	// Back under the inline limit.
	v.Entries = v.Entries[len(v.Entries)-3:]
	v.TimesChanged(v.Entries[0].TS)
	commit(t, p, func(w *Writer) error { return w.SetVideo(v) })
	check("inline again")
}

// TestVideoBucketKeys drives a video through random changes (likes in and
// out of order, unlikes, a clock that drops old hours, moves between
// inline and bucketed like times, reloads from the store and from the
// packed form a cache holds, long pauses) and
// checks after every write that the store holds exactly the 5-minute
// buckets of the video's like times, read back equal, with both kinds of
// writer.
func TestVideoBucketKeys(t *testing.T) {
	for _, logged := range []bool{false, true} {
		db := openMem(t)
		p := db.Partition(1)
		rng := rand.New(rand.NewPCG(7, uint64(len(fmt.Sprint(logged)))))
		v := NewVideo("v9")
		// spare: the arrays the video is read back into, at first another
		// video's, with regions, decay sums and like times of its own.
		spare := NewVideo("v8")
		spare.Regions = []RegionCount{{Region: "XX", Likes: 3}}
		spare.Decay[0] = []scoring.DecaySum{{Epoch: 1, Sum: 2}}
		spare.Entries = []Entry{{TS: 1, Weight: 7}, {TS: 2, Weight: 9}}
		spare.Lockstep = []byte{1, 2, 3}
		sealed := 0 // writes after which some like times were sealed
		const hour, day = 3_600_000, 24 * 3_600_000
		clock := int64(100 * day)
		for step := range 3000 {
			switch r := rng.IntN(100); {
			case r < 70: // likes near the clock, sometimes late, sometimes a burst
				n := 1
				if rng.IntN(4) == 0 {
					n = 1 + rng.IntN(3*partEntries) // more than a part
				}
				for range n {
					ts := clock - rng.Int64N(2*hour)
					switch rng.IntN(10) {
					case 0:
						ts = clock - rng.Int64N(day)
					case 1, 2, 3, 4:
						ts = clock - rng.Int64N(bucketMS/4)
					}
					if ts < v.SealedEnd() {
						v.Unseal(ts)
					}
					i := sort.Search(len(v.Entries), func(i int) bool { return v.Entries[i].TS > ts })
					v.Entries = slices.Insert(v.Entries, i, Entry{TS: ts, Weight: 1024})
					v.TimesChanged(ts)
				}
			case r < 85 && len(v.Entries)+v.SealedLen() > 0: // unlikes
				for range 1 + rng.IntN(partEntries)*rng.IntN(2) {
					all := v.AllEntries(nil)
					if len(all) == 0 {
						break
					}
					i := rng.IntN(len(all))
					if rng.IntN(2) == 0 {
						i = len(all) - 1 // the newest: parts at a bucket's end go
					}
					if en := all[i]; en.TS < v.SealedEnd() {
						if !v.SealedRemove(en) {
							t.Fatalf("step %d: a sealed like time is not found to remove", step)
						}
						continue
					}
					i -= v.SealedLen()
					v.TimesChanged(v.Entries[i].TS)
					v.Entries = slices.Delete(v.Entries, i, i+1)
				}
			case r < 97: // the clock moves on; old like times leave
				clock += rng.Int64N(3 * hour)
				if rng.IntN(40) == 0 {
					clock += 3 * day // a long pause: every hour leaves
				}
				cut := sort.Search(len(v.Entries), func(i int) bool { return v.Entries[i].TS > clock-day })
				v.Entries = v.Entries[cut:]
				v.DropSealed(clock - day)
			case r < 99 && v.bucketsLo <= v.bucketsHi:
				// Widen the known range past maxPointDeletes, as no write
				// does, to cover the range deletions that bound the work.
				v.bucketsLo -= maxPointDeletes + 10
			case step == 0:
				continue
			case r < 100 && rng.IntN(2) == 0: // packed and back, as a cache that let it go holds it
				// Into the arrays of another video, as an engine reads a
				// video into one its cache let go (Video.Reset).
				got := spare
				if err := got.Unpack(v.ID, v.AppendPacked(nil)); err != nil {
					t.Fatalf("step %d: unpack: %v", step, err)
				}
				// Equal but for empty slices that are nil, or not.
				if !bytes.Equal(got.AppendPacked(nil), v.AppendPacked(nil)) || !slices.Equal(got.AllEntries(nil), v.AllEntries(nil)) ||
					got.dirtyFrom != v.dirtyFrom || got.bucketsLo != v.bucketsLo || got.bucketsHi != v.bucketsHi ||
					got.stored != v.stored || !slices.Equal(got.many, v.many) || got.bucketed != v.bucketed {
					t.Fatalf("step %d: the video unpacked differs from the one packed", step)
				}
				spare, v = v, got
				continue
			default: // read back from the store, as after an eviction
				got := spare
				ok, err := p.ReadVideo(got, v.ID)
				if err != nil || !ok {
					t.Fatalf("step %d: %v %v", step, ok, err)
				}
				cut := sort.Search(len(got.Entries), func(i int) bool { return got.Entries[i].TS > clock-day })
				got.Entries = got.Entries[cut:]
				spare, v = v, got
				continue
			}
			v.Clock = clock
			if step%100 == 0 {
				// Rewrites and deletions pile up in the memtable, which
				// every read below would step over.
				if err := db.db.Compact(context.Background(), []byte("P"), []byte("Q"), false); err != nil {
					t.Fatal(err)
				}
			}
			w := p.NewWriter()
			vw := w
			if logged {
				vw = w.Fork(p, true)
			}
			if err := vw.SetVideo(v); err != nil {
				t.Fatal(err)
			}
			if logged {
				if err := w.Join(vw); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) == 0 {
				// Seal what no late like reaches, as an engine does after a
				// write (sealed like times that the clock passed stay until
				// their bucket goes).
				v.Seal(clock - rng.Int64N(3*hour))
			}
			want := map[int64]bool{}
			if all := v.AllEntries(nil); len(all) > inlineEntries {
				for _, e := range all {
					want[floorDiv(e.TS, bucketMS)] = true
				}
			}
			got := map[int64]bool{}
			parts := map[int64]int{}
			prefix := binary.AppendUvarint(nil, uint64(len(v.ID)))
			prefix = append(prefix, v.ID...)
			last := map[int64]int{} // like times in the bucket's last part
			if err := p.scanPrefix(kindTimes, prefix, func(k, val []byte) error {
				h := int64(binary.BigEndian.Uint64(k[len(prefix):]))
				got[h] = true
				es, err := decodeEntries(nil, val, h*bucketMS)
				if err != nil {
					return err
				}
				if n, ok := last[h]; ok && n != partEntries {
					t.Errorf("logged %v, step %d: bucket %d has a part of %d like times before its last", logged, step, h, n)
				}
				last[h] = len(es)
				parts[h]++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("logged %v, step %d: buckets stored %v, want %v", logged, step, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			for h, n := range parts {
				if v.partsOf(h) != n {
					t.Fatalf("logged %v, step %d: bucket %d has %d parts stored, the video tracks %d", logged, step, h, n, v.partsOf(h))
				}
			}
			back, _, err := p.Video(v.ID)
			if err != nil {
				t.Fatal(err)
			}
			// The first hour may still hold like times the clock dropped
			// (an hour is rewritten only when it changes); readers drop them.
			cut := sort.Search(len(back.Entries), func(i int) bool { return back.Entries[i].TS > clock-day })
			all := v.AllEntries(nil)
			all = all[sort.Search(len(all), func(i int) bool { return all[i].TS > clock-day }):]
			if !slices.Equal(back.Entries[cut:], all) {
				t.Fatalf("logged %v, step %d: %d entries read back, %d written", logged, step, len(back.Entries), len(all))
			}
			if v.sealed != nil {
				sealed++
			}
		}
		if sealed < 300 {
			t.Fatalf("logged %v: only %d of the writes had like times sealed", logged, sealed)
		}
	}
}

// TestSealedEdges moves the trailing edges of windows through a video's
// like times, partly sealed, with unlikes and more sealing between the
// steps, and checks that the sealed like times each edge passes are
// exactly those a search of all the like times finds.
func TestSealedEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	db := openMem(t)
	p := db.Partition(0)
	v := NewVideo("v")
	const hour = 3_600_000
	for i := range 40_000 {
		ts := int64(i)*(hour/2000) + rng.Int64N(hour/2000) // 20 hours, unevenly
		v.Entries = append(v.Entries, Entry{TS: ts, Weight: int32(1 + rng.IntN(1024)), Damp: scoring.Damping(rng.IntN(4))})
	}
	slices.SortFunc(v.Entries, func(a, b Entry) int { return cmp.Compare(a.TS, b.TS) })
	v.Clock = v.Entries[len(v.Entries)-1].TS
	commit(t, p, func(w *Writer) error { return w.SetVideo(v) })
	widths := []int64{60_000, 3 * 60_000, 41 * 60_000, 3 * hour}
	edges := make([]int64, len(widths))
	for k := range edges {
		edges[k] = -widths[k]
	}
	for step := 0; edges[0] < v.Clock; step++ {
		switch rng.IntN(10) {
		case 0:
			v.Seal(edges[0] + rng.Int64N(2*hour))
		case 1:
			if all := v.AllEntries(nil); len(all) > 0 {
				en := all[rng.IntN(len(all))]
				if en.TS < v.SealedEnd() && en.TS > edges[3] && !v.SealedRemove(en) {
					t.Fatalf("step %d: %+v not removed", step, en)
				}
			}
		case 2:
			commit(t, p, func(w *Writer) error { return w.SetVideo(v) })
		}
		all := v.AllEntries(nil)
		for k, w := range widths {
			lo := edges[k]
			hi := lo + rng.Int64N(w/3)
			edges[k] = hi
			var got []Entry
			v.EachSealed(k, lo, hi, func(en Entry) { got = append(got, en) })
			var want []Entry
			for _, en := range all {
				if en.TS > lo && en.TS <= hi && en.TS < v.SealedEnd() {
					want = append(want, en)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d, edge %d (%d, %d]: %d sealed like times passed, want %d", step, k, lo, hi, len(got), len(want))
			}
		}
	}
	if v.SealedLen() == 0 {
		t.Fatal("nothing sealed")
	}
}

// TestHeldEventsSingleDeleted checks that buffered and held events, which
// are removed with single deletions, stay removed through Pebble's flushes
// and compactions, also when a restore applied two values of one key (a
// commit's changelog records sent, its batch lost, and the key set again by
// the commit that replaced it).
func TestHeldEventsSingleDeleted(t *testing.T) {
	db := openMem(t)
	p := db.Partition(1)
	compact := func() {
		t.Helper()
		if err := db.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
	}
	count := func(scan func(fn func([]byte) error) error) int {
		t.Helper()
		n := 0
		if err := scan(func([]byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Written, flushed to a table, then deleted: the deletion meets its
	// value in a compaction.
	commit(t, p, func(w *Writer) error {
		return errorsJoin(w.SetBuffered(5, 1, []byte("b1")), w.SetHeld(5, 1, []byte("h1")))
	})
	compact()
	commit(t, p, func(w *Writer) error { return errorsJoin(w.DeleteBuffered(5, 1), w.DeleteHeld(5, 1)) })
	compact()
	if n, m := count(p.ScanBuffered), count(p.ScanHeld); n != 0 || m != 0 {
		t.Fatalf("after deletion: %d buffered, %d held events", n, m)
	}
	// Restored twice from the changelog, then deleted as a live commit
	// deletes it.
	w := p.NewWriter()
	key := func(kind byte) []byte { return slices.Clone(w.bufferedKey(kind, 7, 2)) }
	kb, kh := key(kindBuffered), key(kindHeld)
	for i, v := range []string{"first", "second"} {
		if err := p.Restore([]Change{{Key: kb, Value: []byte(v)}, {Key: kh, Value: []byte(v)}}, 10); err != nil {
			t.Fatal(err)
		}
		// The first value in the last level, the second in a table
		// above it, as a compaction may find them.
		if i == 0 {
			compact()
		} else if err := db.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n, m := count(p.ScanBuffered), count(p.ScanHeld); n != 1 || m != 1 {
		t.Fatalf("after restores: %d buffered, %d held events, want 1 and 1", n, m)
	}
	commit(t, p, func(w *Writer) error { return errorsJoin(w.DeleteBuffered(7, 2), w.DeleteHeld(7, 2)) })
	compact()
	if n, m := count(p.ScanBuffered), count(p.ScanHeld); n != 0 || m != 0 {
		t.Fatalf("after restores and deletion: %d buffered, %d held events came back", n, m)
	}
}

// TestForkChanges: a logged fork lists its changes as written, in order
// (sets with their values, deletions of both kinds without one), and a
// fork taken after a join starts empty though its batch is the joined
// one's, kept; the commit holds what the forks wrote.
func TestForkChanges(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	for round := range 3 {
		w := p.NewWriter()
		f := w.Fork(p, true)
		var want []Change
		for i := range 10_000 {
			k := []byte(fmt.Sprintf("P-k%d-%d", round, i))
			var err error
			switch i % 3 {
			case 0:
				err = f.delete(k, nil)
				want = append(want, Change{Key: k, Delete: true})
			case 1:
				err = f.singleDelete(k)
				want = append(want, Change{Key: k, Delete: true})
			default:
				v := bytes.Repeat([]byte{byte(i)}, i%50)
				err = f.set(k, v, nil)
				want = append(want, Change{Key: k, Value: v})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		got := changes(t, f)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d changes, want %d", round, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].Key, want[i].Key) || got[i].Delete != want[i].Delete || !bytes.Equal(got[i].Value, want[i].Value) {
				t.Fatalf("round %d, change %d: %q %q delete %v, want %q %q delete %v", round, i, got[i].Key, got[i].Value, got[i].Delete, want[i].Key, want[i].Value, want[i].Delete)
			}
		}
		if err := w.Join(f); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		v, closer, err := db.db.Get([]byte(fmt.Sprintf("P-k%d-2", round)))
		if err != nil {
			t.Fatalf("round %d: a key the fork set: %v", round, err)
		}
		if !bytes.Equal(v, bytes.Repeat([]byte{2}, 2)) {
			t.Errorf("round %d: committed %v", round, v)
		}
		closer.Close()
	}
	if n := len(db.forks); n != 1 {
		t.Errorf("%d forks' batches kept, want the one", n)
	}
	if err := p.NewWriter().Commit(); err != nil {
		t.Fatal(err)
	}
	if err := p.NewWriter().Fork(p, false).Commit(); err == nil {
		t.Error("a fork committed on its own")
	}
}

// TestForksKeepTheirBuffers: the forks of a commit whose partitions
// write more than an eighth of half a memtable each keep their buffers for
// the next commit's, so that they are not grown again from nothing at
// every commit; all kept buffers together stay within twice a commit as
// large as the last, or a memtable.
func TestForksKeepTheirBuffers(t *testing.T) {
	o := DefaultOptions()
	o.FS, o.MemTableBytes = vfs.NewMem(), 8<<20 // forks keep up to 4 MiB each
	db, err := Open("state", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const parts, share = 8, 1536 << 10 // B1's: 1.5 MB a partition
	value := bytes.Repeat([]byte{'v'}, 1000)
	var kept []int
	for round := range 4 {
		w := db.Partition(0).NewWriter()
		forks := make([]*Writer, parts)
		for i := range forks {
			forks[i] = w.Fork(db.Partition(int32(i)), false)
			if round > 1 { // the first commit's forks are kept within twice retain: there was no commit before
				if c := cap(forks[i].b.Repr()); c < share {
					t.Errorf("round %d: fork %d starts with %d bytes, want the %d it grew to", round, i, c, share)
				}
			}
			for k := 0; forks[i].Len() < share; k++ {
				if err := forks[i].set([]byte(fmt.Sprintf("P%d-k%d-%d", i, round, k)), value, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, f := range forks {
			if err := w.Join(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, len(db.forks))
	}
	bound := 2 * max(int64(db.retain), db.lastCommit.Load())
	if n := db.forkBytes.Load(); n > bound || kept[3] != parts {
		t.Errorf("forks kept after each commit %v, %d bytes in all; want %d, within %d", kept, n, parts, bound)
	}
	// A commit four times as large: its forks' buffers are not all kept.
	w := db.Partition(0).NewWriter()
	for i := range parts {
		f := w.Fork(db.Partition(int32(i)), false)
		for k := 0; f.Len() < 4*share; k++ {
			if err := f.set([]byte(fmt.Sprintf("P%d-big-%d", i, k)), value, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Join(f); err != nil {
			t.Fatal(err)
		}
	}
	db.lastCommit.Store(0) // as though the last commit had been small
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := db.forkBytes.Load(); n > 2*int64(db.retain) {
		t.Errorf("after a large commit, the forks keep %d bytes, more than %d", n, 2*db.retain)
	}
}

// TestEntrySize: a like time takes 16 bytes in memory (a popular video
// holds hundreds of thousands).
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(Entry{}); n != 16 {
		t.Errorf("an Entry takes %d bytes, want 16", n)
	}
}

// TestBlockCacheHoldsBlocks: Pebble reserves its memtables' memory out of
// the block cache; a cache smaller than the memtables held no block, and
// every read went to the file system. Reads of the same keys again must
// find their blocks in the cache.
func TestBlockCacheHoldsBlocks(t *testing.T) {
	o := Options{CacheBytes: 1 << 20, MemTableBytes: 4 << 20, FS: vfs.NewMem()}
	d, err := Open("", o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := d.Partition(0)
	w := p.NewWriter()
	for i := range 20_000 {
		if err := w.SetAccount(0, fmt.Sprintf("u%d", i), []AccountBucket{{Bucket: int64(i), N: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := d.db.Flush(); err != nil {
		t.Fatal(err)
	}
	var bs []AccountBucket
	for range 2 {
		for i := 0; i < 20_000; i += 100 {
			if bs, err = p.Account(fmt.Sprintf("u%d", i), []int64{0}, 0, 0, bs[:0]); err != nil || len(bs) != 1 {
				t.Fatalf("account u%d: %v, %v", i, bs, err)
			}
		}
	}
	m := d.db.Metrics()
	if m.BlockCache.Hits == 0 || m.BlockCache.Count == 0 {
		t.Errorf("block cache: %d hits, %d misses, %d blocks held: reads did not find their blocks again", m.BlockCache.Hits, m.BlockCache.Misses, m.BlockCache.Count)
	}
}

// TestPackedForms: a video written with its like times inline packs as its
// record alone, one byte more than the record, and one with keys of like
// times packs with what it tracks of them; both unpack to the video
// packed, into another video's arrays.
func TestPackedForms(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	const minute = 60_000
	for _, likes := range []int{3, 3 * inlineEntries} {
		v := NewVideo(fmt.Sprint("v", likes))
		v.Clock, v.FirstLike, v.Likes, v.Unique = 1000*minute, 900*minute, int64(likes), int64(likes)
		v.Regions = []RegionCount{{Region: "US", Likes: int64(likes)}}
		v.Decay[0] = []scoring.DecaySum{{Epoch: 7, Sum: 99}}
		for i := range likes {
			v.Entries = append(v.Entries, Entry{TS: 900*minute + int64(i)*minute, Weight: 1000})
		}
		v.TimesChanged(minTime)
		w := p.NewWriter()
		if err := w.SetVideo(v); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		b := v.AppendPacked(nil)
		record := v.marshal(nil)
		switch bucketed := likes > inlineEntries; {
		case !bucketed && (b[0] != packedPlain || len(b) != 1+len(record)):
			t.Errorf("%d likes inline: packed in %d bytes, form %d; want the record's %d and one", likes, len(b), b[0], len(record))
		case bucketed && b[0] != packedTracked:
			t.Errorf("%d likes bucketed: packed in form %d", likes, b[0])
		}
		got := NewVideo("other")
		got.Entries = []Entry{{TS: 1, Weight: 2}}
		got.Lockstep = []byte{5}
		if err := got.Unpack(v.ID, b); err != nil {
			t.Fatalf("%d likes: %v", likes, err)
		}
		if !bytes.Equal(got.AppendPacked(nil), b) || !slices.Equal(got.AllEntries(nil), v.AllEntries(nil)) ||
			got.dirtyFrom != v.dirtyFrom || got.bucketsLo != v.bucketsLo || got.bucketsHi != v.bucketsHi ||
			got.stored != v.stored || got.bucketed != v.bucketed || got.ID != v.ID {
			t.Errorf("%d likes: the video unpacked differs from the one packed", likes)
		}
	}
	for _, bad := range [][]byte{nil, {0}, {3, 1, 2}, {packedTracked, 1}} {
		if err := NewVideo("x").Unpack("x", bad); err == nil {
			t.Errorf("unpacking %v: no error", bad)
		}
	}
}

// TestAccountEpochs: an account's record is read from the latest of the
// epochs given that has one, at or after the lowest asked for; the
// epochs held are listed in order, negative ones too; and deleting the
// epochs before one drops their records, from every account, and no
// other partition's.
func TestAccountEpochs(t *testing.T) {
	db := openMem(t)
	p, q := db.Partition(0), db.Partition(1)
	one := func(b int64) []AccountBucket { return []AccountBucket{{Bucket: b, N: 1}} }
	commit(t, p, func(w *Writer) error {
		return errorsJoin(w.SetAccount(-2, "u1", one(-50)), w.SetAccount(4, "u1", one(130)), w.SetAccount(5, "u1", one(150)),
			w.SetAccount(4, "u2", one(120)), w.For(q).SetAccount(-2, "u1", one(-60)))
	})
	eps, err := p.AccountEpochs()
	if err != nil || !reflect.DeepEqual(eps, []int64{-2, 4, 5}) {
		t.Fatalf("epochs %v, %v; want [-2 4 5]", eps, err)
	}
	for _, c := range []struct {
		user   string
		lo, hi int64
		want   int64 // bucket read; 0: none
	}{
		{"u1", -10, 9, 150}, {"u1", 5, 9, 150}, {"u1", 6, 9, 0}, {"u1", -10, 4, 130}, {"u1", -10, 3, -50},
		{"u2", -10, 9, 120}, {"u2", 5, 9, 0}, {"u3", -10, 9, 0},
	} {
		bs, err := p.Account(c.user, eps, c.lo, c.hi, nil)
		got := int64(0)
		if len(bs) == 1 {
			got = bs[0].Bucket
		}
		if err != nil || len(bs) > 1 || got != c.want {
			t.Errorf("%s from epoch %d to %d: read %v, %v; want bucket %d", c.user, c.hi, c.lo, bs, err, c.want)
		}
	}
	commit(t, p, func(w *Writer) error { return w.DeleteAccountEpochs(5) })
	if eps, err := p.AccountEpochs(); err != nil || !reflect.DeepEqual(eps, []int64{5}) {
		t.Errorf("epochs after deleting those before 5: %v, %v", eps, err)
	}
	if bs, _ := p.Account("u2", []int64{-2, 4, 5}, -10, 9, nil); len(bs) != 0 {
		t.Errorf("u2 still has %v", bs)
	}
	if eps, err := q.AccountEpochs(); err != nil || !reflect.DeepEqual(eps, []int64{-2}) {
		t.Errorf("another partition's epochs: %v, %v", eps, err)
	}
	var keys []string
	if err := p.ScanAccountKeys(func(k []byte) { keys = append(keys, string(k)) }); err != nil || !reflect.DeepEqual(keys, []string{string(AccountKey(nil, "u1"))}) {
		t.Errorf("account keys %q, %v", keys, err)
	}

	// A logged fork's commit deletes them from the store, not in the
	// changes it logs.
	w := q.NewWriter()
	f := w.Fork(q, true)
	if err := errorsJoin(f.SetAccount(7, "u9", one(210)), f.DeleteAccountEpochs(0)); err != nil {
		t.Fatal(err)
	}
	var logged []string
	if err := f.Changes(func(c Change) error { logged = append(logged, fmt.Sprintf("%q %v", c.Key, c.Delete)); return nil }); err != nil || len(logged) != 1 {
		t.Errorf("a logged fork lists %v, %v; want the account set alone", logged, err)
	}
	if err := errorsJoin(w.Join(f), w.Commit()); err != nil {
		t.Fatal(err)
	}
	if eps, err := q.AccountEpochs(); err != nil || !reflect.DeepEqual(eps, []int64{7}) {
		t.Errorf("epochs after a logged fork deleted those before 0: %v, %v", eps, err)
	}
}

// TestPackedWritten: a video written with its like times inline packs as
// the record it was last written with, without encoding it again.
func TestPackedWritten(t *testing.T) {
	p := openMem(t).Partition(0)
	v := NewVideo("v1")
	v.Clock, v.FirstLike, v.Likes, v.Unique = 60_000, 30_000, 2, 2
	v.Regions = []RegionCount{{Region: "US", Likes: 2}}
	v.Entries = []Entry{{TS: 30_000, Weight: 1000}, {TS: 60_000, Weight: 1000}}
	for range 2 {
		commit(t, p, func(w *Writer) error { return w.SetVideo(v) })
		if !v.writtenOK || !bytes.Equal(v.AppendPacked(nil), v.marshal([]byte{packedPlain})) {
			t.Fatal("a video just written does not pack as its record")
		}
		v.Likes++
	}
	v.Likes-- // as written, but packed from what was
	v.LastScore = 1
	if bytes.Equal(v.AppendPacked(nil), v.marshal([]byte{packedPlain})) {
		t.Fatal("the video was encoded again, not packed as written")
	}
	v.Reset("v2")
	if v.writtenOK {
		t.Error("a video reset keeps the record of the one before")
	}
}
