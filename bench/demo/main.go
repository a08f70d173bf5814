// Command demo measures the memory of `virality demo` over an hour of its
// traffic in fast-forward. It builds the virality command, runs `virality
// demo` as a child process with the generator at full speed (--speed 0,
// no history: event time runs as fast as the service applies it) at the
// demo's rate, and samples the child's resident memory (/proc/PID/status)
// every -every until the service has read -minutes minutes of traffic at
// that rate. It prints the peak RSS (VmHWM), the RSS after equivalent
// minutes 10 and 60, and judges them against the targets: at most 512
// MiB, and RSS at minute 60 within 10% of RSS at minute 10.
//
//	go run ./bench/demo                 # 60 minutes of 2,000 likes/s: 7.2M likes
//	go run ./bench/demo -minutes 15     # a quick look
//
// It exits 1 when a target is missed, 2 when the run itself failed.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	rate    float64
	minutes int
	every   time.Duration
	limit   time.Duration
	extra   string
}

func main() {
	var o options
	flag.Float64Var(&o.rate, "rate", 2000, "the demo's likes a second: an equivalent minute is 60 times this many likes")
	flag.IntVar(&o.minutes, "minutes", 60, "equivalent minutes of traffic to run for (at least 10)")
	flag.DurationVar(&o.every, "every", time.Second, "sampling interval")
	flag.DurationVar(&o.limit, "limit", 90*time.Minute, "give up after this much wall time")
	flag.StringVar(&o.extra, "args", "", "more flags for virality demo, space-separated")
	flag.Parse()
	if o.minutes < 10 {
		fmt.Fprintln(os.Stderr, "demo: -minutes must be at least 10")
		os.Exit(2)
	}
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	fmt.Print(r.report(o))
	if !r.ok(o) {
		os.Exit(1)
	}
}

// result holds what one run measured.
type result struct {
	wall            time.Duration
	events          int64
	peak            int64 // VmHWM, KiB
	at10, atEnd     int64 // VmRSS after equivalent minutes 10 and the last, KiB
	wall10, wallEnd time.Duration
	max             int64 // largest VmRSS sampled, KiB
	partial         bool  // -limit ended the run before -minutes
}

func (r result) ok(o options) bool {
	return !r.partial && r.at10 > 0 && r.peak <= 512<<10 && float64(r.atEnd) <= 1.1*float64(r.at10)
}

func (r result) report(o options) string {
	var b strings.Builder
	mib := func(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }
	fmt.Fprintf(&b, "demo fast-forward: %.1f equivalent minutes at %.0f likes/s (%d likes read) in %v, %.0f likes/s\n",
		float64(r.events)/(o.rate*60), o.rate, r.events, r.wall.Round(time.Second), float64(r.events)/r.wall.Seconds())
	if r.at10 > 0 {
		fmt.Fprintf(&b, "demo RSS after equivalent minute 10: %s (at %v)\n", mib(r.at10), r.wall10.Round(time.Second))
	} else {
		fmt.Fprintf(&b, "demo RSS after equivalent minute 10: not reached\n")
	}
	last := fmt.Sprint(o.minutes)
	if r.partial {
		last = fmt.Sprintf("%.1f (out of time: -limit %v ended the run before minute %d)", float64(r.events)/float64(o.rate*60), o.limit, o.minutes)
	}
	fmt.Fprintf(&b, "demo RSS after equivalent minute %s: %s (at %v), %+.1f%% from minute 10 (target within 10%%)\n",
		last, mib(r.atEnd), r.wallEnd.Round(time.Second), 100*(float64(r.atEnd)/float64(max(r.at10, 1))-1))
	fmt.Fprintf(&b, "demo peak RSS: %s (VmHWM; target at most 512 MiB); largest sample %s\n", mib(r.peak), mib(r.max))
	verdict := "met"
	if !r.ok(o) {
		verdict = "missed"
	}
	fmt.Fprintf(&b, "demo targets: %s\n", verdict)
	return b.String()
}

func run(o options) (r result, err error) {
	dir, err := os.MkdirTemp("", "virality-bench-demo-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "virality")
	build := exec.Command("go", "build", "-o", bin, "./cmd/virality")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return r, fmt.Errorf("go build ./cmd/virality (run from the repository's root): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	httpAddr := l.Addr().String()
	l.Close()
	args := []string{"demo", "--view", "off", "--history", "0", "--speed", "0",
		"--rate", strconv.FormatFloat(o.rate, 'f', -1, 64),
		"--duration", fmt.Sprintf("%dm", o.minutes+30), "--http-addr", httpAddr,
		"--state-dir", filepath.Join(dir, "state")}
	args = append(args, strings.Fields(o.extra)...)
	ctx, cancel := context.WithTimeout(context.Background(), o.limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 20 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		if werr := cmd.Wait(); werr != nil && err == nil && ctx.Err() == nil {
			err = fmt.Errorf("virality demo: %w", werr)
		}
	}()
	perMinute := int64(o.rate * 60)
	lastPrint := time.Duration(0)
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Out of time: report what was measured, up to the
			// minute reached.
			r.wall, r.partial = time.Since(start), true
			return r, nil
		case <-t.C:
		}
		rss, hwm, err := memory(cmd.Process.Pid)
		if err != nil {
			return r, fmt.Errorf("the demo ended: %w", err)
		}
		events, err := eventsIn("http://" + httpAddr + "/metrics")
		if err != nil {
			continue // not serving yet
		}
		r.events, r.peak, r.max = events, hwm, max(r.max, rss)
		r.atEnd, r.wallEnd = rss, time.Since(start)
		elapsed := time.Since(start)
		if r.at10 == 0 && events >= 10*perMinute {
			r.at10, r.wall10 = rss, elapsed
		}
		if events >= int64(o.minutes)*perMinute {
			r.atEnd, r.wallEnd, r.wall = rss, elapsed, elapsed
			return r, nil
		}
		if elapsed-lastPrint >= 10*time.Second {
			lastPrint = elapsed
			fmt.Fprintf(os.Stderr, "bench: %6s  minute %5.1f  RSS %4d MiB  peak %4d MiB\n",
				elapsed.Round(time.Second), float64(events)/float64(perMinute), rss>>10, hwm>>10)
		}
	}
}

// memory reads the resident and peak resident memory of pid, in KiB.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(fields[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(fields[1], 10, 64)
		case "State:":
			if fields[1] == "Z" {
				return 0, 0, fmt.Errorf("process %d exited", pid)
			}
		}
	}
	return rss, hwm, sc.Err()
}

// eventsIn sums virality_events_in_total over the partitions.
func eventsIn(url string) (int64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "virality_events_in_total{") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				sum += v
				found = true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no virality_events_in_total in %s", url)
	}
	return int64(sum), nil
}
