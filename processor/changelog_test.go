package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// memLog is an in-memory changelog topic: one log per partition, with
// offsets that compaction leaves in place. A flush numbered in cut writes
// only the first half of each partition's records, then fails, as a
// crash while a commit's records are sent leaves them.
type memLog struct {
	buf     []Message
	logs    map[int32][]Record
	ends    map[int32]int64
	flushes int
	cut     int
}

func newMemLog() *memLog {
	return &memLog{logs: map[int32][]Record{}, ends: map[int32]int64{}}
}

func (l *memLog) Write(m *Message) error {
	l.buf = append(l.buf, cloneMessage(m))
	return nil
}

func (l *memLog) Flush(context.Context) error {
	l.flushes++
	byPart := map[int32][]Message{}
	var parts []int32
	for _, m := range l.buf {
		p, _ := ChangelogPartition(m.Key)
		if _, ok := byPart[p]; !ok {
			parts = append(parts, p)
		}
		byPart[p] = append(byPart[p], m)
	}
	l.buf = nil
	for _, p := range parts {
		ms := byPart[p]
		if l.flushes == l.cut {
			ms = ms[:len(ms)/2]
		}
		for _, m := range ms {
			l.logs[p] = append(l.logs[p], Record{Partition: p, Offset: l.ends[p], Key: m.Key, Value: m.Value, Headers: m.Headers})
			l.ends[p]++
		}
	}
	if l.flushes == l.cut {
		return errors.New("crashed while the changelog was sent")
	}
	return nil
}

func (l *memLog) Ends(_ context.Context, parts []int32) (map[int32]int64, error) {
	ends := map[int32]int64{}
	for _, p := range parts {
		ends[p] = l.ends[p]
	}
	return ends, nil
}

func (l *memLog) Bounds(_ context.Context, part int32) (int64, int64, error) {
	if log := l.logs[part]; len(log) > 0 {
		return log[0].Offset, l.ends[part], nil
	}
	return l.ends[part], l.ends[part], nil
}

func (l *memLog) Open(_ context.Context, part int32, offset int64) (Source, error) {
	var recs []Record
	for _, r := range l.logs[part] {
		if r.Offset >= offset {
			recs = append(recs, r)
		}
	}
	return &logSource{recs: recs}, nil
}

// compact keeps each key's last record, as Kafka's log cleaner does, and
// with tombstones false drops the tombstones too, as it does after
// delete.retention.ms.
func (l *memLog) compact(tombstones bool) (before, after int) {
	for p, log := range l.logs {
		last := map[string]int64{}
		for _, r := range log {
			last[string(r.Key)] = r.Offset
		}
		kept := log[:0]
		for _, r := range log {
			if last[string(r.Key)] == r.Offset && (tombstones || len(r.Value) > 0) {
				kept = append(kept, r)
			}
		}
		before, after = before+len(log), after+len(kept)
		l.logs[p] = kept
	}
	return before, after
}

// logSource reads a memLog's records, a few at a time.
type logSource struct{ recs []Record }

func (s *logSource) Next(_ context.Context, buf []Record) ([]Record, error) {
	if len(s.recs) == 0 {
		return buf[:0], io.EOF
	}
	n := min(len(s.recs), 1000)
	buf = append(buf[:0], s.recs[:n]...)
	s.recs = s.recs[n:]
	return buf, nil
}

// topicSink is a memSink as a topic is: it has no position to go back
// to, so records written again after a restore are there twice, as in
// the live service.
type topicSink struct{ s *memSink }

func (s topicSink) Write(m *Message) error          { return s.s.Write(m) }
func (s topicSink) Flush(ctx context.Context) error { return s.s.Flush(ctx) }

// sameLastScores fails the test unless every video's last score record
// in got is its last in want (the outputs are as topics, with no position
// to go back to: a record written again after a restore is there twice).
func sameLastScores(t *testing.T, want, got testOutputs) {
	t.Helper()
	w, g := lastScores(want.scores.msgs), lastScores(got.scores.msgs)
	bad, first := 0, ""
	for id, v := range w {
		if !bytes.Equal(g[id], v) {
			if bad == 0 {
				first = fmt.Sprintf("video %s: last score record\n uninterrupted: %s\n restored:      %s", id, v, g[id])
			}
			bad++
		}
	}
	if bad > 0 || len(g) != len(w) {
		t.Fatalf("%d of %d videos end with another last score record than in one uninterrupted run (%d scored); %s", bad, len(w), len(g), first)
	}
}

// openLogged opens a coordinator of four partitions on db, with the
// changelog log, each partition restored from it first.
func openLogged(t *testing.T, cfg Config, db *store.DB, out testOutputs, log *memLog) (*Coordinator, []RestoreStats) {
	t.Helper()
	o := Outputs{Scores: topicSink{out.scores}, Trending: topicSink{out.trending}, DeadLetters: topicSink{out.dead}, Changelog: log}
	topo := oneSource(4, 2)
	c, err := NewCoordinator(cfg, db, o, topo)
	if err != nil {
		t.Fatal(err)
	}
	var sts []RestoreStats
	for p := range topo.Partitions {
		st, err := c.Restore(context.Background(), int32(p), log, nil)
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	return c, sts
}

// TestRestoreCutCommit: an instance crashes while a commit's changelog
// records are sent, half of them out, and loses its disk; another restores
// every partition from the changelog, skipping what follows the last
// complete commit, commits more often than the first, and crashes too,
// before its input reaches the cut commit's end. After the changelog is
// compacted (each key's last record kept, of the meta records only the
// last), a third, on an empty disk too, restores it and runs to the end:
// every video ends as in one uninterrupted run. Without the keys of the
// cut commit logged again at the second's first commit, compaction leaves
// cut records as the last of their keys with none of the records that
// said they were cut next to them, and the third takes them for state
// (452 of 2,998 videos wrong when this was written).
func TestRestoreCutCommit(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	cfg.CommitEvery = 3_000
	want := runTopology(t, cfg, recs, oneSource(4, 2))
	ctx := context.Background()
	out, log := newTestOutputs(), newMemLog()
	log.cut = 4
	first, _ := openLogged(t, cfg, openMemStore(t), out, log)
	var ce *CommitError
	if err := Run(ctx, first, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); !errors.As(err, &ce) {
		t.Fatalf("run until the cut commit: %v, want the changelog's failure", err)
	}

	// The second commits more often: its commits do not change all that
	// the cut one did, and it crashes before its input passes the cut's.
	cfg2 := cfg
	cfg2.CommitEvery = 700
	second, sts := openLogged(t, cfg2, openMemStore(t), out, log)
	dropped, repairs := int64(0), 0
	for _, st := range sts {
		dropped, repairs = dropped+st.Dropped, repairs+st.Repairs
	}
	if dropped == 0 || repairs == 0 {
		t.Fatalf("restored after the cut commit: %d records dropped, %d keys to repair; want some of each", dropped, repairs)
	}
	src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 500}, budget: len(recs) / 6}
	if err := Run(ctx, second, src, RunOptions{Decoders: 1}); err != errCrash {
		t.Fatalf("run until the second crash: %v", err)
	}

	before, after := log.compact(true)
	if after >= before {
		t.Fatalf("compaction kept all %d records", before)
	}
	third, sts := openLogged(t, cfg, openMemStore(t), out, log)
	for p, st := range sts {
		if st.Repairs != 0 || st.Dropped != 0 {
			t.Fatalf("partition %d restored from the compacted changelog: %+v, want nothing dropped or repaired", p, st)
		}
	}
	if err := Run(ctx, third, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	sameLastScores(t, want, out)
	t.Logf("%d records dropped and %d keys repaired after the cut; compaction kept %d of %d records", dropped, repairs, after, before)
}

// TestRestoreBehindCompacted: an instance commits and stops; another, on a
// disk of its own, restores the partitions and runs on, deleting keys the
// first had (events of the reorder buffer applied, old windows); the
// changelog is compacted, its tombstones gone too (Kafka drops them after
// delete.retention.ms, a day by default). The first gets the partitions
// back, its local state behind the changelog: replaying only what follows
// it would keep the keys whose tombstones are gone, so it drops its state
// and replays the whole changelog, and every video ends as in one
// uninterrupted run.
func TestRestoreBehindCompacted(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	cfg.CommitEvery = 3_000
	want := runTopology(t, cfg, recs, oneSource(4, 2))
	ctx := context.Background()
	out, log := newTestOutputs(), newMemLog()
	db := openMemStore(t)
	first, _ := openLogged(t, cfg, db, out, log)
	src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 500}, budget: len(recs) / 4}
	if err := Run(ctx, first, src, RunOptions{Decoders: 1}); err != errCrash {
		t.Fatalf("run the first: %v", err)
	}
	second, _ := openLogged(t, cfg, openMemStore(t), out, log)
	src = &stopAfter{sliceSource: sliceSource{recs: recs, step: 500}, budget: len(recs) * 3 / 4}
	if err := Run(ctx, second, src, RunOptions{Decoders: 1}); err != errCrash {
		t.Fatalf("run the second: %v", err)
	}
	if before, after := log.compact(false); after >= before {
		t.Fatalf("compaction kept all %d records", before)
	}
	again, sts := openLogged(t, cfg, db, out, log)
	for p, st := range sts {
		if !st.Wiped {
			t.Errorf("partition %d restored onto its state behind a compacted changelog: %+v", p, st)
		}
	}
	if err := Run(ctx, again, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	sameLastScores(t, want, out)
}

// TestChangelogInChunks: a commit's changelog records go to the
// changelog a chunk at a time, each acknowledged before the next is
// written; cut in chunks of a record (in line) or of 64 bytes (in flight,
// a send failing in the middle of four commits, sent again with the rest
// of the commit at the next), the changelog holds the same records, in the
// same order and commits, as sent whole (and failing at the same commits).
func TestChangelogInChunks(t *testing.T) {
	recs := generated(t, nil)[:20_000]
	t.Run("in line", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.CommitEvery = 3_000
		run := func(chunk int) *memLog {
			log := newMemLog()
			c, _ := openLogged(t, cfg, openMemStore(t), newTestOutputs(), log)
			c.logChunk = chunk
			if err := Run(context.Background(), c, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
				t.Fatal(err)
			}
			return log
		}
		whole, chunked := run(logChunkBytes), run(1)
		if chunked.flushes < 10*whole.flushes {
			t.Fatalf("%d flushes in chunks of a record against %d whole: the test shows nothing", chunked.flushes, whole.flushes)
		}
		for p := range int32(4) {
			var a, b []Message
			for _, r := range whole.logs[p] {
				a = append(a, Message{Key: r.Key, Value: r.Value, Headers: r.Headers})
			}
			for _, r := range chunked.logs[p] {
				b = append(b, Message{Key: r.Key, Value: r.Value, Headers: r.Headers})
			}
			sameLog(t, fmt.Sprintf("partition %d", p), a, b)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		byUser := func(ev *event.Event) string { return ev.UserID }
		run := func(p int) int { return 97 + 13*p }
		commit := func(chunk int) *detachLog {
			scores, trending, dead := &detachSink{}, &detachSink{}, &detachSink{}
			// The sends that hold these records fail: in both runs,
			// the same commits fail, and fly again at the next.
			fail := map[int]bool{5_000: true, 40_000: true, 40_001: true, 90_000: true}
			log := &detachLog{detachSink: detachSink{failRecs: fail}, outputs: []*detachSink{scores, trending, dead}}
			c := openFlying(t, DefaultConfig(), Outputs{Scores: scores, Trending: trending, DeadLetters: dead, Changelog: log})
			c.logChunk = chunk
			ctx := context.Background()
			failed := 0
			feedSources(t, c, recs, 4, byUser, run, func(err error) {
				if err != nil {
					t.Fatal(err)
				}
				// Commits in line: each holds the same changes in
				// both runs; one that failed flies again, whole,
				// before the next.
				var ce *CommitError
				if err := c.Commit(ctx); errors.As(err, &ce) {
					failed++
				} else if err != nil {
					t.Fatal(err)
				}
			})
			if err := c.Land(ctx); err != nil {
				t.Fatal(err)
			}
			if failed != 4 || len(fail) != 0 {
				t.Fatalf("%d commits failed, want 4 (%d failures left)", failed, len(fail))
			}
			if log.early > 0 {
				t.Errorf("%d of %d changelog sends went out while an output's records were not acknowledged", log.early, log.sends)
			}
			return log
		}
		whole, chunked := commit(logChunkBytes), commit(64)
		if chunked.sends < 10*whole.sends {
			t.Fatalf("%d sends in chunks of 64 bytes against %d whole: the test shows nothing", chunked.sends, whole.sends)
		}
		sameLog(t, "changelog", whole.sent, chunked.sent)
	})
}

// sameLog fails unless a and b hold the same changelog records in the
// same order and with the same commits: each commit's id is its own.
func sameLog(t *testing.T, name string, a, b []Message) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d records vs %d", name, len(a), len(b))
	}
	commits := map[string]string{} // a's commit id -> b's
	for i := range a {
		x, y := &a[i], &b[i]
		if !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) || len(x.Headers) != 1 || len(y.Headers) != 1 {
			t.Fatalf("%s: record %d differs: %q=%q %v against %q=%q %v", name, i, x.Key, x.Value, x.Headers, y.Key, y.Value, y.Headers)
		}
		ca, cb := string(x.Headers[0].Value), string(y.Headers[0].Value)
		if prev, ok := commits[ca]; ok && prev != cb || !ok && slices.Contains(slices.Collect(maps.Values(commits)), cb) {
			t.Fatalf("%s: record %d is of another commit", name, i)
		}
		commits[ca] = cb
	}
	if len(commits) < 5 {
		t.Fatalf("%s: %d commits, want many", name, len(commits))
	}
}
