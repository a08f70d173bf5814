// Command soak runs the live service under a steady load for a long time
// and checks that nothing in it grows without bound. It builds
// `virality run`, starts it as a child process against KAFKA_BROKERS
// with topics and a group of its own, publishes generated likes
// (package gen) at -rate a second for -duration, and every -every
// samples the child's resident memory (/proc/PID/status VmRSS), Go heap
// in use and CPU time (/metrics), open files (/proc/PID/fd; those under the state
// directory apart, as Pebble keeps its tables open and they follow the
// state), goroutines (go_goroutines), the size of its state directory
// and its consumer lag (virality_lag_records, summed). It prints one row
// per sample, then judges the last -window samples: resident memory,
// goroutines and open files other than the state's must not keep rising,
// the lag must not keep rising, and the state directory must not grow
// faster than in the window before (it grows with every new (user,
// video) pair, so only an acceleration is a fault). It exits 1 when
// something grows, 2 when the run itself failed.
//
//	set -a; . .cache/kafka/env; set +a
//	go run ./bench/soak                          # 30 min at 5,000 likes/s
//	go run ./bench/soak -duration 3m -every 15s -window 6   # a quick look
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/viralityhq/virality/bench/internal/live"
	"github.com/viralityhq/virality/kafkaio"
)

// sample is one row of the table.
type sample struct {
	at         time.Duration // since the load started
	rss        int64         // bytes
	heap       int64         // bytes: go_memstats_heap_inuse_bytes
	fds        int           // open files but the state's own (sockets, pipes, logs)
	stateFDs   int           // open files under the state directory (Pebble's tables: they follow the state)
	goroutines int
	state      int64 // bytes
	lag        int64
	produced   int64
	in         int64   // virality_events_in_total
	cpu        float64 // process_cpu_seconds_total: user and system CPU since start
	flushed    int64   // bytes of memtables Pebble wrote as tables
	compacted  int64   // bytes of tables Pebble's compactions wrote
}

type options struct {
	brokers    string
	rate       float64
	duration   time.Duration
	every      time.Duration
	window     int
	partitions int
	videos     int
	users      int
	keep       bool
	rev        string
	runArgs    string
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka brokers (default: $KAFKA_BROKERS)")
	flag.Float64Var(&o.rate, "rate", 5000, "likes a second to publish")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run the load")
	flag.DurationVar(&o.every, "every", time.Minute, "time between samples")
	flag.IntVar(&o.window, "window", 10, "judge growth over the last `N` intervals (and compare the state's growth with the N before)")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of the input topic")
	flag.IntVar(&o.videos, "videos", 100_000, "videos of the generated catalogue")
	flag.IntVar(&o.users, "users", 1_000_000, "users of the generated traffic")
	flag.BoolVar(&o.keep, "keep", false, "keep the topics, the state directory and the log")
	flag.StringVar(&o.runArgs, "run-args", "", "more flags for virality run, space-separated (e.g. '--cache-pairs 100000')")
	flag.StringVar(&o.rev, "rev", "HEAD", "build virality run as of this `COMMIT`")
	flag.Parse()
	if o.window < 2 || o.every <= 0 || o.rate <= 0 || o.duration < time.Duration(o.window)*o.every {
		fmt.Fprintln(os.Stderr, "soak: want -window >= 2, -every > 0, -rate > 0 and -duration >= -window x -every")
		os.Exit(2)
	}
	rows, err := run(o)
	if len(rows) > 0 {
		printTable(rows, o.every)
	}
	faults := judge(rows, o)
	for _, f := range faults {
		fmt.Println("GROWS:", f)
	}
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	case len(faults) > 0:
		os.Exit(1)
	}
	fmt.Printf("soak: nothing grows without bound over the last %d samples\n", o.window)
}

func run(o options) (rows []sample, err error) {
	b, err := live.Setup("soak", o.brokers, o.rev)
	if err != nil {
		return nil, err
	}
	defer func() { b.Done(o.keep || err != nil) }()
	kc, dir, bin := b.Kafka, b.Dir, b.Bin
	suffix := fmt.Sprintf("-soak-%d", time.Now().Unix())
	topic, group := "likes"+suffix, "virality"+suffix
	outs := []string{"video-scores" + suffix, "trending" + suffix, "likes.dlq" + suffix}
	ctx := context.Background()
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: topic, Partitions: o.partitions}}); err != nil {
		return nil, err
	}
	if !o.keep {
		defer live.DeleteTopics(kc, append(outs, topic, group+"-likes-by-user", group+"-likes-by-video", group+"-state-changelog", group+"-trending-partials")...)
	}
	state, logPath := filepath.Join(dir, "state"), filepath.Join(dir, "run.log")
	fmt.Printf("soak: binary %s at %s; topic %s, group %s, state %s, log %s\n", bin, live.Revision(bin), topic, group, state, logPath)
	in, err := live.Start(bin, append([]string{"run", "--brokers", strings.Join(kc.Brokers, ","), "--group", group,
		"--input-topic", topic, "--scores-topic", outs[0], "--trending-topic", outs[1], "--dead-letter-topic", outs[2],
		"--state-dir", state, "--http-addr", "127.0.0.1:0"}, strings.Fields(o.runArgs)...), logPath, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := in.Stop(30 * time.Second); serr != nil && err == nil {
			err = fmt.Errorf("stopping virality run: %w (log: %s)", serr, logPath)
		}
	}()
	if !waitReady(in, 2*time.Minute) {
		return nil, fmt.Errorf("virality run not ready within 2 minutes; see %s", logPath)
	}
	load, err := live.StartLoad(kc, topic, o.rate, o.duration+5*time.Minute, o.videos, o.users)
	if err != nil {
		return nil, err
	}
	defer load.Stop()
	return sampleUntil(in, load, state, o)
}

// sampleUntil samples the instance every o.every until o.duration has
// passed, and stops early if the instance or the load fails.
func sampleUntil(in *live.Instance, load *live.Load, state string, o options) ([]sample, error) {
	begin := time.Now()
	var rows []sample
	for i := 0; ; i++ {
		s, err := take(in, load, state, time.Since(begin))
		if err != nil {
			return rows, err
		}
		rows = append(rows, s)
		fmt.Fprintf(os.Stderr, "soak: %s\n", s.row(o.every))
		if time.Duration(i)*o.every >= o.duration {
			return rows, load.Stop()
		}
		select {
		case <-in.Exited():
			return rows, fmt.Errorf("virality run exited during the run")
		case <-time.After(time.Until(begin.Add(time.Duration(i+1) * o.every))):
		}
		if err := load.Err(); err != nil {
			return rows, err
		}
	}
}

// take reads one sample.
func take(in *live.Instance, load *live.Load, state string, at time.Duration) (sample, error) {
	s := sample{at: at, produced: load.Produced(), state: live.DirSize(state)}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.Pid()))
	if err != nil {
		return s, fmt.Errorf("virality run is gone: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = kb << 10
		}
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", in.Pid())
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return s, fmt.Errorf("open files of virality run: %w", err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(target, state+"/") {
			s.stateFDs++
		} else {
			s.fds++
		}
	}
	m, err := in.Metrics()
	if err != nil {
		return s, err
	}
	s.goroutines = int(m["go_goroutines"])
	s.heap = int64(m["go_memstats_heap_inuse_bytes"])
	s.lag = int64(m["virality_lag_records"])
	s.in = int64(m["virality_events_in_total"])
	s.cpu = m["process_cpu_seconds_total"]
	s.flushed = int64(m[`virality_state_written_bytes_total{by="flush"}`])
	s.compacted = int64(m[`virality_state_written_bytes_total{by="compaction"}`])
	return s, nil
}

func waitReady(in *live.Instance, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !in.Ready() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func (s sample) row(every time.Duration) string {
	return fmt.Sprintf("| %6.1f | %7.1f | %8.1f | %10d | %5d | %11d | %9.1f | %8d | %10d | %10d | %7.0f | %11.0f | %13.0f |",
		s.at.Minutes(), float64(s.rss)/(1<<20), float64(s.heap)/(1<<20), s.goroutines, s.fds, s.stateFDs,
		float64(s.state)/(1<<20), s.lag, s.produced, s.in, s.cpu, float64(s.flushed)/(1<<20), float64(s.compacted)/(1<<20))
}

func printTable(rows []sample, every time.Duration) {
	fmt.Println("| minute | RSS MiB | heap MiB | goroutines | files | state files | state MiB |      lag |   produced |   consumed |   CPU s | flushed MiB | compacted MiB |")
	fmt.Println("|-------:|--------:|---------:|-----------:|------:|------------:|----------:|---------:|-----------:|-----------:|--------:|------------:|--------------:|")
	for _, s := range rows {
		fmt.Println(s.row(every))
	}
	if n := len(rows); n >= 2 && rows[n-1].in > rows[0].in {
		a, b := rows[0], rows[n-1]
		fmt.Printf("soak: the service used %.2f cores on average, %.1f CPU ms per 1,000 likes consumed\n",
			(b.cpu-a.cpu)/(b.at-a.at).Seconds(), 1e6*(b.cpu-a.cpu)/float64(b.in-a.in))
	}
}

// judge returns what grows over the last o.window intervals.
func judge(rows []sample, o options) []string {
	if len(rows) < o.window+1 {
		return []string{fmt.Sprintf("only %d samples: too few to judge", len(rows))}
	}
	last := rows[len(rows)-o.window-1:]
	perMin := func(get func(sample) float64, rs []sample) float64 { return slope(rs, get) }
	mean := func(get func(sample) float64, rs []sample) float64 {
		var sum float64
		for _, s := range rs {
			sum += get(s)
		}
		return sum / float64(len(rs))
	}
	var faults []string
	check := func(what string, get func(sample) float64, limit float64, unit string) {
		if k := perMin(get, last); k > limit {
			faults = append(faults, fmt.Sprintf("%s rises by %.2f %s a minute over the last %d samples (limit %.2f)", what, k, unit, o.window, limit))
		}
	}
	rss := func(s sample) float64 { return float64(s.rss) / (1 << 20) }
	check("resident memory", rss, max(2, 0.01*mean(rss, last)), "MiB")
	check("goroutines", func(s sample) float64 { return float64(s.goroutines) }, 0.5, "")
	check("open files (the state's apart)", func(s sample) float64 { return float64(s.fds) }, 0.5, "")
	lag := func(s sample) float64 { return float64(s.lag) }
	if end := last[len(last)-1].lag; float64(end) > 10*o.rate {
		check("consumer lag", lag, o.rate, "records")
	}
	state := func(s sample) float64 { return float64(s.state) / (1 << 20) }
	if len(rows) >= 2*o.window+1 {
		before := rows[len(rows)-2*o.window-1 : len(rows)-o.window]
		if k, k0 := perMin(state, last), perMin(state, before); k > 2*k0+16 {
			faults = append(faults, fmt.Sprintf("state directory grows by %.1f MiB a minute over the last %d samples, %.1f before", k, o.window, k0))
		}
	}
	return faults
}

// slope is the least-squares slope of get over time, per minute.
func slope(rs []sample, get func(sample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range rs {
		x, y := s.at.Minutes(), get(s)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if d == 0 || math.IsNaN(d) {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
