package service

import (
	"context"
	"math"
	"sync"
)

// pacer keeps a generation's input partitions in step in event time. An
// account stage weighs a like only once every source has passed the like's
// buckets (processor/stage.go), and an engine releases an event only once
// every source's watermark has: whatever one partition reads ahead of the
// slowest waits in memory. Reading a backlog, partitions read at whatever
// speed the broker serves them, hours of event time apart, and the likes
// between piled up on the heap (a catch-up of 2M likes held 300 MB of
// them, and spent 40% of its CPU collecting garbage).
//
// So a partition's fetcher waits while the largest event time it has read
// is more than skew ahead of the slowest partition still being read: the
// smallest largest-event-time of the partitions whose last fetch brought
// records. A partition that has caught up (its last fetch brought nothing)
// holds nobody back, and the slowest never waits, so the partitions cannot
// all wait on one another. Partitions of other instances are not seen
// here; their skew is theirs to keep.
//
// While the account stages hold more than maxHeld likes for weighing
// (Config.MaxHeldEvents) and could weigh them without more input, the
// partitions wait: the stages' reports to one another close the buckets
// that free held likes, and in a catch-up they trail the input (each round
// of reports closes two or three buckets), so that what is read meanwhile
// only waits. Once the stages wait on the sources' progress, the input
// reads on whatever they hold (a dense live stream holds its lateness'
// worth of likes for good).
//
// And every partition waits while an internal topic's partition holds
// more than maxBehind records unread (Config.MaxInternalBehind): the
// internal topics are read whatever the input does, so that wait ends.
type pacer struct {
	skew      int64 // ms; 0: no pacing in event time
	maxBehind int64 // records; 0: no limit
	maxHeld   int64 // events; 0: no limit

	mu    sync.Mutex
	parts map[int32]*paced
	// internal is the most records an internal topic's partition held
	// unread at its last fetch; held is the likes the account stages hold
	// for weighing; starved: the stages wait on the input's progress to
	// weigh them.
	internal, held int64
	starved        bool
	// wake is closed, and replaced, when anything a waiter waits on moves.
	wake chan struct{}
}

type paced struct {
	maxTS    int64 // largest event time read, ms; 0: none yet
	caughtUp bool  // the last fetch brought nothing
}

// newPacer paces partitions ids to within skew ms of one another, holds
// them while an internal topic's partition has more than maxBehind records
// unread, and while the account stages hold more than maxHeld likes they
// can weigh without more input (each 0: no limit).
func newPacer(skew, maxBehind, maxHeld int64, ids []int32) *pacer {
	p := &pacer{skew: skew, maxBehind: maxBehind, maxHeld: maxHeld, parts: map[int32]*paced{}, wake: make(chan struct{})}
	for _, id := range ids {
		p.parts[id] = &paced{}
	}
	return p
}

// slowest returns the smallest largest-event-time of the partitions being
// read, other than id (math.MaxInt64 when there is none). A partition that
// has read nothing yet counts as 0: the others wait for its first fetch.
func (p *pacer) slowest(id int32) int64 {
	low := int64(math.MaxInt64)
	for other, s := range p.parts {
		if other != id && !s.caughtUp {
			low = min(low, s.maxTS)
		}
	}
	return low
}

// wait blocks while partition id is more than the skew ahead of the
// slowest other partition; it returns false when ctx ends first.
func (p *pacer) wait(ctx context.Context, id int32) bool {
	if p == nil {
		return true
	}
	for {
		p.mu.Lock()
		s, w := p.parts[id], p.wake
		low := p.slowest(id)
		ahead := s != nil && s.maxTS > 0 && s.maxTS > low // not the slowest
		wait := ahead && p.skew > 0 && s.maxTS-low > p.skew ||
			p.maxHeld > 0 && p.held > p.maxHeld && !p.starved ||
			p.maxBehind > 0 && p.internal > p.maxBehind
		p.mu.Unlock()
		if !wait {
			return true
		}
		select {
		case <-w:
		case <-ctx.Done():
			return false
		}
	}
}

// behind records the most records an internal topic's partition held
// unread at its last fetch. The internal topics are read whatever the
// input does, so a wait on them ends.
func (p *pacer) behind(n int64) {
	if p == nil || p.maxBehind <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.internal
	p.internal = n
	if was > p.maxBehind && n <= p.maxBehind {
		p.wakeAll()
	}
}

// holding records the likes the engine's account stages hold for
// weighing, and whether they wait on the input to weigh them
// (processor.Coordinator.WaitsOnInput).
func (p *pacer) holding(n int64, starved bool) {
	if p == nil || p.maxHeld <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	was, wasStarved := p.held, p.starved
	p.held, p.starved = n, starved
	if was > p.maxHeld && n <= p.maxHeld || starved && !wasStarved {
		p.wakeAll()
	}
}

// paces reports whether the pacer keeps the partitions in step in event
// time, and so needs read.
func (p *pacer) paces() bool { return p != nil && p.skew > 0 }

// read records what a fetch of partition id brought: n records, the
// largest event time among them maxTS (0: none known).
func (p *pacer) read(id int32, n int, maxTS int64) {
	if !p.paces() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.parts[id]
	if s == nil {
		return
	}
	caughtUp := n == 0
	if caughtUp == s.caughtUp && maxTS <= s.maxTS {
		return // nothing that moves the slowest
	}
	s.caughtUp = caughtUp
	s.maxTS = max(s.maxTS, maxTS)
	p.wakeAll()
}

// wakeAll wakes every waiter to look again; p.mu is held.
func (p *pacer) wakeAll() {
	close(p.wake)
	p.wake = make(chan struct{})
}
