package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/processor"
)

// Warm-up: a replay or backfill of a time range [T1, T2) first applies
// records before T1 to the state without emitting anything for them, so
// that windows, baselines, standing likes and unlikes are right from T1 on.
// The engine runs exactly as it would over the whole input; only its
// outputs are gated:
//
//   - a score record is emitted when its event time (the video's latest
//     event time, the record's ts) is at or after T1;
//   - a trending list when its tick is at or after T1;
//   - a dead letter when its input record lies in the range by position:
//     at or after the offset where a read from T1 would start (Kafka's
//     lookup by time; in files, the first line whose event time is at or
//     after T1).
//
// The gates look only at the records themselves, so the outputs are the
// records of a run over the whole input that pass them, byte for byte:
// the same for any workers, reads and restarts.

// parseWarmup reads a --warmup value: empty or 0 for none, "all" for the
// start of the input, else a positive duration.
func parseWarmup(s string) (all bool, d time.Duration, err error) {
	switch s {
	case "", "0":
		return false, 0, nil
	case "all":
		return true, 0, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil || d < 0 {
		return false, 0, usagef("--warmup %q: give a duration (like 24h) or all (from the start of the topic)", s)
	}
	return false, d, nil
}

// gateSink passes on only the messages keep accepts, and counts both.
type gateSink struct {
	processor.Sink
	keep          func(m *processor.Message) bool
	kept, dropped int64
}

func (g *gateSink) Write(m *processor.Message) error {
	if !g.keep(m) {
		g.dropped++
		return nil
	}
	g.kept++
	return g.Sink.Write(m)
}

// positionedGate is a gate on a positioned sink, so that a resumed run
// still cuts the output back to its last commit.
type positionedGate struct {
	*gateSink
	pos processor.Positioned
}

func (g positionedGate) Position() int64       { return g.pos.Position() }
func (g positionedGate) Restore(p int64) error { return g.pos.Restore(p) }

// newGate wraps s so that only the messages keep accepts are written.
func newGate(s processor.Sink, keep func(m *processor.Message) bool) (processor.Sink, *gateSink) {
	g := &gateSink{Sink: s, keep: keep}
	if p, ok := s.(processor.Positioned); ok {
		return positionedGate{g, p}, g
	}
	return g, g
}

// fromTime keeps the messages whose time (event time of a score record,
// tick of a trending list) is at or after from, in ms.
func fromTime(from int64) func(m *processor.Message) bool {
	return func(m *processor.Message) bool { return m.Time >= from }
}

// deadLetterSource reads the source partition and offset of a dead
// letter from its headers.
func deadLetterSource(m *processor.Message) (partition int32, offset int64, ok bool) {
	var pok, ook bool
	for _, h := range m.Headers {
		switch h.Key {
		case processor.HeaderPartition:
			p, err := strconv.ParseInt(string(h.Value), 10, 32)
			partition, pok = int32(p), err == nil
		case processor.HeaderOffset:
			o, err := strconv.ParseInt(string(h.Value), 10, 64)
			offset, ook = o, err == nil
		}
	}
	return partition, offset, pok && ook
}

// rangeSource bounds a stream of lines (files, which carry no timestamps
// of their own) by event time, as Kafka's lookups by time bound a
// partition, but judging the stream's progress as the late check does: it
// is the largest event time seen, except that a time more than the
// lateness ahead of it counts only once eight such times lie within one
// lateness of each other (a stream that really moved on), so that one
// line with a bad clock ends nothing early. The range starts at the first
// line that moves the progress to from or later and ends before the first
// line that moves it to to or later. Lines that do not decode or lie
// beyond the future check (dead-lettered as future) do not count. Lines
// before the start are still read: they are the warm-up.
type rangeSource struct {
	src      processor.Source
	from, to int64 // ms; 0: unbounded
	limit    int64 // event times beyond it are dead-lettered as future
	lateness int64
	start    atomic.Int64
	ended    bool
	ev       event.Event
	progress int64
	ahead    []int64 // sorted
}

func newRangeSource(src processor.Source, from, to, limit int64, lateness time.Duration) *rangeSource {
	s := &rangeSource{src: src, from: from, to: to, limit: limit, lateness: lateness.Milliseconds()}
	s.start.Store(-1)
	if from == 0 {
		s.start.Store(0)
	}
	return s
}

// Start is the offset of the first line of the range, -1 while it is not
// known (every line so far is warm-up).
func (s *rangeSource) Start() int64 { return s.start.Load() }

func (s *rangeSource) Next(ctx context.Context, buf []processor.Record) ([]processor.Record, error) {
	if s.ended {
		return buf[:0], io.EOF
	}
	recs, err := s.src.Next(ctx, buf)
	for i := range recs {
		if event.Decode(recs[i].Value, recs[i].Time, &s.ev) != nil || s.ev.TS > s.limit {
			continue
		}
		s.observe(s.ev.TS)
		if s.from != 0 && s.progress >= s.from && s.start.Load() < 0 {
			s.start.Store(recs[i].Offset)
		}
		if s.to != 0 && s.progress >= s.to {
			s.ended = true
			return recs[:i], io.EOF
		}
	}
	return recs, err
}

// observe moves the progress with an event time, as a source's
// watermark moves.
func (s *rangeSource) observe(ts int64) {
	s.progress, s.ahead = processor.AdvanceWatermark(s.progress, s.ahead, ts, s.lateness)
}

// eta estimates the time left from the share done so far.
func eta(elapsed time.Duration, done float64) time.Duration {
	if done <= 0 {
		return 0
	}
	return time.Duration(float64(elapsed) * (1 - done) / done).Round(time.Second)
}

// pct formats a share as a percentage.
func pct(part, whole int64) string {
	if whole <= 0 {
		return "100.0%"
	}
	return fmt.Sprintf("%.1f%%", 100*min(float64(part)/float64(whole), 1))
}
