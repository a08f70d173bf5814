// Command b3 measures B3, the latency of the live service: a steady load
// of generated likes (20,000/s by default) for a minute, with the service
// emitting on every change; every 50 ms a probe like for a video of its
// own is appended, and the time from its acknowledged append to the first
// score record of its video on video-scores is measured, and to its first
// record on each internal topic it passes (-hops: where the time goes).
//
// The load arrives as a live stream does: each generated like is appended
// when the wall clock reaches its time, and its ts is that time less a
// client delay of up to the generator's jitter (2 s); a probe's ts is
// stamped the same way (-fresh-probes: no delay, the worst case, since a
// like is applied once every input partition has passed its time).
//
//	go run ./bench/b3 -rate 20000 -duration 60s
//	go run ./bench/b3 -reorder 0     # scores as soon as applied, in arrival order
//	go run ./bench/b3 -reorder 0 -flush-interval 5ms -brokers 127.0.0.1:9092
//	go run ./bench/b3 -reorder 0 -broker-process -rev HEAD   # `virality run` as deployed
//
// By default the service runs in this program's process, as a library,
// beside the load's generator and the watchers of its outputs, whose
// allocations its collector then marks too. With -rev it runs as
// `virality run`, built at that commit, in a process of its own with the
// defaults a user gets (the memory budget among them), and b3 also reports
// its peak RSS and its CPU over the load (steadier than the tail on a
// shared machine, to compare revisions by); -cpuprofile and -trace then
// profile that process. -probe-log writes each probe's append time and
// latencies, to find when the slow ones were appended (the likes
// appended just after a 10 s tick were most of the tail once). b3 also
// reports the share of the machine's CPU its hypervisor stole over the
// load: on a shared host, runs with much steal have a long tail whatever
// the code.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/bench/internal/live"
	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
)

// options are b3's flags.
type options struct {
	rate           float64
	duration       time.Duration
	reorder, flush time.Duration
	commit         time.Duration
	fresh          bool
	brokers        string
	brokerProcess  bool
	hops           bool
	cpuprofile     string
	allocprofile   string
	trace          string
	rev            string
	runArgs        string
	probeLog       string
}

func main() {
	var o options
	flag.Float64Var(&o.rate, "rate", 20_000, "offered likes per second")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long to offer the load")
	flag.DurationVar(&o.reorder, "reorder", service.DefaultConfig().Engine.Reorder, "the service's --reorder: a score comes at least this long after its like (0: at once, in arrival order)")
	flag.DurationVar(&o.flush, "flush-interval", service.DefaultConfig().FlushInterval, "the service's --flush-interval: how often emitted records are sent between commits")
	flag.DurationVar(&o.commit, "commit-interval", service.DefaultConfig().CommitInterval, "the service's --commit-interval")
	flag.BoolVar(&o.fresh, "fresh-probes", false, "stamp each probe with the time of its append, not the load's client delay: it then waits until every input partition has passed its time")
	flag.StringVar(&o.brokers, "brokers", "", "a Kafka cluster to run against, as HOST:PORT,... (default: an embedded broker in this process); b3 creates topics and a group of its own there")
	flag.BoolVar(&o.brokerProcess, "broker-process", false, "run the embedded broker in a process of its own (this program run again), as a broker runs beside the service, rather than in the service's heap")
	flag.BoolVar(&o.hops, "hops", false, "also watch the two internal topics a probe passes, to say where its time goes (this program then reads every like twice more, on the cores the service uses)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the load's minute to `FILE` (of the service's process with -rev)")
	flag.StringVar(&o.allocprofile, "allocprofile", "", "with -rev, write what the service allocated over the load to `FILE` (go tool pprof -sample_index=alloc_space)")
	flag.StringVar(&o.trace, "trace", "", "with -rev, write an execution trace of the service over the load's first 20 seconds to `FILE` (for go tool trace)")
	flag.StringVar(&o.rev, "rev", "", "run the service as `virality run` built at this commit (e.g. HEAD), in a process of its own, rather than in this one")
	flag.StringVar(&o.runArgs, "run-args", "", "with -rev, more flags for `virality run`, space-separated")
	flag.StringVar(&o.probeLog, "probe-log", "", "write each probe to `FILE`: its append (Unix ms) and its time to each topic watched (ms, -1 if not seen), to line the slow ones up with the service's log")
	serve := flag.Bool("serve-broker", false, "(internal) run an embedded broker, print its address, and stop when standard input closes")
	flag.Parse()
	if *serve {
		if err := serveBroker(); err != nil {
			fmt.Fprintln(os.Stderr, "b3 broker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "b3:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	cfg := service.DefaultConfig()
	if o.brokerProcess && o.brokers == "" {
		addr, stop, err := startBrokerProcess()
		if err != nil {
			return err
		}
		defer stop()
		cfg.Kafka = kafkaio.Config{Brokers: []string{addr}}
	} else if o.brokers == "" {
		emb, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer emb.Close()
		cfg.Kafka = emb.Config()
	} else {
		// Topics and a group of this run's own, beside earlier runs'.
		cfg.Kafka = kafkaio.Config{Brokers: strings.Split(o.brokers, ",")}
		name := fmt.Sprintf("b3-%d", time.Now().Unix())
		cfg.Group = name
		cfg.InputTopic = name + "-likes"
		cfg.ScoresTopic = name + "-video-scores"
		cfg.TrendingTopic = name + "-trending"
		cfg.DeadLetterTopic = name + "-likes.dlq"
		cfg.CreatorScoresTopic = name + "-creator-scores"
		cfg.RisingCreatorsTopic = name + "-rising-creators"
	}
	kc := cfg.Kafka
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: cfg.InputTopic, Partitions: 8}}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "virality-b3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Engine.EmitEveryChange = true
	cfg.Engine.Reorder = o.reorder
	cfg.FlushInterval = o.flush
	cfg.CommitInterval = o.commit
	var svc *service.Service
	var inst *live.Instance
	if o.rev != "" {
		if inst, err = startRun(o, cfg, dir); err != nil {
			return err
		}
	} else {
		db, err := store.Open(dir, store.DefaultOptions())
		if err != nil {
			return err
		}
		defer db.Close()
		if svc, err = service.New(cfg, db, nil, zerolog.Nop()); err != nil {
			return err
		}
	}
	sctx, stop := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	if svc != nil {
		go func() { svcDone <- svc.Run(sctx) }()
	}
	stopped := false
	stopService := func() error {
		if stopped {
			return nil
		}
		stopped = true
		if inst != nil {
			return inst.Stop(time.Minute)
		}
		stop()
		return <-svcDone
	}
	defer stopService() // before the state closes
	ready := func() bool {
		if inst != nil {
			return inst.Ready()
		}
		ok, _ := svc.Ready()
		return ok
	}
	for !ready() {
		time.Sleep(50 * time.Millisecond)
	}

	// Watch video-scores for the probes' first records, and with -hops
	// the two internal topics a probe passes on the way, to say where its
	// time goes.
	var mu sync.Mutex
	appended := map[string]time.Time{}
	topics := []string{cfg.ScoresTopic}
	if o.hops {
		topics = []string{cfg.ByUserTopic(), cfg.RepartitionTopic(), cfg.ScoresTopic}
	}
	seen := map[string]map[string]time.Time{} // by topic, then probe
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var watchers sync.WaitGroup
	for _, topic := range topics {
		seen[topic] = map[string]time.Time{}
		n, err := waitPartitions(ctx, kc, topic)
		if err != nil {
			return err
		}
		for p := range n {
			watchers.Go(func() {
				src, err := kafkaio.NewPartitionSource(kc, topic, p, kafkaio.EndOffset)
				if err != nil {
					return
				}
				defer src.Close()
				src.MaxWait = 10 * time.Millisecond
				for wctx.Err() == nil {
					recs, err := src.Next(wctx, nil)
					if err != nil {
						return
					}
					now := time.Now()
					for _, r := range recs {
						id, ok := probeID(r.Value)
						if !ok {
							continue
						}
						mu.Lock()
						if _, ok := seen[topic][id]; !ok {
							seen[topic][id] = now
						}
						mu.Unlock()
					}
				}
			})
		}
	}

	// The load: generated likes appended at their event time (before
	// jitter) on the wall clock, as a live stream arrives. The generator's
	// event time starts once the set-up below is done, so that the load's
	// event times do not trail the probes'.
	// The load goes on a little after the last probe, which would
	// otherwise wait for the idle timeout to pass its time.
	loadFor := o.duration + 3*time.Second
	gcfg := gen.DefaultConfig()
	gcfg.Start = time.Now().Add(3 * time.Second).Truncate(time.Millisecond).UTC()
	gcfg.Duration = loadFor + time.Minute
	gcfg.Events = int(o.rate * gcfg.Duration.Seconds())
	gcfg.Videos = 100_000
	// People like at most about once a minute.
	gcfg.Users = max(1_000_000, 3*gcfg.Events/int(max(gcfg.Duration.Minutes(), 1)))
	gcfg.Bursts, gcfg.Campaigns, gcfg.FarmAccounts = 0, 0, 0
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}
	load, err := kafkaio.NewProducer(kc, cfg.InputTopic)
	if err != nil {
		return err
	}
	probes, err := kafkaio.NewProducer(kc, cfg.InputTopic)
	if err != nil {
		return err
	}
	if d := time.Until(gcfg.Start); d > 0 {
		time.Sleep(d)
	}
	// The service's CPU over the load, from its own metrics: steadier
	// than the tail on a shared machine, to compare revisions by.
	const misses = `virality_state_block_cache_lookups_total{result="miss"}`
	// Bytes allocated and collections over the load: unlike its CPU
	// seconds, they do not move with the CPU the host steals.
	const allocs, gcs = "go_memstats_alloc_bytes_total", "go_gc_duration_seconds_count"
	var cpu0, miss0, alloc0, gc0 float64
	host0, hostErr := live.ReadHostCPU()
	if inst != nil {
		if m, err := inst.Metrics(); err == nil {
			cpu0, miss0, alloc0, gc0 = m["process_cpu_seconds_total"], m[misses], m[allocs], m[gcs]
		}
	}
	var profiled chan error
	if o.cpuprofile != "" && inst != nil {
		profiled = make(chan error, 1)
		go func() { profiled <- inst.Profile("profile", int(o.duration.Seconds()), o.cpuprofile) }()
	}
	var allocated chan error
	if o.allocprofile != "" && inst != nil {
		allocated = make(chan error, 1)
		go func() { allocated <- inst.Profile("allocs", int(o.duration.Seconds()), o.allocprofile) }()
	}
	var traced chan error
	if o.trace != "" && inst != nil {
		traced = make(chan error, 1)
		go func() { traced <- inst.Profile("trace", min(20, int(o.duration.Seconds())), o.trace) }()
	}
	if o.cpuprofile != "" && inst == nil {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	begin := time.Now()
	var offered atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ev event.Event
		// An event is appended once the wall clock reaches its event time
		// and every earlier event's: the generator makes them in order of
		// arrival, each ts moved back by up to its jitter.
		var due int64
		for time.Since(begin) < loadFor {
			line, ts, ok := g.Next(nil)
			if !ok {
				return
			}
			due = max(due, ts)
			if d := time.Until(time.UnixMilli(due)); d > time.Millisecond {
				_ = load.Flush(ctx)
				time.Sleep(d)
			}
			var key []byte
			if event.Decode(line, 0, &ev) == nil {
				key = []byte(ev.VideoID)
			}
			_ = load.Produce(ctx, key, line, time.UnixMilli(ts))
			offered.Add(1)
		}
		_ = load.Flush(ctx)
	}()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; time.Since(begin) < o.duration; i++ {
		id := fmt.Sprintf("probe-%d", i)
		// A probe is a like as the load's are: stamped by its client up to
		// the generator's jitter before it reaches the broker.
		ts := time.Now().UnixMilli()
		if !o.fresh {
			ts -= rnd.Int64N(gcfg.Jitter.Milliseconds() + 1)
		}
		v := fmt.Sprintf(`{"video_id":%q,"user_id":"probe","ts":%d}`, id, ts)
		if err := probes.Produce(ctx, []byte(id), []byte(v), time.Now()); err != nil {
			return err
		}
		if err := probes.Flush(ctx); err != nil {
			return err
		}
		mu.Lock()
		appended[id] = time.Now()
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	stopWatch()
	watchers.Wait()
	var peak int64
	cpu, miss, alloc, gc := -1.0, -1.0, -1.0, -1.0
	host1, err := live.ReadHostCPU()
	if hostErr == nil {
		hostErr = err
	}
	if inst != nil {
		_, peak, _ = live.Memory(inst.Pid())
		if m, err := inst.Metrics(); err == nil {
			cpu, miss = m["process_cpu_seconds_total"]-cpu0, m[misses]-miss0
			alloc, gc = m[allocs]-alloc0, m[gcs]-gc0
		}
	}
	if traced != nil {
		if err := <-traced; err != nil {
			return err
		}
	}
	if allocated != nil {
		if err := <-allocated; err != nil {
			return err
		}
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return fmt.Errorf("profile of the service: %w", err)
		}
	}
	if err := stopService(); err != nil {
		return err
	}
	_ = load.Close()
	_ = probes.Close()

	mu.Lock()
	defer mu.Unlock()
	// The time from a probe's append to its first record on each topic.
	since := func(topic string) []time.Duration {
		var ds []time.Duration
		for id, t := range seen[topic] {
			if a, ok := appended[id]; ok {
				ds = append(ds, t.Sub(a))
			}
		}
		slices.Sort(ds)
		return ds
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
	}
	// Every probe goes through the by-user topic; through the by-video
	// topic only those whose video's partition is not their user's.
	for _, topic := range topics[:len(topics)-1] {
		if ds := since(topic); len(ds) > 0 {
			fmt.Printf("B3 to %s: %d probes, p50 %v, p99 %v\n", topic, len(ds), pct(ds, 0.5), pct(ds, 0.99))
		}
	}
	if o.probeLog != "" {
		if err := writeProbeLog(o.probeLog, appended, seen, topics); err != nil {
			return err
		}
	}
	latencies := since(cfg.ScoresTopic)
	el := time.Since(begin)
	fmt.Printf("B3 offered load: %.0f likes/s for %v, probes in the first %v (achieved %.0f/s)\n", o.rate, loadFor, o.duration, float64(offered.Load())/min(el, loadFor).Seconds())
	fmt.Printf("B3 probes: %d appended, %d seen on video-scores\n", len(appended), len(latencies))
	if len(latencies) > 0 {
		fmt.Printf("B3 latency p50: %v, p99: %v, max: %v (target p99 <= 100ms)\n",
			pct(latencies, 0.50), pct(latencies, 0.99), latencies[len(latencies)-1].Round(time.Millisecond))
		// The p99 of a minute's 1,200 probes is its 12th slowest: these
		// say more from run to run.
		over := len(latencies) - sort.Search(len(latencies), func(i int) bool { return latencies[i] > 100*time.Millisecond })
		fmt.Printf("B3 latency p90: %v, p95: %v, over 100ms: %d of %d (%.1f%%)\n", pct(latencies, 0.90), pct(latencies, 0.95),
			over, len(latencies), 100*float64(over)/float64(len(latencies)))
	}
	if inst != nil {
		fmt.Printf("B3 service: virality run at %s, peak RSS %d MiB, CPU %.1f s over the load (%.1f ms per 1,000 likes), %.0f blocks of state read from its files\n",
			live.Revision(inst.Cmd.Path), peak>>20, cpu, 1e6*cpu/float64(offered.Load()), miss)
		fmt.Printf("B3 service: %.0f bytes allocated per like, %.0f collections over the load\n", alloc/float64(offered.Load()), gc)
	}
	if hostErr == nil {
		steal, busy := host1.Shares(host0)
		fmt.Printf("B3 host: %.0f%% of the machine's CPU time stolen by its hypervisor over the load, %.0f%% busy (a tail from a busy host is not the code's)\n", 100*steal, 100*busy)
	}
	return nil
}

// writeProbeLog writes one line for each probe appended, in the order
// of their appends: the append's Unix time in milliseconds, then the
// milliseconds from it to the probe's first record on each topic (-1
// where it was not seen).
func writeProbeLog(path string, appended map[string]time.Time, seen map[string]map[string]time.Time, topics []string) error {
	ids := slices.SortedFunc(maps.Keys(appended), func(a, b string) int { return appended[a].Compare(appended[b]) })
	var b bytes.Buffer
	fmt.Fprintf(&b, "# append_unix_ms")
	for _, t := range topics {
		fmt.Fprintf(&b, " %s_ms", t)
	}
	b.WriteByte('\n')
	for _, id := range ids {
		a := appended[id]
		fmt.Fprintf(&b, "%d", a.UnixMilli())
		for _, t := range topics {
			d := int64(-1)
			if s, ok := seen[t][id]; ok {
				d = s.Sub(a).Milliseconds()
			}
			fmt.Fprintf(&b, " %d", d)
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// startRun builds `virality run` at o.rev into dir and starts it on
// cfg's brokers, topics and settings, with its state in dir.
func startRun(o options, cfg service.Config, dir string) (*live.Instance, error) {
	bin, err := live.Build(dir, o.rev)
	if err != nil {
		return nil, err
	}
	args := []string{"run",
		"--brokers", strings.Join(cfg.Kafka.Brokers, ","),
		"--group", cfg.Group,
		"--input-topic", cfg.InputTopic,
		"--scores-topic", cfg.ScoresTopic,
		"--trending-topic", cfg.TrendingTopic,
		"--dead-letter-topic", cfg.DeadLetterTopic,
		"--creator-scores-topic", cfg.CreatorScoresTopic,
		"--rising-creators-topic", cfg.RisingCreatorsTopic,
		"--state-dir", filepath.Join(dir, "state"),
		"--http-addr", "127.0.0.1:0",
		"--emit-every-change",
		"--reorder", o.reorder.String(),
		"--flush-interval", o.flush.String(),
		"--commit-interval", o.commit.String(),
	}
	args = append(args, strings.Fields(o.runArgs)...)
	return live.Start(bin, args, filepath.Join(dir, "run.log"), nil)
}

// probeID finds the probe's video id in a score record (JSON) or in a
// forwarded like (the event in event.AppendBinary's encoding).
func probeID(v []byte) (string, bool) {
	if len(v) > 0 && v[0] != '{' {
		var ev event.Event
		if event.DecodeBinary(v, &ev) != nil || !strings.HasPrefix(ev.VideoID, "probe-") {
			return "", false
		}
		return ev.VideoID, true
	}
	i := bytes.Index(v, []byte(`"probe-`))
	if i < 0 {
		return "", false
	}
	v = v[i+1:]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return "", false
	}
	return string(v[:j]), true
}

// serveBroker runs an embedded broker for startBrokerProcess.
func serveBroker() error {
	emb, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer emb.Close()
	fmt.Println(emb.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or exits
	return nil
}

// startBrokerProcess runs this program again as an embedded broker and
// returns its address and a function that stops it.
func startBrokerProcess() (addr string, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe, "-serve-broker")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		_ = in.Close()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("broker process: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// waitPartitions waits for the service to create a topic.
func waitPartitions(ctx context.Context, kc kafkaio.Config, topic string) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := kafkaio.Partitions(ctx, kc, topic)
		if err == nil {
			return n, nil
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
