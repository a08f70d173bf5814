package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
	"runtime"
)

func init() {
	register("replay", "re-score a time range of a Kafka topic, with fresh state, into files or other topics", runReplay)
}

type replayFlags struct {
	kafka                                 *kafkaFlags
	cfg                                   processor.Config
	topic, from, to                       string
	out, trendingOut, deadOut             string
	creatorsOut, risingOut                string
	scoresTopic, trendingTopic, deadTopic string
	stateDir                              string
	t1, t2                                time.Time
	warmup                                string
	warmAll                               bool          // --warmup all: from the start of the topic
	warmFor                               time.Duration // else this much before --from (0: none)
	progress                              time.Duration
	cacheMB, memTableMB                   int
	budget                                memoryBudget
}

// warming reports whether the replay has a warm-up.
func (f *replayFlags) warming() bool { return f.warmAll || f.warmFor > 0 }

func parseReplay(args []string) (*replayFlags, error) {
	f := &replayFlags{cfg: processor.DefaultConfig()}
	fs := newFlagSet("replay", "replay --from T1 --to T2 [flags]\n\n"+
		"Re-scores the records of --input-topic from --from to --to, with fresh state and the same\n"+
		"engine as 'virality run'. Each partition is read from its first record at or after --from\n"+
		"to its first record at or after --to, as Kafka's lookups by time locate them (a record\n"+
		"out of time order can end a range early). Use it to re-score history after a change of\n"+
		"--model, for example. Partitions are read in step, merged by record\n"+
		"time, so the output is the same, byte for byte, for the same records and settings.\n"+
		"Outputs go to files (--out, --trending-out, --dead-letter-out) or to topics\n"+
		"(--scores-topic, --trending-topic, --dead-letter-topic), never the live ones by default.\n\n"+
		"Fresh state makes the first hours of the range wrong (baselines, windows, standing likes,\n"+
		"unlikes): --warmup 24h (or all, from the start of the topic) first applies the records\n"+
		"before --from without emitting anything for them, then emits the score records and\n"+
		"trending lists of event time --from and later, and the dead letters of the range. With\n"+
		"--warmup all they are exactly those of a replay or backfill of the whole topic.\n\n"+
		"Example:\n  virality replay --brokers kafka:9092 --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z \\\n"+
		"    --model hn --out scores-hn.jsonl --trending-out trending-hn.jsonl --dead-letter-out dlq.jsonl")
	f.kafka = addKafkaFlags(fs)
	fs.StringVar(&f.topic, "input-topic", "likes", "`TOPIC` to replay")
	fs.StringVar(&f.from, "from", "", "start `TIME` (RFC 3339), inclusive: the first record at or after it")
	fs.StringVar(&f.to, "to", "", "end `TIME` (RFC 3339), exclusive")
	fs.StringVar(&f.out, "out", "", "score records `FILE` (- for standard output)")
	fs.StringVar(&f.trendingOut, "trending-out", "", "trending snapshots `FILE`")
	fs.StringVar(&f.creatorsOut, "creators-out", "", "creator score records `FILE` (creator momentum; empty: not written, and with no\n--rising-creators-out not computed)")
	fs.StringVar(&f.risingOut, "rising-creators-out", "", "rising-creators lists `FILE`, one per region each minute (empty: not written)")
	fs.StringVar(&f.deadOut, "dead-letter-out", "", "dead-letter `FILE` (empty, with no --dead-letter-topic: standard error)")
	fs.StringVar(&f.scoresTopic, "scores-topic", "", "score records `TOPIC` instead of --out (created compacted if missing)")
	fs.StringVar(&f.trendingTopic, "trending-topic", "", "trending snapshots `TOPIC` instead of --trending-out")
	fs.StringVar(&f.deadTopic, "dead-letter-topic", "", "dead-letter `TOPIC` instead of --dead-letter-out")
	fs.StringVar(&f.warmup, "warmup", "", "apply the records of this `DURATION` before --from (all: from the start of the topic) to\nthe state first, emitting nothing for them; then emit score records and trending lists of\nevent time --from and later (empty: no warm-up, fresh state at --from)")
	fs.DurationVar(&f.progress, "progress", 5*time.Second, "interval of progress lines on standard error (0: none)")
	fs.StringVar(&f.stateDir, "state-dir", "", "state `DIR` for the replay; must be new or empty (empty: a temporary directory)")
	addEngineFlags(fs, &f.cfg)
	addStoreFlags(fs, &f.cacheMB, &f.memTableMB)
	addMemoryBudgetFlag(fs, &f.budget)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	// As in backfill: creator momentum only for an output that takes it,
	// and its share of the budget then goes to the accounts.
	f.cfg.NoCreators = f.creatorsOut == "" && f.risingOut == ""
	f.budget.apply(setFlags(fs), sizes{engine: &f.cfg, cacheMB: &f.cacheMB, memTableMB: &f.memTableMB})
	if err := validateStore(f.cacheMB, f.memTableMB); err != nil {
		return nil, err
	}
	if err := validateEngine(&f.cfg); err != nil {
		return nil, err
	}
	var err error
	if f.t1, err = time.Parse(time.RFC3339Nano, f.from); err != nil {
		return nil, usagef("--from %q: give an RFC 3339 time, like 2026-11-25T00:00:00Z", f.from)
	}
	if f.t2, err = time.Parse(time.RFC3339Nano, f.to); err != nil {
		return nil, usagef("--to %q: give an RFC 3339 time, like 2026-11-26T00:00:00Z", f.to)
	}
	if !f.t2.After(f.t1) {
		return nil, usagef("--to %s is not after --from %s", f.to, f.from)
	}
	if f.warmAll, f.warmFor, err = parseWarmup(f.warmup); err != nil {
		return nil, err
	}
	if f.progress < 0 {
		return nil, usagef("--progress %v: must not be negative (0 turns progress lines off)", f.progress)
	}
	switch {
	case f.out == "" && f.scoresTopic == "":
		return nil, usagef("no output for scores: give --out FILE or --scores-topic TOPIC")
	case f.out != "" && f.scoresTopic != "", f.trendingOut != "" && f.trendingTopic != "", f.deadOut != "" && f.deadTopic != "":
		return nil, usagef("give each output as a file or as a topic, not both")
	}
	return f, nil
}

func runReplay(ctx context.Context, args []string) (err error) {
	f, err := parseReplay(args)
	if err != nil {
		return err
	}
	kc, err := f.kafka.config()
	if err != nil {
		return err
	}
	if err := kafkaio.Ping(ctx, kc); err != nil {
		return err
	}
	n, err := kafkaio.Partitions(ctx, kc, f.topic)
	if err != nil {
		return err
	}
	stateDir := f.stateDir
	if stateDir == "" {
		if stateDir, err = os.MkdirTemp("", "virality-replay-"); err != nil {
			return err
		}
		defer os.RemoveAll(stateDir)
	} else if entries, _ := os.ReadDir(stateDir); len(entries) > 0 {
		return usagef("--state-dir %s is not empty: a replay starts from fresh state", stateDir)
	}
	defer f.budget.limitHeap(false)()
	db, err := store.Open(stateDir, storeOptions(f.cacheMB, f.memTableMB))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()

	out, closeOutputs, err := replayOutputs(ctx, f, kc, n)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeOutputs()) }()
	// Records carry their own timestamps; Now only serves records without.
	f.cfg.Now = f.t2.UnixMilli()

	// Each partition's range: [warm, start) is warm-up, [start, end) the
	// range a replay without warm-up reads.
	parts := make([]replayRange, n)
	for p := range n {
		r := &parts[p]
		if r.start, err = kafkaio.OffsetForTime(ctx, kc, f.topic, p, f.t1); err != nil {
			return err
		}
		if r.end, err = kafkaio.OffsetForTime(ctx, kc, f.topic, p, f.t2); err != nil {
			return err
		}
		r.warm = r.start
		switch {
		case f.warmAll:
			first, _, err := kafkaio.FirstLastOffsets(ctx, kc, f.topic, p)
			if err != nil {
				return err
			}
			r.warm = min(first, r.start)
		case f.warmFor > 0:
			w, err := kafkaio.OffsetForTime(ctx, kc, f.topic, p, f.t1.Add(-f.warmFor))
			if err != nil {
				return err
			}
			r.warm = min(w, r.start)
		}
		r.start, r.warm = min(r.start, r.end), min(r.warm, r.end)
		r.pos = r.warm
	}
	var gates [3]*gateSink
	if f.warming() {
		// Outputs of the warm-up are dropped (warmup.go).
		t1 := f.t1.UnixMilli()
		out.Scores, gates[0] = newGate(out.Scores, fromTime(t1))
		out.Trending, gates[1] = newGate(out.Trending, fromTime(t1))
		if out.Creators != nil {
			out.Creators, _ = newGate(out.Creators, fromTime(t1))
		}
		if out.RisingCreators != nil {
			out.RisingCreators, _ = newGate(out.RisingCreators, fromTime(t1))
		}
		out.DeadLetters, gates[2] = newGate(out.DeadLetters, func(m *processor.Message) bool {
			p, off, ok := deadLetterSource(m)
			return !ok || p < 0 || int(p) >= n || off >= parts[p].start
		})
	}

	topo := processor.Topology{Partitions: n, Partitioner: videoPartition, Workers: runtime.GOMAXPROCS(0), Expect: n,
		WrittenListsOnly: true}
	for p := range n {
		topo.Sources = append(topo.Sources, int32(p))
	}
	g, err := processor.NewCoordinator(f.cfg, db, out, topo)
	if err != nil {
		return err
	}
	m := &replayMerge{}
	for p := range n {
		if _, err := g.Open(int32(p)); err != nil {
			return err
		}
		r := &parts[p]
		if r.warm >= r.end {
			continue
		}
		src, err := kafkaio.NewPartitionSource(kc, f.topic, p, r.warm)
		if err != nil {
			return err
		}
		defer src.Close()
		s := &replaySource{src: src, end: r.end}
		if err := s.fill(ctx); err != nil {
			return err
		}
		if len(s.recs) > 0 {
			heap.Push(m, s)
		}
	}
	prog := newReplayProgress(f, parts)
	var records int64
	one := &processor.Batch{}
	for m.Len() > 0 {
		s := (*m)[0]
		rec := &s.recs[s.i]
		one.Fill(s.recs[s.i:s.i+1], 0)
		one.Decode()
		if err := g.Route(ctx, rec.Partition, one); err != nil {
			return err
		}
		prog.took(rec.Partition, rec.Offset)
		// Steps end at fixed counts of the merged stream: the same
		// output order for the same records, however fetches split.
		if records++; records%4096 == 0 {
			if err := g.Step(ctx); err != nil {
				return err
			}
		}
		if records%256 == 0 {
			prog.report(false)
		}
		s.i++
		if s.i == len(s.recs) {
			if err := s.fill(ctx); err != nil {
				return err
			}
		}
		if len(s.recs) == 0 {
			heap.Pop(m)
		} else {
			heap.Fix(m, 0)
		}
	}
	prog.report(true)
	if err := g.Finish(ctx); err != nil {
		return err
	}
	st := g.Stats()
	elapsed := time.Since(prog.began).Round(time.Millisecond)
	if !f.warming() {
		fmt.Fprintf(os.Stderr, "replay: %d records of %s in [%s, %s) in %v: %d applied, %s, %d scores, %d snapshots\n",
			prog.ranged, f.topic, f.from, f.to, elapsed, st.Applied, deadSummary(st), st.Scores, st.Snapshots)
		return nil
	}
	fmt.Fprintf(os.Stderr, "replay: %d records of %s in [%s, %s) after %d records of warm-up (%s) in %v: %d applied, %s in all; written: %d scores, %d snapshots, %d dead letters; not written (warm-up): %d scores, %d snapshots, %d dead letters\n",
		prog.ranged, f.topic, f.from, f.to, prog.warmed, f.warmup, elapsed, st.Applied, deadSummary(st),
		gates[0].kept, gates[1].kept, gates[2].kept, gates[0].dropped, gates[1].dropped, gates[2].dropped)
	return nil
}

// replayRange is a partition's offsets: [warm, start) the warm-up,
// [start, end) the range; pos is the next offset to take.
type replayRange struct{ warm, start, end, pos int64 }

// replayProgress writes a progress line on standard error every
// --progress: the phase, the records taken, the share of the offsets to
// read, the rate and the time left.
type replayProgress struct {
	f              *replayFlags
	parts          []replayRange
	began, last    time.Time
	warmed, ranged int64 // records taken of the warm-up and of the range
	lastN          int64
}

func newReplayProgress(f *replayFlags, parts []replayRange) *replayProgress {
	now := time.Now()
	return &replayProgress{f: f, parts: parts, began: now, last: now}
}

func (p *replayProgress) took(part int32, off int64) {
	r := &p.parts[part]
	r.pos = off + 1
	if off < r.start {
		p.warmed++
	} else {
		p.ranged++
	}
}

// report writes a line if one is due (or, with last, if the replay ran
// long enough to have written one).
func (p *replayProgress) report(last bool) {
	now := time.Now()
	if p.f.progress <= 0 || (!last && now.Sub(p.last) < p.f.progress) || (last && now.Sub(p.began) < p.f.progress) {
		return
	}
	var warmDone, warmAll, done, all int64
	for _, r := range p.parts {
		warmAll += r.start - r.warm
		warmDone += min(r.pos, r.start) - r.warm
		all += r.end - r.warm
		done += r.pos - r.warm
	}
	n := p.warmed + p.ranged
	rate := float64(n-p.lastN) / now.Sub(p.last).Seconds()
	p.last, p.lastN = now, n
	elapsed := now.Sub(p.began)
	share := float64(done) / float64(max(all, 1))
	var line string
	if warmDone < warmAll {
		line = fmt.Sprintf("replay: warming up, %d records, %s of the warm-up, %s of all, %.0f rec/s, warm-up ETA %v, ETA %v",
			p.warmed, pct(warmDone, warmAll), pct(done, all), rate,
			eta(elapsed, float64(warmDone)/float64(warmAll)), eta(elapsed, share))
	} else {
		line = fmt.Sprintf("replay: in range, %d records (and %d of warm-up), %s of all, %.0f rec/s, ETA %v",
			p.ranged, p.warmed, pct(done, all), rate, eta(elapsed, share))
	}
	fmt.Fprintln(os.Stderr, line)
}

// replayOutputs opens the outputs the flags name.
func replayOutputs(ctx context.Context, f *replayFlags, kc kafkaio.Config, n int) (processor.Outputs, func() error, error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	var specs []kafkaio.TopicSpec
	for _, t := range []struct {
		name    string
		compact bool
	}{{f.scoresTopic, true}, {f.trendingTopic, false}, {f.deadTopic, false}} {
		if t.name != "" {
			specs = append(specs, kafkaio.TopicSpec{Name: t.name, Partitions: n, Compacted: t.compact})
		}
	}
	if len(specs) > 0 {
		if _, err := kafkaio.EnsureTopics(ctx, kc, specs); err != nil {
			return processor.Outputs{}, closeAll, err
		}
	}
	open := func(file, topic string, format jsonl.Format) (processor.Sink, error) {
		switch {
		case topic != "":
			s, err := kafkaio.NewSink(kc, topic, kafkaio.SinkOptions{})
			if err == nil {
				closers = append(closers, s.Close)
			}
			return s, err
		case file != "":
			s, err := jsonl.CreateSink(file, format, jsonl.SinkOptions{})
			if err == nil {
				closers = append(closers, s.Close)
			}
			return s, err
		case format == jsonl.DeadLetters:
			s := jsonl.NewSink(os.Stderr, "standard error", jsonl.DeadLetters)
			closers = append(closers, s.Close)
			return s, nil
		}
		return jsonl.Discard, nil
	}
	var out processor.Outputs
	var err error
	if out.Scores, err = open(f.out, f.scoresTopic, jsonl.Lines); err != nil {
		return out, closeAll, err
	}
	if out.Trending, err = open(f.trendingOut, f.trendingTopic, jsonl.Lines); err != nil {
		return out, closeAll, err
	}
	if out.DeadLetters, err = open(f.deadOut, f.deadTopic, jsonl.DeadLetters); err != nil {
		return out, closeAll, err
	}
	if f.creatorsOut != "" {
		if out.Creators, err = open(f.creatorsOut, "", jsonl.Lines); err != nil {
			return out, closeAll, err
		}
	}
	if f.risingOut != "" {
		if out.RisingCreators, err = open(f.risingOut, "", jsonl.Lines); err != nil {
			return out, closeAll, err
		}
	}
	return out, closeAll, nil
}

// replaySource is one partition's records in [start, end), a fetch at a
// time.
type replaySource struct {
	src  *kafkaio.PartitionSource
	end  int64
	raw  []processor.Record // as fetched, aliasing the source's buffers
	recs []processor.Record // own copies, in buf
	i    int
	buf  processor.Batch
}

// fill fetches the next records before end; none when the range is done.
func (s *replaySource) fill(ctx context.Context) error {
	s.i = 0
	s.raw = s.raw[:0]
	for s.src.Offset() < s.end && len(s.raw) == 0 {
		recs, err := s.src.Next(ctx, nil)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Offset < s.end {
				s.raw = append(s.raw, r)
			}
		}
	}
	// Own copies: the source reuses its buffers on the next fetch.
	s.buf.Fill(s.raw, 0)
	s.recs = s.buf.Recs
	return nil
}

// replayMerge orders partitions by their next record's time, then
// partition: the same order for the same records, however fetches split.
type replayMerge []*replaySource

func (m replayMerge) Len() int { return len(m) }
func (m replayMerge) Less(i, j int) bool {
	a, b := &m[i].recs[m[i].i], &m[j].recs[m[j].i]
	if a.Time != b.Time {
		return a.Time < b.Time
	}
	return a.Partition < b.Partition
}
func (m replayMerge) Swap(i, j int) { m[i], m[j] = m[j], m[i] }
func (m *replayMerge) Push(x any)   { *m = append(*m, x.(*replaySource)) }
func (m *replayMerge) Pop() any {
	old := *m
	x := old[len(old)-1]
	*m = old[:len(old)-1]
	return x
}
