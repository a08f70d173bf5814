package processor

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// videoLasts is a creator's videos liked in the last hour, each with the
// minute of its last like: a slice, searched by a hash of the ID, while
// there are few, a map past maxListedVideos. Most creators have a
// handful; a map for each was the larger part of decoding a creator (a
// group of slots and a header, hashed again at every insertion), and a
// creator is decoded at most of its likes when the merger holds more
// creators than its bytes (B4's 100,000). A slice sorted by ID, searched
// by halves, cost more than the map for the creators with many videos:
// each comparison read an ID from memory the cache did not hold.
type videoLasts struct {
	s []videoLast      // in no order; nil once m is used
	m map[string]int64 // past maxListedVideos
}

type videoLast struct {
	hash uint64 // maphash of id with videoSeed
	id   string
	last int64
}

// maxListedVideos bounds the slice: a search reads it all.
const maxListedVideos = 64

// videoSeed seeds the hashes of videoLast; they are never stored.
var videoSeed = maphash.MakeSeed()

func (v *videoLasts) len() int {
	if v.m != nil {
		return len(v.m)
	}
	return len(v.s)
}

// set records a like of video id in minute last (the later wins).
func (v *videoLasts) set(id string, last int64) {
	if v.m != nil {
		if prev, ok := v.m[id]; !ok || last > prev {
			v.m[id] = last
		}
		return
	}
	h := maphash.String(videoSeed, id)
	for i := range v.s {
		if x := &v.s[i]; x.hash == h && x.id == id {
			x.last = max(x.last, last)
			return
		}
	}
	if len(v.s) < maxListedVideos {
		v.s = append(v.s, videoLast{h, id, last})
		return
	}
	v.m = make(map[string]int64, 2*maxListedVideos)
	for _, x := range v.s {
		v.m[x.id] = x.last
	}
	v.m[id] = last
	v.s = nil
}

// count returns how many videos were last liked in minutes (lo, hi].
func (v *videoLasts) count(lo, hi int64) int64 {
	var n int64
	if v.m != nil {
		for _, last := range v.m {
			if last > lo && last <= hi {
				n++
			}
		}
		return n
	}
	for _, x := range v.s {
		if x.last > lo && x.last <= hi {
			n++
		}
	}
	return n
}

// prune drops the videos last liked in minute lo or before.
func (v *videoLasts) prune(lo int64) {
	if v.m != nil {
		for id, last := range v.m {
			if last <= lo {
				delete(v.m, id)
			}
		}
		return
	}
	v.s = slices.DeleteFunc(v.s, func(x videoLast) bool { return x.last <= lo })
}

// size estimates the heap bytes held beside the creator.
func (v *videoLasts) size() int {
	n := 32 * cap(v.s)
	for _, x := range v.s {
		n += len(x.id)
	}
	for id := range v.m {
		n += 48 + len(id)
	}
	return n
}

// appendTo appends the count of videos, then each video's id (appendStr)
// and minute (a varint of its difference from base), sorted by id (the
// slice is sorted in place).
func (v *videoLasts) appendTo(b []byte, base int64) []byte {
	s := v.s
	if v.m != nil {
		s = make([]videoLast, 0, len(v.m))
		for id, last := range v.m {
			s = append(s, videoLast{id: id, last: last})
		}
	}
	slices.SortFunc(s, func(a, b videoLast) int { return cmp.Compare(a.id, b.id) })
	b = binary.AppendUvarint(b, uint64(len(s)))
	for _, x := range s {
		b = appendStr(b, x.id)
		b = binary.AppendVarint(b, x.last-base)
	}
	return b
}

// readVideoLasts reads what appendTo appended from base; false if the ids
// are not in order.
func readVideoLasts(r *creatorReader, base int64, sp *creatorSpares) (videoLasts, bool) {
	var v videoLasts
	n := r.count()
	if n > maxListedVideos {
		v.m = make(map[string]int64, n)
	} else if n > 0 {
		v.s = sp.videoLasts(n + 1) // room for the like that took the creator back
	}
	prev := ""
	for i := 0; i < n && !r.bad; i++ {
		id, last := r.str(), base+r.varint()
		if i > 0 && id <= prev {
			return v, false
		}
		prev = id
		if v.m != nil {
			v.m[id] = last
		} else {
			v.s = append(v.s, videoLast{maphash.String(videoSeed, id), id, last})
		}
	}
	return v, true
}
