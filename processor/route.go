package processor

import (
	"errors"
	"fmt"
	"slices"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// Partitioner names the partition of state that owns a key: a video, or a
// user (its account stage). For a live service, the partition a Kafka
// producer keyed by it would choose (murmur2).
type Partitioner func(key string, partitions int) int32

// agreeAhead is how many records must agree before a source's watermark
// jumps ahead by more than the lateness: one record with a wrong clock
// costs at most itself.
const (
	agreeAhead = 8
	maxAhead   = 64
)

// router is the first stage of one source partition. It judges each
// record on its own (decodable, not from the future, not late against the
// source's watermark) and names the partition of state that owns its
// user, whose account stage weighs it (stage.go). Its state is the source's offset and watermark; it is committed
// with the state of the partition that stores it.
//
// The watermark follows the largest event time the source has seen, but
// a record more than the lateness ahead of it does not move it alone: it
// waits among the "ahead" times until agreeAhead of them lie within one
// lateness of each other, as a stream that really jumped forward (after a
// quiet hour, say) soon shows. So a record with a bad clock or a fallback
// record time never makes the valid records after it late.
type router struct {
	id       int32
	st       *store.RouteState
	parts    int
	part     Partitioner
	lateness int64
	skew     int64
	now      int64
}

type verdict struct {
	part           int32 // partition of state of the user, when reason == ""
	reason, detail string
	ts             int64 // event time, for a dead letter
}

func (r *router) route(rec *Record, ev *event.Event, decodeErr error) verdict {
	if decodeErr != nil {
		var de *event.Error
		if errors.As(decodeErr, &de) {
			return verdict{reason: string(de.Reason), detail: de.Detail}
		}
		return verdict{reason: string(event.ReasonBadJSON), detail: decodeErr.Error()}
	}
	ref := rec.Time
	if ref <= 0 {
		ref = r.now
	}
	if ref > 0 && ev.TS > ref+r.skew {
		return verdict{ts: ev.TS, reason: string(event.ReasonFuture),
			detail: fmt.Sprintf("event time %d is %dms after the reference time %d, more than the allowed %dms", ev.TS, ev.TS-ref, ref, r.skew)}
	}
	st := r.st
	if st.MaxTS > 0 && ev.TS < st.MaxTS-r.lateness {
		return verdict{ts: ev.TS, reason: string(event.ReasonLate),
			detail: fmt.Sprintf("event time %d is %dms before the source's watermark base %d, more than the allowed lateness %dms", ev.TS, st.MaxTS-ev.TS, st.MaxTS, r.lateness)}
	}
	r.observe(ev.TS)
	return verdict{part: r.part(ev.UserID, r.parts)}
}

// observe moves the watermark with an accepted event time.
func (r *router) observe(ts int64) {
	r.st.MaxTS, r.st.Ahead = AdvanceWatermark(r.st.MaxTS, r.st.Ahead, ts, r.lateness)
}

// AdvanceWatermark moves a robust watermark base, maxTS, with an event
// time ts: ts within one lateness of it moves it; ts further ahead is held
// in ahead (sorted, at most maxAhead of the most extreme dropped) until
// agreeAhead of them lie within one lateness of each other, so that no
// single record can drag the watermark forward. Backfill's time ranges
// judge a stream's progress with it too.
func AdvanceWatermark(maxTS int64, ahead []int64, ts, lateness int64) (int64, []int64) {
	switch {
	case maxTS == 0:
		return ts, ahead
	case ts <= maxTS:
		return maxTS, ahead
	case ts <= maxTS+lateness:
		maxTS = ts
	default:
		i, _ := slices.BinarySearch(ahead, ts)
		ahead = slices.Insert(ahead, i, ts)
		if len(ahead) > maxAhead {
			ahead = ahead[:maxAhead] // the most extreme go
		}
		// agreeAhead times within one lateness: the stream moved on.
		moved := false
		for j := 0; j+agreeAhead <= len(ahead); j++ {
			if ahead[j+agreeAhead-1]-ahead[j] <= lateness {
				maxTS, moved = ahead[j+agreeAhead-1], true
				break
			}
		}
		if !moved {
			return maxTS, ahead
		}
	}
	// Drop the ahead times the watermark has caught up with, moving it on
	// through those within one lateness.
	for len(ahead) > 0 && ahead[0] <= maxTS+lateness {
		maxTS = max(maxTS, ahead[0])
		ahead = ahead[1:]
	}
	if len(ahead) == 0 {
		ahead = nil
	}
	return maxTS, ahead
}
