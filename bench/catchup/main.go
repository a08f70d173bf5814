// Command catchup measures the live service catching up on the real
// broker, and its peak memory (issue 9: catching up on 2M likes in 8
// partitions stays within the memory budget, and its likes/s stand next
// to B2). Against KAFKA_BROKERS it creates a topic of its own with
// -partitions partitions and preloads -events generated likes keyed by
// video (package gen, as bench/b2, at full speed), then, in the same run:
//
//  1. a plain consumer, the ceiling: every partition fetched from the
//     earliest offset and each record decoded, one goroutine a partition;
//  2. `virality run` built as of -rev, started as a child process with a
//     group, topics and a state directory of its own and -run-args (none by
//     default: the default --memory-budget), from the earliest offset.
//     /metrics is polled until it has applied every like (or sent it to
//     the dead-letter topic): taken from the input, weighed by the account
//     stage of its user's partition, and applied by the engine of its
//     video's, through the internal topics; /proc/PID/status (VmRSS, VmHWM)
//     is read every 200 ms.
//
// It prints one line per figure: the likes/s of both (the service's from
// its start to the last like applied, start-up and group join included;
// when it had taken every like from the input beside it), their ratio, the
// service's peak RSS (VmHWM), and a judgement against the targets: a ratio
// of at least 0.7, and a peak RSS of at most the 512 MiB and
// within the service's memory budget (512 MiB unless -run-args sets
// --memory-budget). When -limit passes before the service has applied
// every like, the figures are those of the likes it applied by then, and
// the ratio target counts as missed. It exits 1 when a target is missed, 2 when the
// run itself failed.
//
//	set -a; . .cache/kafka/env; set +a
//	go run ./bench/catchup
//	go run ./bench/catchup -run-args '--memory-budget 0'   # no budget
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/viralityhq/virality/bench/internal/live"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
)

const (
	defaultBudget = 512 << 20 // virality run's default --memory-budget
	targetRSS     = 512 << 20 // the peak RSS, the budget it asks for by default
	targetRatio   = 0.7
	sampleEvery   = 200 * time.Millisecond
	// pollEvery is how often /metrics is read: often enough to time 2M
	// likes to 0.2%, seldom enough not to cost the service (every 50 ms,
	// its handler took 1.4% of the service's CPU).
	pollEvery = 200 * time.Millisecond
)

type options struct {
	brokers    string
	events     int
	partitions int
	videos     int
	users      int
	rev        string
	runArgs    string
	limit      time.Duration
	keep       bool
	// Profiles of the run to write, and when.
	cpuProfile, heapProfile string
	trace                   string
	profileSeconds          int
	profileAfter            time.Duration
	changelog               bool // print the changelog's bytes by kind of state
}

// result holds the figures of one run.
type result struct {
	preloaded int64
	preload   time.Duration
	plain     float64 // likes/s
	rev       string
	applied   int64         // likes the service applied, ignored or dead-lettered (all of them, unless timedOut)
	caughtUp  time.Duration // from the child's start to its last like applied, or to -limit
	tookAll   time.Duration // from the child's start to its last like taken from the input (0: not all)
	timedOut  bool          // -limit passed before it applied every like
	rate      float64       // likes/s applied
	peak      int64         // VmHWM, bytes
	maxRSS    int64         // largest VmRSS sample, bytes
	endRSS    int64         // VmRSS when caught up, bytes
	heap      int64         // go_memstats_heap_inuse_bytes when caught up
	steal     float64       // share of the machine's CPU its hypervisor stole while the service caught up (-1: unknown)
	busy      float64       // share of the machine's CPU busy meanwhile
	allocated float64       // bytes the service allocated from its start until caught up (go_memstats_alloc_bytes_total; -1: unknown)
	gcs       float64       // its garbage collections meanwhile
	written   [3]float64    // bytes its state store wrote meanwhile: to the log, flushed, compacted (virality_state_written_bytes_total)
	cpu       float64       // its CPU seconds (user and system) meanwhile; -1: unknown
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka brokers (default: $KAFKA_BROKERS)")
	flag.IntVar(&o.events, "events", 2_000_000, "likes to preload")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of the input topic")
	flag.IntVar(&o.videos, "videos", 0, "videos of the generated catalogue (0: events/10, as bench/b2)")
	flag.IntVar(&o.users, "users", 0, "users of the generated traffic (0: events/2, as bench/b2)")
	flag.StringVar(&o.rev, "rev", "HEAD", "build virality run as of this `COMMIT`")
	flag.StringVar(&o.runArgs, "run-args", "", "more flags for virality run, space-separated (e.g. '--memory-budget 0')")
	flag.DurationVar(&o.limit, "limit", 20*time.Minute, "give up when virality run has not caught up within this long")
	flag.BoolVar(&o.keep, "keep", false, "keep the topics, the state directory and the log")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of virality run to `FILE`: -profile-seconds from -profile-after")
	flag.StringVar(&o.trace, "trace", "", "write an execution trace of virality run to `FILE`: -profile-seconds from -profile-after\n(go tool trace; or go tool trace -pprof=sync|sched FILE for where its goroutines waited)")
	flag.StringVar(&o.heapProfile, "heapprofile", "", "write a heap profile of virality run to `FILE`, taken -profile-seconds after its start")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 60, "how long the CPU profile runs, and when the heap profile is taken")
	flag.DurationVar(&o.profileAfter, "profile-after", 0, "start the CPU profile this long after virality run starts")
	flag.BoolVar(&o.changelog, "changelog", false, "once caught up, read the state changelog topic whole and print its bytes by kind of state")
	flag.Parse()
	budget, err := budgetOf(o.runArgs)
	if err != nil || o.events <= 0 || o.partitions <= 0 {
		fmt.Fprintln(os.Stderr, "catchup: want -events > 0, -partitions > 0 and a valid --memory-budget in -run-args:", err)
		os.Exit(2)
	}
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "catchup:", err)
		os.Exit(2)
	}
	if !report(r, o, budget) {
		os.Exit(1)
	}
}

func run(o options) (r result, err error) {
	b, err := live.Setup("catchup", o.brokers, o.rev)
	if err != nil {
		return r, err
	}
	defer func() { b.Done(o.keep || err != nil) }()
	kc, dir, bin := b.Kafka, b.Dir, b.Bin
	r.rev = live.Revision(bin)

	suffix := fmt.Sprintf("-catchup-%d", time.Now().Unix())
	topic, group := "likes"+suffix, "virality"+suffix
	outs := []string{"video-scores" + suffix, "trending" + suffix, "likes.dlq" + suffix,
		"creator-scores" + suffix, "rising-creators" + suffix}
	ctx := context.Background()
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: topic, Partitions: o.partitions}}); err != nil {
		return r, err
	}
	if !o.keep {
		defer live.DeleteTopics(kc, append(outs, topic, group+"-likes-by-user", group+"-likes-by-video", group+"-state-changelog", group+"-trending-partials")...)
	}

	cfg := gen.DefaultConfig()
	cfg.Events = o.events
	cfg.Videos, cfg.Users = o.videos, o.users
	if cfg.Videos == 0 {
		cfg.Videos = max(o.events/10, 1000)
	}
	if cfg.Users == 0 {
		cfg.Users = max(o.events/2, 50_000)
	}
	begin := time.Now()
	if r.preloaded, err = live.Preload(ctx, kc, topic, cfg); err != nil {
		return r, err
	}
	r.preload = time.Since(begin)
	fmt.Fprintf(os.Stderr, "catchup: preloaded %d likes into %s in %.1f s\n", r.preloaded, topic, r.preload.Seconds())

	begin = time.Now()
	read, err := live.ReadAll(ctx, kc, topic, o.partitions)
	if err != nil {
		return r, err
	}
	r.plain = float64(read) / time.Since(begin).Seconds()
	if read != r.preloaded {
		return r, fmt.Errorf("the plain consumer read %d likes, %d were preloaded", read, r.preloaded)
	}
	fmt.Fprintf(os.Stderr, "catchup: plain consumer %.0f likes/s\n", r.plain)

	state, logPath := filepath.Join(dir, "state"), filepath.Join(dir, "run.log")
	args := append([]string{"run", "--brokers", strings.Join(kc.Brokers, ","), "--group", group,
		"--input-topic", topic, "--scores-topic", outs[0], "--trending-topic", outs[1], "--dead-letter-topic", outs[2],
		"--creator-scores-topic", outs[3], "--rising-creators-topic", outs[4],
		"--start-from", "earliest", "--state-dir", state, "--http-addr", "127.0.0.1:0"}, strings.Fields(o.runArgs)...)
	fmt.Fprintf(os.Stderr, "catchup: virality %s at %s; log %s\n", strings.Join(args, " "), r.rev, logPath)
	host0, hostErr := live.ReadHostCPU()
	begin = time.Now()
	in, err := live.Start(bin, args, logPath, nil)
	if err != nil {
		return r, err
	}
	defer func() {
		if serr := in.Stop(30 * time.Second); serr != nil && err == nil {
			err = fmt.Errorf("stopping virality run: %w (log: %s)", serr, logPath)
		}
	}()
	mem := sampleMemory(in.Pid())
	profiled := profile(in, o)
	r.applied, r.tookAll, err = waitApplied(in, r.preloaded, begin, o.limit)
	r.caughtUp = time.Since(begin)
	r.rate = float64(r.applied) / r.caughtUp.Seconds()
	r.steal = -1
	if host1, err := live.ReadHostCPU(); err == nil && hostErr == nil {
		r.steal, r.busy = host1.Shares(host0)
	}
	if errors.Is(err, errTimedOut) {
		r.timedOut, err = true, nil
	}
	r.allocated, r.cpu = -1, -1
	if m, merr := in.Metrics(); merr == nil {
		r.cpu = m["process_cpu_seconds_total"]
		r.heap = int64(m["go_memstats_heap_inuse_bytes"])
		r.allocated, r.gcs = m["go_memstats_alloc_bytes_total"], m["go_gc_duration_seconds_count"]
		for i, by := range []string{"wal", "flush", "compaction"} {
			r.written[i] = m[`virality_state_written_bytes_total{by="`+by+`"}`]
		}
	}
	r.endRSS, r.peak, _ = live.Memory(in.Pid())
	r.maxRSS, r.peak = mem.stop(r.peak)
	if perr := <-profiled; perr != nil {
		fmt.Fprintln(os.Stderr, "catchup: profile:", perr)
	}
	if err != nil {
		return r, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	if o.changelog {
		sizes, err := changelogSizes(ctx, kc, group+"-state-changelog", o.partitions)
		if err != nil {
			return r, err
		}
		printChangelog(os.Stdout, sizes, r.applied)
	}
	return r, nil
}

// profile takes the CPU and heap profiles and the trace asked for, on its own
// goroutine; the channel gives its error once done.
func profile(in *live.Instance, o options) <-chan error {
	done := make(chan error, 1)
	go func() {
		var cpuErr, traceErr, heapErr error
		var wg sync.WaitGroup
		// take takes profile name into path, -profile-seconds long from
		// -profile-after.
		take := func(name, path string, err *error) {
			if path == "" {
				return
			}
			wg.Go(func() {
				select {
				case <-time.After(o.profileAfter):
					*err = in.Profile(name, o.profileSeconds, path)
				case <-in.Exited():
				}
			})
		}
		take("profile", o.cpuProfile, &cpuErr)
		take("trace", o.trace, &traceErr)
		if o.heapProfile != "" {
			select {
			case <-time.After(time.Duration(o.profileSeconds) * time.Second):
				heapErr = in.Profile("heap", 0, o.heapProfile)
			case <-in.Exited():
			}
		}
		wg.Wait()
		done <- errors.Join(cpuErr, traceErr, heapErr)
	}()
	return done
}

var errTimedOut = errors.New("catchup: -limit passed")

// waitApplied polls the instance's /metrics until it has applied or
// dead-lettered (or ignored) n likes or limit has passed since begin (errTimedOut), and
// returns the likes it applied and when, since begin, it had taken all n
// from the input (0: it had not). It shows the progress every 10 s.
func waitApplied(in *live.Instance, n int64, begin time.Time, limit time.Duration) (applied int64, tookAll time.Duration, err error) {
	var taken, weighing, reorder int64
	var commits, commitSecs, shownCommits, shownSecs, heap, heapGoal float64
	shown := begin
	for {
		if m, err := in.Metrics(); err == nil {
			weighing, reorder = int64(m[`virality_events_held{where="weighing"}`]), int64(m[`virality_events_held{where="reorder"}`])
			taken = int64(m["virality_events_in_total"])
			commits, commitSecs = m["virality_batch_commit_seconds_count"], m["virality_batch_commit_seconds_sum"]
			heap, heapGoal = m["go_memstats_heap_inuse_bytes"], m["go_memstats_next_gc_bytes"]
			// Every like taken ends applied, ignored (a repeated like,
			// a stray unlike) or dead-lettered.
			applied = int64(m["virality_events_applied_total"] + m["virality_events_ignored_total"] + m["virality_dead_letters_total"])
			if taken >= n && tookAll == 0 {
				tookAll = time.Since(begin)
			}
			if applied >= n {
				return applied, tookAll, nil
			}
		}
		if time.Since(shown) >= 10*time.Second {
			shown = time.Now()
			rss, peak, _ := live.Memory(in.Pid())
			perCommit := 0.0
			if commits > shownCommits {
				perCommit = (commitSecs - shownSecs) / (commits - shownCommits)
			}
			fmt.Fprintf(os.Stderr, "catchup: %4.0f s: %d of %d likes taken, %d applied (held: %d weighing, %d reordering); %.0f commits of %.2f s on average since the last line; RSS %s, peak %s; Go heap in use %s, next collection at %s\n",
				time.Since(begin).Seconds(), taken, n, applied, weighing, reorder, commits-shownCommits, perCommit, mib(rss), mib(peak), mib(int64(heap)), mib(int64(heapGoal)))
			shownCommits, shownSecs = commits, commitSecs
		}
		select {
		case <-in.Exited():
			return applied, tookAll, errors.New("virality run exited before applying every like")
		case <-time.After(pollEvery):
		}
		if time.Since(begin) > limit {
			return applied, tookAll, errTimedOut
		}
	}
}

// sampler reads a process's memory every sampleEvery until stopped.
type sampler struct {
	quit chan struct{}
	done chan struct{}
	max  int64 // largest VmRSS, bytes
	peak int64 // VmHWM, bytes
}

func sampleMemory(pid int) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			if rss, peak, err := live.Memory(pid); err == nil {
				s.max, s.peak = max(s.max, rss), max(s.peak, peak)
			}
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the largest RSS sampled and the
// peak, the larger of the sampled VmHWM and last (a final reading).
func (s *sampler) stop(last int64) (maxRSS, peak int64) {
	close(s.quit)
	<-s.done
	return s.max, max(s.peak, last)
}

// budgetOf returns the --memory-budget that runArgs give virality run, in
// bytes (0: none), or the default.
func budgetOf(runArgs string) (int64, error) {
	f := strings.Fields(runArgs)
	b := int64(defaultBudget)
	for i := 0; i < len(f); i++ {
		name, value, ok := strings.Cut(strings.TrimLeft(f[i], "-"), "=")
		if name != "memory-budget" || !strings.HasPrefix(f[i], "-") {
			continue
		}
		if !ok {
			if i+1 == len(f) {
				return 0, errors.New("--memory-budget without a value")
			}
			i++
			value = f[i]
		}
		n, err := parseBytes(value)
		if err != nil {
			return 0, err
		}
		b = n
	}
	return b, nil
}

// parseBytes reads a size as virality run's --memory-budget does: 0, or a
// number with a unit (512MiB, 2GiB, 1G).
func parseBytes(v string) (int64, error) {
	if v == "0" {
		return 0, nil
	}
	i := len(v)
	for i > 0 && (v[i-1] < '0' || v[i-1] > '9') {
		i--
	}
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(v[i:], "iB"), "B"))
	shift, ok := map[string]uint{"K": 10, "KI": 10, "M": 20, "G": 30, "T": 40}[unit]
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("--memory-budget %q: give a size with its unit, e.g. 512MiB", v)
	}
	return n << shift, nil
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// report prints one line per figure and the judgement, and returns
// whether both targets are met.
func report(r result, o options, budget int64) bool {
	fmt.Printf("catchup events: %d in %d partitions (real broker), preloaded in %.1f s (%.0f likes/s)\n",
		r.preloaded, o.partitions, r.preload.Seconds(), float64(r.preloaded)/r.preload.Seconds())
	fmt.Printf("catchup plain consumer (fetch + decode): %.0f events/s\n", r.plain)
	args := o.runArgs
	if args == "" {
		args = "defaults"
	}
	applied := fmt.Sprintf("%d in %.1f s from its start", r.applied, r.caughtUp.Seconds())
	if r.timedOut {
		applied = fmt.Sprintf("did not catch up: %d of %d likes in the -limit of %v", r.applied, r.preloaded, o.limit)
	}
	if r.tookAll > 0 {
		applied += fmt.Sprintf("; every like taken from the input after %.1f s", r.tookAll.Seconds())
	}
	fmt.Printf("catchup virality run at %s (%s): %.0f events/s applied (%s), ratio to the plain consumer %.3f (target >= %.1f)\n",
		r.rev, args, r.rate, applied, r.rate/r.plain, targetRatio)
	if r.steal >= 0 {
		fmt.Printf("catchup host: %.0f%% of the machine's CPU time stolen by its hypervisor while the service caught up\n", 100*r.steal)
		if r.cpu > 0 {
			// The service shares the machine with the broker: what the
			// broker (and the bench) took is what the service did not get.
			busy := r.busy * float64(runtime.NumCPU()) * r.caughtUp.Seconds()
			fmt.Printf("catchup host: %.0f%% busy, %.1f CPU s of %d cores, of which virality run %.1f s and the rest (the broker, this bench) %.1f s\n",
				100*r.busy, busy, runtime.NumCPU(), r.cpu, max(busy-r.cpu, 0))
		}
	}
	if r.allocated >= 0 && r.applied > 0 {
		// Unlike its likes/s, these do not move with what the host steals.
		fmt.Printf("catchup virality run allocated %.0f bytes per like, %.0f garbage collections\n", r.allocated/float64(r.applied), r.gcs)
		if r.cpu > 0 {
			fmt.Printf("catchup virality run used %.1f CPU s (user and system), %.1f us a like\n", r.cpu, 1e6*r.cpu/float64(r.applied))
		}
		fmt.Printf("catchup virality run's state store wrote %s to its log, flushed %s and compacted %s\n", mib(int64(r.written[0])), mib(int64(r.written[1])), mib(int64(r.written[2])))
	}
	within := "no budget"
	if budget > 0 {
		within = "within its memory budget of " + mib(budget) + ": no"
		if r.peak <= budget {
			within = "within its memory budget of " + mib(budget) + ": yes"
		}
	}
	if gml := os.Getenv("GOMEMLIMIT"); gml != "" {
		within += ", GOMEMLIMIT=" + gml + " in the environment"
	}
	fmt.Printf("catchup virality run peak RSS: %s (VmHWM; target at most %s; %s); largest sample %s, %s when caught up (Go heap in use %s)\n",
		mib(r.peak), mib(targetRSS), within, mib(r.maxRSS), mib(r.endRSS), mib(r.heap))
	ratioOK, memOK := !r.timedOut && r.rate/r.plain >= targetRatio, r.peak <= targetRSS && (budget == 0 || r.peak <= budget)
	verdict := "met"
	if !ratioOK || !memOK {
		var missed []string
		if !ratioOK {
			missed = append(missed, "ratio")
		}
		if !memOK {
			missed = append(missed, "peak RSS")
		}
		verdict = "missed (" + strings.Join(missed, ", ") + ")"
	}
	fmt.Printf("catchup targets (ratio >= %.1f, peak RSS <= %s and within the budget): %s\n", targetRatio, mib(targetRSS), verdict)
	return ratioOK && memOK
}
