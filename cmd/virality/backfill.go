package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

func init() {
	register("backfill", "score JSON-lines files offline, file to file, with the same engine as run", runBackfill)
}

// pathList is a repeatable flag of file paths.
type pathList []string

func (l *pathList) String() string { return strings.Join(*l, " ") }

func (l *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*l = append(*l, v)
	return nil
}

// backfillFlags are the settings of one backfill.
type backfillFlags struct {
	in                        pathList
	out, trendingOut, deadOut string
	creatorsOut, risingOut    string
	stateDir, now, cpuProfile string
	memProfile                string
	from, to                  string
	t1, t2                    int64 // --from and --to in ms; 0: not given
	cfg                       processor.Config
	decoders, cacheMB         int
	memTableMB                int
	budget                    memoryBudget
	maxDeadFraction           float64
	partitions, workers       int
	sync                      bool
	progress                  time.Duration
}

func runBackfill(ctx context.Context, args []string) error {
	f, err := parseBackfill(args)
	if err != nil {
		return err
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if f.memProfile != "" {
		defer func() {
			if pf, err := os.Create(f.memProfile); err == nil {
				_ = pprof.WriteHeapProfile(pf)
				pf.Close()
			}
		}()
	}
	return backfill(ctx, f)
}

// peakRSS is the process's largest resident set so far, in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss << 10 // KiB on Linux
}

func parseBackfill(args []string) (*backfillFlags, error) {
	f := &backfillFlags{cfg: processor.DefaultConfig()}
	fs := newFlagSet("backfill", "backfill [flags] FILE...\n\n"+
		"Scores like events from JSON-lines files (gzip detected by content; - is standard input),\n"+
		"read in the order given as one input, and writes score records, trending snapshots and\n"+
		"dead letters as JSON lines, with the same engine as 'virality run'. Output is the same,\n"+
		"byte for byte, for the same input and settings. With --state-dir a killed backfill\n"+
		"resumes from its last commit when run again with the same flags.\n\n"+
		"A time range: --from T1 applies every line before T1 as warm-up, emitting nothing for it,\n"+
		"then emits score records and trending lists of event time T1 and later, exactly as a\n"+
		"backfill of the whole input emits them; --to T2 ends the input before its first line of\n"+
		"event time T2 or later.\n\n"+
		"Example:\n  virality backfill --out scores.jsonl --trending-out trending.jsonl \\\n"+
		"    --dead-letter-out dlq.jsonl likes-01.jsonl.gz likes-02.jsonl.gz")
	fs.Var(&f.in, "in", "input JSON-lines `FILE` (repeatable; gzip detected by content; - for standard input); input files may also be given as arguments")
	fs.StringVar(&f.out, "out", "-", "score records `FILE` (- for standard output)")
	fs.StringVar(&f.trendingOut, "trending-out", "", "trending snapshots `FILE` (- for standard output; empty: not written)")
	fs.StringVar(&f.creatorsOut, "creators-out", "", "creator score records `FILE` (creator momentum; empty: not written, and with no\n--rising-creators-out not computed: a state directory built without creators is not resumed\nwith them)")
	fs.StringVar(&f.risingOut, "rising-creators-out", "", "rising-creators lists `FILE`, one per region each minute (empty: not written; see\n--creators-out)")
	fs.StringVar(&f.deadOut, "dead-letter-out", "", "dead-letter `FILE`: rejected input lines as JSON objects with the reason, the source\nfile and offset, and the original bytes (- for standard output; empty: standard error,\nso that bad input is never silently lost)")
	fs.StringVar(&f.stateDir, "state-dir", "", "state `DIR`; kept, so that a killed backfill resumes from its last commit (empty: a\ntemporary directory removed at the end)")
	addEngineFlags(fs, &f.cfg)
	fs.StringVar(&f.from, "from", "", "start `TIME` (RFC 3339): lines before the first line of event time at or after it are\nwarm-up, applied without emitting; score records and trending lists are emitted from this\nevent time on (empty: from the start)")
	fs.StringVar(&f.to, "to", "", "end `TIME` (RFC 3339), exclusive: the input ends before its first line of event time at or\nafter it (empty: the end of the input)")
	fs.StringVar(&f.now, "now", "", "reference `TIME` (RFC 3339) for the future-timestamp check of lines, which have no\ntimestamp of their own (empty: the clock at start; set it to make reruns reproducible)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile to `FILE` (for go tool pprof)")
	fs.StringVar(&f.memProfile, "memprofile", "", "write a heap profile to `FILE` at the end (for go tool pprof)")
	fs.IntVar(&f.partitions, "partitions", 8, "split the input by video into `N` partitions of state, as the live service splits a\ntopic of N partitions (Kafka's default partitioner on the video id), to reproduce a live run")
	fs.IntVar(&f.workers, "workers", runtime.GOMAXPROCS(0), "`N` goroutines applying partitions in parallel (outputs are the same for any N)")
	fs.IntVar(&f.decoders, "decoders", 1, "`N` goroutines decoding JSON beside the reader and the engine (0: decode on the reader)")
	fs.BoolVar(&f.sync, "sync", false, "fsync outputs and state at each commit (survives a machine crash, not only a process crash)")
	fs.DurationVar(&f.progress, "progress", 2*time.Second, "interval of progress lines on standard error (0: none)")
	addStoreFlags(fs, &f.cacheMB, &f.memTableMB)
	addMemoryBudgetFlag(fs, &f.budget)
	fs.Float64Var(&f.maxDeadFraction, "max-dead-letter-fraction", 0.5, "exit with status 1 (outputs written all the same) when more than this `FRACTION` of the\nrecords went to the dead letters (1: never)")

	if err := parseWithInputs(fs, args); err != nil {
		return nil, err
	}
	// Creator momentum is computed only for an output that takes it: it
	// took a quarter of B1's CPU, which writes video scores and trending
	// lists only (bench/RESULTS.md). Its share of the budget then goes to
	// the accounts.
	f.cfg.NoCreators = f.creatorsOut == "" && f.risingOut == ""
	f.budget.apply(setFlags(fs), sizes{engine: &f.cfg, cacheMB: &f.cacheMB, memTableMB: &f.memTableMB})
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// parseWithInputs parses flags and input files in any order: arguments
// that are not flags are inputs, as if given with --in, in their place.
// The environment then fills the flags not given.
func parseWithInputs(fs *flag.FlagSet, args []string) error {
	for len(args) > 0 {
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		consumed := len(args) - fs.NArg()
		afterDashes := consumed > 0 && args[consumed-1] == "--"
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		n := 1
		if afterDashes {
			n = len(args) // everything after "--" is a file
		}
		for _, a := range args[:n] {
			if err := fs.Set("in", a); err != nil {
				return usagef("input %q: %v", a, err)
			}
		}
		args = args[n:]
	}
	return parseFlags(fs, nil)
}

// validate checks the flags, naming the flag and what to fix.
func (f *backfillFlags) validate() error {
	c := &f.cfg
	if len(f.in) == 0 {
		return usagef("no input: give --in FILE (or - for standard input)")
	}
	if err := validateEngine(c); err != nil {
		return err
	}
	switch {
	case f.partitions < 1 || f.partitions > 4096:
		return usagef("--partitions %d: must be between 1 and 4096", f.partitions)
	case f.workers < 1 || f.workers > 1024:
		return usagef("--workers %d: must be between 1 and 1024", f.workers)
	case f.decoders < 0 || f.decoders > 64:
		return usagef("--decoders %d: must be between 0 and 64", f.decoders)
	case f.progress < 0:
		return usagef("--progress %v: must not be negative (0 turns progress lines off)", f.progress)
	case !(f.maxDeadFraction >= 0 && f.maxDeadFraction <= 1):
		return usagef("--max-dead-letter-fraction %v: must be a fraction from 0 to 1 (1: never fail)", f.maxDeadFraction)
	}
	if err := validateStore(f.cacheMB, f.memTableMB); err != nil {
		return err
	}

	now := time.Now()
	if f.now != "" {
		t, err := time.Parse(time.RFC3339Nano, f.now)
		if err != nil {
			return usagef("--now %q: not an RFC 3339 time (like 2026-11-26T06:00:00Z)", f.now)
		}
		now = t
	}
	c.Now = now.UnixMilli()
	if err := c.Validate(); err != nil {
		return usagef("%v", err)
	}
	for _, t := range []struct {
		flag, value string
		ms          *int64
	}{{"--from", f.from, &f.t1}, {"--to", f.to, &f.t2}} {
		if t.value == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.value)
		if err != nil || v.UnixMilli() <= 0 {
			return usagef("%s %q: give an RFC 3339 time, like 2026-11-25T00:00:00Z", t.flag, t.value)
		}
		*t.ms = v.UnixMilli()
	}
	if f.t1 != 0 && f.t2 != 0 && f.t2 <= f.t1 {
		return usagef("--to %s is not after --from %s", f.to, f.from)
	}
	return f.checkOutputs()
}

// checkOutputs rejects outputs that would collide: two outputs in one
// file, one stream used twice, or an output overwriting an input.
func (f *backfillFlags) checkOutputs() error {
	type output struct{ flag, path string }
	outs := []output{{"--out", f.out}, {"--trending-out", f.trendingOut}, {"--dead-letter-out", f.deadOut},
		{"--creators-out", f.creatorsOut}, {"--rising-creators-out", f.risingOut}}
	var named []output
	for _, o := range outs {
		if o.path != "" {
			named = append(named, o)
		}
	}
	for i, a := range named {
		for _, b := range named[i+1:] {
			if a.path == "-" && b.path == "-" {
				return usagef("%s and %s both write to standard output: give one of them a file", a.flag, b.flag)
			}
			if a.path != "-" && b.path != "-" && samePath(a.path, b.path) {
				return usagef("%s and %s both name %s: give each output its own file", a.flag, b.flag, b.path)
			}
		}
		if a.path == "-" {
			continue
		}
		for _, in := range f.in {
			if in != "-" && samePath(a.path, in) {
				return usagef("%s %s is also an input: it would be overwritten", a.flag, a.path)
			}
		}
	}
	return nil
}

// samePath reports whether two paths name one file, by name or, when both
// exist, by identity (links).
func samePath(a, b string) bool {
	if aa, err := filepath.Abs(a); err == nil {
		if bb, err := filepath.Abs(b); err == nil && aa == bb {
			return true
		}
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// lockedWriter serializes whole-line writes of several writers to one
// stream: dead letters and progress lines share standard error.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func backfill(ctx context.Context, f *backfillFlags) (err error) {
	start := time.Now()
	stderr := &lockedWriter{w: os.Stderr}

	src, err := jsonl.OpenSource(f.in)
	if err != nil {
		return fmt.Errorf("open input: %w", err)
	}
	defer func() { err = errors.Join(err, src.Close()) }()

	stateDir := f.stateDir
	if stateDir == "" {
		dir, terr := os.MkdirTemp("", "virality-backfill-")
		if terr != nil {
			return fmt.Errorf("create temporary state directory: %w", terr)
		}
		stateDir = dir
		defer func() {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary state %s: %w", dir, rerr))
			}
		}()
	}
	defer f.budget.limitHeap(false)()
	opts := storeOptions(f.cacheMB, f.memTableMB)
	opts.Sync = f.sync
	// A backfill writes far more than it reads back: fewer, larger
	// compactions out of level 0 (store.Options.L0Flushes) ran one of
	// 1.3M likes 6% faster at 8 than at Pebble's 4; a catch-up, which
	// reads more of its state back, ran slower. At 16, B1 wrote 9.1 GB of
	// tables instead of 11 and used 2-12% less CPU in four alternating
	// pairs, with 82 MB more compaction left at its end; the 1.3M-like
	// file, the same (bench/RESULTS.md).
	opts.L0Flushes = 16
	db, err := store.Open(stateDir, opts)
	if err != nil {
		return fmt.Errorf("open state %s: %w", stateDir, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close state %s: %w", stateDir, cerr))
		}
	}()

	sinkOpts := jsonl.SinkOptions{Sync: f.sync}
	var files []*jsonl.Sink
	defer func() {
		for _, s := range files {
			err = errors.Join(err, s.Close())
		}
	}()
	create := func(what, path string, format jsonl.Format) (*jsonl.Sink, error) {
		s, err := jsonl.CreateSink(path, format, sinkOpts)
		if err != nil {
			return nil, fmt.Errorf("create %s output: %w", what, err)
		}
		files = append(files, s)
		return s, nil
	}
	var out processor.Outputs
	if out.Scores, err = create("scores", f.out, jsonl.Lines); err != nil {
		return err
	}
	out.Trending = jsonl.Discard
	if f.trendingOut != "" {
		if out.Trending, err = create("trending", f.trendingOut, jsonl.Lines); err != nil {
			return err
		}
	}
	if f.creatorsOut != "" {
		if out.Creators, err = create("creators", f.creatorsOut, jsonl.Lines); err != nil {
			return err
		}
	}
	if f.risingOut != "" {
		if out.RisingCreators, err = create("rising creators", f.risingOut, jsonl.Lines); err != nil {
			return err
		}
	}
	if f.deadOut != "" {
		if out.DeadLetters, err = create("dead-letter", f.deadOut, jsonl.DeadLetters); err != nil {
			return err
		}
	} else {
		s := jsonl.NewSink(stderr, "standard error", jsonl.DeadLetters)
		files = append(files, s)
		out.DeadLetters = s
	}

	// A time range: the input is bounded by event time, and outputs of the
	// warm-up are dropped (warmup.go).
	var input processor.Source = src
	var rs *rangeSource
	var lineage string
	var gates [3]*gateSink
	if f.t1 != 0 || f.t2 != 0 {
		rs = newRangeSource(src, f.t1, f.t2, f.cfg.Now+f.cfg.FutureSkew.Milliseconds(), f.cfg.Lateness)
		input = rs
		// A resumed run must have the same range: its outputs so far were
		// gated by it.
		lineage = fmt.Sprintf("range=%d,%d", f.t1, f.t2)
	}
	if f.t1 != 0 {
		out.Scores, gates[0] = newGate(out.Scores, fromTime(f.t1))
		out.Trending, gates[1] = newGate(out.Trending, fromTime(f.t1))
		if out.Creators != nil {
			out.Creators, _ = newGate(out.Creators, fromTime(f.t1))
		}
		if out.RisingCreators != nil {
			out.RisingCreators, _ = newGate(out.RisingCreators, fromTime(f.t1))
		}
		out.DeadLetters, gates[2] = newGate(out.DeadLetters, func(m *processor.Message) bool {
			_, off, ok := deadLetterSource(m)
			start := rs.Start()
			return !ok || (start >= 0 && off >= start)
		})
	}

	eng, err := processor.NewCoordinator(f.cfg, db, out, processor.Topology{
		Partitions: f.partitions, Partitioner: videoPartition, Stream: true,
		Workers: f.workers, Expect: f.partitions, Lineage: lineage,
		WrittenListsOnly: true,
	})
	if err != nil {
		return fmt.Errorf("start engine on state %s: %w", stateDir, err)
	}
	for p := range f.partitions {
		if _, err := eng.Open(int32(p)); err != nil {
			return fmt.Errorf("start engine on state %s: %w", stateDir, err)
		}
	}

	var records atomic.Int64
	runOpts := processor.RunOptions{
		Decoders: f.decoders,
		Progress: func(st processor.Stats) { records.Store(st.Records) },
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if f.progress > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reportProgress(stderr, src, rs, eng.NextOffset(0), &records, f.progress, stop)
		}()
	}
	runErr := processor.Run(ctx, eng, input, runOpts)
	close(stop)
	wg.Wait()

	st := eng.Stats()
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
			if f.stateDir != "" {
				return fmt.Errorf("interrupted after %d records; the state in %s is committed: run the same command to resume", st.Records, f.stateDir)
			}
			return fmt.Errorf("interrupted after %d records (nothing kept: give --state-dir to make a backfill resumable)", st.Records)
		}
		return fmt.Errorf("backfill after %d records: %w", st.Records, runErr)
	}
	elapsed := time.Since(start)
	if gates[0] != nil {
		// Of a range: what was emitted, and what the warm-up held back.
		warm := "every line"
		if s := rs.Start(); s >= 0 {
			warm = fmt.Sprintf("%d lines", s)
		}
		fmt.Fprintf(stderr, "backfill: done: %d records (warm-up: %s before %s), %d applied, %s in all; written: %d scores, %d snapshots, %d dead letters; not written (warm-up): %d scores, %d snapshots, %d dead letters; in %v, %.0f rec/s, peak RSS %d MiB\n",
			st.Records, warm, f.from, st.Applied, deadSummary(st), gates[0].kept, gates[1].kept, gates[2].kept,
			gates[0].dropped, gates[1].dropped, gates[2].dropped,
			elapsed.Round(time.Millisecond), float64(st.Records)/elapsed.Seconds(), peakRSS()>>20)
		return tooManyDead(st, f.maxDeadFraction)
	}
	fmt.Fprintf(stderr, "backfill: done: %d records, %d applied, %s, %d scores, %d snapshots, %d commits in %v, %.0f rec/s, peak RSS %d MiB\n",
		st.Records, st.Applied, deadSummary(st), st.Scores, st.Snapshots, st.Commits,
		elapsed.Round(time.Millisecond), float64(st.Records)/elapsed.Seconds(), peakRSS()>>20)
	return tooManyDead(st, f.maxDeadFraction)
}

// tooManyDead fails a finished backfill whose dead letters exceed max, a
// fraction of its records: a pipeline must not take a run that rejected
// most of its input (a wrong file, a changed format) for a success. The
// outputs are complete all the same.
func tooManyDead(st processor.Stats, max float64) error {
	if st.Records == 0 || float64(st.DeadLetters) <= max*float64(st.Records) {
		return nil
	}
	return fmt.Errorf("%d of %d records (%.1f%%) went to the dead letters, above --max-dead-letter-fraction %g: "+
		"their reasons say what is wrong with the input (%s); the outputs were written all the same",
		st.DeadLetters, st.Records, 100*float64(st.DeadLetters)/float64(st.Records), max, deadSummary(st))
}

// deadSummary says how many dead letters there were, by reason.
func deadSummary(st processor.Stats) string {
	s := fmt.Sprintf("%d dead letters", st.DeadLetters)
	if len(st.DeadByReason) == 0 {
		return s
	}
	reasons := make([]string, 0, len(st.DeadByReason))
	for r := range st.DeadByReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		reasons[i] = fmt.Sprintf("%s %d", r, st.DeadByReason[r])
	}
	return s + " (" + strings.Join(reasons, ", ") + ")"
}

// reportProgress writes a progress line every interval until stop closes:
// the rate over the last interval, and the share done and time left from
// the bytes read when the input's size is known. The source reads ahead of
// the engine, so the bytes the engine has got through are estimated from
// the share of the source's records it has taken (resume is the offset it
// started from: records before it were skipped, not taken). With a time
// range (rs), each line says whether the run is still in its warm-up.
func reportProgress(w io.Writer, src *jsonl.Source, rs *rangeSource, resume int64, records *atomic.Int64, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	start := time.Now()
	last, lastN := start, int64(0)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := records.Load()
			rate := float64(n-lastN) / now.Sub(last).Seconds()
			last, lastN = now, n
			line := fmt.Sprintf("backfill: %d records, %.0f rec/s", n, rate)
			if rs != nil && rs.from != 0 {
				if s := rs.Start(); s < 0 || resume+n < s {
					line = "backfill: warming up, " + line[len("backfill: "):]
				} else {
					line = "backfill: in range, " + line[len("backfill: "):]
				}
			}
			read, total := float64(src.BytesRead()), src.TotalBytes()
			if srcRecords := src.Records(); srcRecords > 0 {
				read *= min(1, float64(resume+n)/float64(srcRecords))
			}
			if total > 0 && read > 0 {
				done := min(read/float64(total), 1)
				eta := time.Duration(float64(now.Sub(start)) * (1 - done) / done)
				line += fmt.Sprintf(", %.1f%% done, ETA %v", 100*done, eta.Round(time.Second))
			} else {
				line += fmt.Sprintf(", %.1f MB read", read/1e6)
			}
			fmt.Fprintln(w, line)
		}
	}
}

// videoPartition names a video's partition as Kafka's default partitioner
// does for a record keyed by the video id, so that input keyed by video
// needs no repartitioning.
func videoPartition(video string, n int) int32 {
	return int32(kafkaio.PartitionOf([]byte(video), n))
}
