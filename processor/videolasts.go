package processor

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// videoLasts is a creator's videos liked in the last hour, each with the
// minute of its last like: a slice sorted by video while there are few,
// a map past maxSortedVideos. Most creators have a handful; a map for
// each was the larger part of decoding a creator (a group of slots and a
// header, hashed again at every insertion), and a creator is decoded at
// most of its likes when the merger holds more creators than its bytes
// (B4's 100,000).
type videoLasts struct {
	s []videoLast      // sorted by id; nil once m is used
	m map[string]int64 // past maxSortedVideos
}

type videoLast struct {
	id   string
	last int64
}

// maxSortedVideos bounds the sorted slice: an insertion moves the entries
// after it, so beyond a few hundred a map costs less.
const maxSortedVideos = 256

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
	i, ok := slices.BinarySearchFunc(v.s, id, func(x videoLast, id string) int { return cmp.Compare(x.id, id) })
	if ok {
		v.s[i].last = max(v.s[i].last, last)
		return
	}
	if len(v.s) < maxSortedVideos {
		v.s = slices.Insert(v.s, i, videoLast{id, last})
		return
	}
	v.m = make(map[string]int64, 2*maxSortedVideos)
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
	n := 24 * cap(v.s)
	for _, x := range v.s {
		n += len(x.id)
	}
	for id := range v.m {
		n += 48 + len(id)
	}
	return n
}

// appendTo appends the count of videos, then each video's id (appendStr)
// and minute (a varint), sorted by id.
func (v *videoLasts) appendTo(b []byte) []byte {
	s := v.s
	if v.m != nil {
		s = make([]videoLast, 0, len(v.m))
		for id, last := range v.m {
			s = append(s, videoLast{id, last})
		}
		slices.SortFunc(s, func(a, b videoLast) int { return cmp.Compare(a.id, b.id) })
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	for _, x := range s {
		b = appendStr(b, x.id)
		b = binary.AppendVarint(b, x.last)
	}
	return b
}

// readVideoLasts reads what appendTo appended; false if the ids are not
// in order.
func readVideoLasts(r *creatorReader) (videoLasts, bool) {
	var v videoLasts
	n := r.count()
	if n > maxSortedVideos {
		v.m = make(map[string]int64, n)
	} else if n > 0 {
		v.s = make([]videoLast, 0, n+1) // room for the like that took the creator back
	}
	prev := ""
	for i := 0; i < n && !r.bad; i++ {
		id, last := r.str(), r.varint()
		if i > 0 && id <= prev {
			return v, false
		}
		prev = id
		if v.m != nil {
			v.m[id] = last
		} else {
			v.s = append(v.s, videoLast{id, last})
		}
	}
	return v, true
}
