package processor

import (
	"github.com/viralityhq/virality/store"
)

// likeLess orders likes of one pair as the SPEC sorts events: by event
// time, then by event id.
func likeLess(a, b *store.Like) bool {
	if a.TS != b.TS {
		return a.TS < b.TS
	}
	return a.EventID < b.EventID
}

// applyLike places a like in a pair's state as if the pair's events had
// arrived sorted by event time. wm is the watermark: no event before it can
// arrive any more. It reports whether the like was ignored because a like
// stood already (or a later unlike cuts it).
func applyLike(p *store.Pair, l store.Like, wm int64) (ignored bool) {
	p.EverLiked = true
	defer prunePair(p, wm)
	if p.LastUnlike != 0 && l.TS <= p.LastUnlike {
		// A later unlike withdraws it (at equal times the like sorts first).
		return true
	}
	if !p.Liked {
		p.Liked, p.Like = true, l
		return false
	}
	if likeLess(&l, &p.Like) {
		// The new like is the first after the last unlike; the old one
		// becomes a later like, revived if an unlike falls between them.
		p.Later = insertLike(p.Later, p.Like)
		p.Like = l
		return false
	}
	p.Later = insertLike(p.Later, l)
	return true
}

// applyUnlike places an unlike at ts in a pair's state. It reports whether
// the unlike found no standing like before it.
func applyUnlike(p *store.Pair, ts, wm int64) (stray bool) {
	defer prunePair(p, wm)
	if p.LastUnlike != 0 && ts <= p.LastUnlike {
		// A later unlike already decides everything before it.
		return false
	}
	p.LastUnlike = ts
	if !p.Liked {
		return true
	}
	if p.Like.TS > ts {
		// The standing like came after this unlike: it still stands.
		return false
	}
	// The standing like is withdrawn; the first later like after the
	// unlike, if any, is a fresh like.
	i := 0
	for i < len(p.Later) && p.Later[i].TS <= ts {
		i++
	}
	if i == len(p.Later) {
		p.Liked, p.Like, p.Later = false, store.Like{}, nil
		return false
	}
	p.Like = p.Later[i]
	p.Later = append(p.Later[:0], p.Later[i+1:]...)
	return false
}

func insertLike(ls []store.Like, l store.Like) []store.Like {
	i := len(ls)
	for i > 0 && likeLess(&l, &ls[i-1]) {
		i--
	}
	ls = append(ls, store.Like{})
	copy(ls[i+1:], ls[i:])
	ls[i] = l
	return ls
}

// prunePair drops later likes before the watermark: an unlike that could
// revive them would itself be late.
func prunePair(p *store.Pair, wm int64) {
	i := 0
	for i < len(p.Later) && p.Later[i].TS < wm {
		i++
	}
	if i == len(p.Later) {
		p.Later = nil
	} else if i > 0 {
		p.Later = append(p.Later[:0], p.Later[i:]...)
	}
}
