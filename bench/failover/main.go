// Command failover measures how long the live service's input stands
// still when its one instance is stopped and started again on the same
// state directory and group, as a supervisor restarts it. It builds
// `virality run`, starts it as a child process against KAFKA_BROKERS
// with topics and a group of its own, publishes generated likes at -rate
// a second throughout, and -reps times stops the instance, once with
// SIGKILL and once with SIGTERM, and starts it again at once. For each
// stop it reports the seconds from the signal to: the old process's exit,
// the new one's partitions assigned ("assigned" in its log), and the new
// one consuming again (virality_events_in_total above 0 on its /metrics,
// polled every 20 ms).
//
//	set -a; . .cache/kafka/env; set +a
//	go run ./bench/failover -reps 3
//	go run ./bench/failover -reps 3 -run-args '--session-timeout 10s'   # as before
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/viralityhq/virality/bench/internal/live"
	"github.com/viralityhq/virality/kafkaio"
)

type options struct {
	brokers    string
	rate       float64
	reps       int
	partitions int
	rev        string
	runArgs    string
	keep       bool
}

// trial is one stop and restart.
type trial struct {
	sig                        syscall.Signal
	exited, assigned, consumed time.Duration // since the signal
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka brokers (default: $KAFKA_BROKERS)")
	flag.Float64Var(&o.rate, "rate", 2000, "likes a second published throughout")
	flag.IntVar(&o.reps, "reps", 3, "stops of each kind (SIGKILL, SIGTERM)")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of the input topic")
	flag.StringVar(&o.rev, "rev", "HEAD", "build virality run as of this `COMMIT`")
	flag.StringVar(&o.runArgs, "run-args", "", "more flags for virality run, space-separated (e.g. '--session-timeout 10s')")
	flag.BoolVar(&o.keep, "keep", false, "keep the topics, the state directory and the log")
	flag.Parse()
	trials, err := run(o)
	report(trials)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func run(o options) (trials []trial, err error) {
	b, err := live.Setup("failover", o.brokers, o.rev)
	if err != nil {
		return nil, err
	}
	defer func() { b.Done(o.keep || err != nil) }()
	kc, dir, bin := b.Kafka, b.Dir, b.Bin
	suffix := fmt.Sprintf("-failover-%d", time.Now().Unix())
	topic, group := "likes"+suffix, "virality"+suffix
	outs := []string{"video-scores" + suffix, "trending" + suffix, "likes.dlq" + suffix}
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: o.partitions}}); err != nil {
		return nil, err
	}
	if !o.keep {
		defer live.DeleteTopics(kc, append(outs, topic, group+"-likes-by-user", group+"-likes-by-video", group+"-state-changelog", group+"-trending-partials")...)
	}
	args := append([]string{"run", "--brokers", strings.Join(kc.Brokers, ","), "--group", group,
		"--input-topic", topic, "--scores-topic", outs[0], "--trending-topic", outs[1], "--dead-letter-topic", outs[2],
		"--state-dir", filepath.Join(dir, "state"), "--http-addr", "127.0.0.1:0"}, strings.Fields(o.runArgs)...)
	logPath := filepath.Join(dir, "run.log")
	fmt.Printf("failover: binary at %s; %s; topic %s (%d partitions), %.0f likes/s; log %s\n",
		live.Revision(bin), strings.Join(args[1:], " "), topic, o.partitions, o.rate, logPath)

	load, err := live.StartLoad(kc, topic, o.rate, time.Hour, 100_000, 1_000_000)
	if err != nil {
		return nil, err
	}
	defer load.Stop()
	w := &watch{}
	in, err := live.Start(bin, args, logPath, w.line)
	if err != nil {
		return nil, err
	}
	defer func() { in.Stop(30 * time.Second) }()
	if _, err := consuming(in, time.Time{}, 2*time.Minute); err != nil {
		return nil, err
	}
	for rep := range o.reps {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			// Steady first: the instance has read for a few seconds.
			time.Sleep(5 * time.Second)
			t, next, err := stopAndRestart(in, sig, bin, args, logPath, w)
			if err != nil {
				return trials, fmt.Errorf("rep %d, %v: %w", rep+1, sig, err)
			}
			in = next
			trials = append(trials, t)
			fmt.Fprintf(os.Stderr, "failover: %-7v exit %5.2fs, assigned %5.2fs, consuming %5.2fs\n",
				sig, t.exited.Seconds(), t.assigned.Seconds(), t.consumed.Seconds())
		}
	}
	return trials, load.Err()
}

// stopAndRestart stops in with sig, starts a new instance at once and
// times both.
func stopAndRestart(in *live.Instance, sig syscall.Signal, bin string, args []string, logPath string, w *watch) (trial, *live.Instance, error) {
	t := trial{sig: sig}
	w.reset()
	at := time.Now()
	if err := in.Cmd.Process.Signal(sig); err != nil {
		return t, nil, err
	}
	select {
	case <-in.Exited():
	case <-time.After(time.Minute):
		in.Kill()
		return t, nil, fmt.Errorf("still running a minute after %v", sig)
	}
	t.exited = time.Since(at)
	next, err := live.Start(bin, args, logPath, w.line)
	if err != nil {
		return t, nil, err
	}
	if t.consumed, err = consuming(next, at, 2*time.Minute); err != nil {
		return t, next, err
	}
	if a := w.assignedAt(); !a.IsZero() {
		t.assigned = a.Sub(at)
	}
	return t, next, nil
}

// consuming polls /metrics until the instance has taken input records
// and returns the time since `since`.
func consuming(in *live.Instance, since time.Time, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for {
		if m, err := in.Metrics(); err == nil && m["virality_events_in_total"] > 0 {
			return time.Since(since), nil
		}
		select {
		case <-in.Exited():
			return 0, fmt.Errorf("virality run exited before consuming")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("virality run not consuming within %v", limit)
		}
	}
}

// watch notes when an instance's log first says its partitions are
// assigned.
type watch struct {
	mu       sync.Mutex
	assigned time.Time
}

func (w *watch) line(at time.Time, line string) {
	if strings.Contains(line, " assigned") && strings.Contains(line, "partitions=") {
		w.mu.Lock()
		if w.assigned.IsZero() {
			w.assigned = at
		}
		w.mu.Unlock()
	}
}

func (w *watch) reset() {
	w.mu.Lock()
	w.assigned = time.Time{}
	w.mu.Unlock()
}

func (w *watch) assignedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.assigned
}

// report prints every trial and, per signal, the median and range of
// the seconds to consuming again.
func report(trials []trial) {
	if len(trials) == 0 {
		return
	}
	fmt.Println("| stop | old process exited s | new assigned s | new consuming s |")
	fmt.Println("|---|---:|---:|---:|")
	for _, t := range trials {
		fmt.Printf("| %v | %.2f | %.2f | %.2f |\n", t.sig, t.exited.Seconds(), t.assigned.Seconds(), t.consumed.Seconds())
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		var s []float64
		for _, t := range trials {
			if t.sig == sig {
				s = append(s, t.consumed.Seconds())
			}
		}
		if len(s) == 0 {
			continue
		}
		slices.Sort(s)
		fmt.Printf("%v to consuming again: median %.2fs, min %.2fs, max %.2fs (%d runs)\n", sig, s[len(s)/2], s[0], s[len(s)-1], len(s))
	}
}
