// Package live runs `virality run` as a child process for the benchmarks
// of the live service (bench/failover, bench/soak, bench/catchup): it
// builds the binary, starts it with its log teed to a file, finds its HTTP
// address in the log, reads its /metrics and its memory, publishes
// generated likes at a steady rate or preloads them at full speed, and
// reads a topic back with a plain consumer.
package live

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// Build builds ./cmd/virality as of commit rev of the git repository the
// current directory is in (not the work tree, which others may be
// editing) into dir, and returns the binary's path. The binary reports
// the commit as its revision.
func Build(dir, rev string) (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel", rev+"^{commit}").Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 2 {
		return "", fmt.Errorf("run from inside the virality repository; git rev-parse %s: %v", rev, err)
	}
	root, commit := f[0], f[1]
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %v\n%s", commit, err, out)
	}
	bin := filepath.Join(dir, "virality")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.revision="+commit[:12], "./cmd/virality")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/virality at %s: %v\n%s", commit, err, out)
	}
	return bin, os.RemoveAll(src)
}

// Revision returns the VCS revision stamped into bin (the commit, with
// "-modified" when the work tree had uncommitted changes).
func Revision(bin string) string {
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		return "unknown"
	}
	var v struct{ Revision string }
	if json.Unmarshal(out, &v) != nil || v.Revision == "" {
		return "unknown"
	}
	return v.Revision
}

// Instance is one running `virality run` child process.
type Instance struct {
	Cmd *exec.Cmd
	// URL is the base of its HTTP interface, http://HOST:PORT.
	URL string

	exited chan struct{}
	err    error // of Wait, once exited is closed
	client http.Client
}

// Start starts bin with args (which should hold --http-addr
// 127.0.0.1:0) and appends its standard error to logPath; it returns
// once the HTTP interface is listening. onLine, if set, sees every log
// line with the time it was read.
func Start(bin string, args []string, logPath string, onLine func(time.Time, string)) (*Instance, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	in := &Instance{Cmd: cmd, exited: make(chan struct{}), client: http.Client{
		Timeout: 5 * time.Second,
		// Uncompressed: gzip cost the service 1.4% of its CPU and 2% of
		// what it allocated when a catch-up polled /metrics 20 times a second.
		Transport: &http.Transport{DisableCompression: true},
	}}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			now, line := time.Now(), sc.Text()
			fmt.Fprintln(logf, line)
			if i := strings.Index(line, "HTTP listening url="); i >= 0 {
				select {
				case urlc <- strings.Fields(line[i+len("HTTP listening url="):])[0]:
				default:
				}
			}
			if onLine != nil {
				onLine(now, line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		in.err = cmd.Wait()
		pw.Close()
		close(in.exited)
		logf.Close()
	}()
	select {
	case in.URL = <-urlc:
		return in, nil
	case <-in.exited:
		return nil, fmt.Errorf("virality run exited before listening (%v); see %s", in.err, logPath)
	case <-time.After(time.Minute):
		in.Kill()
		return nil, fmt.Errorf("virality run did not listen within a minute; see %s", logPath)
	}
}

// Pid returns the process id.
func (in *Instance) Pid() int { return in.Cmd.Process.Pid }

// Exited is closed when the process has ended.
func (in *Instance) Exited() <-chan struct{} { return in.exited }

// Kill sends SIGKILL and waits for the process to end.
func (in *Instance) Kill() {
	_ = in.Cmd.Process.Kill()
	<-in.exited
}

// Stop sends SIGTERM and waits up to limit for the process to end (then
// kills it); it returns the process's exit error.
func (in *Instance) Stop(limit time.Duration) error {
	_ = in.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
		return in.err
	case <-time.After(limit):
		in.Kill()
		return fmt.Errorf("did not stop within %v of SIGTERM", limit)
	}
}

// Metrics reads /metrics and returns the sum of each metric's samples
// over its labels, by metric name.
func (in *Instance) Metrics() (map[string]float64, error) {
	res, err := in.client.Get(in.URL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", res.Status)
	}
	return ParseMetrics(res.Body)
}

// Profile writes one of its /debug/pprof profiles to path: a CPU profile
// or an execution trace over the next seconds when name is "profile" or
// "trace", what was allocated over them for "allocs", else the named
// profile ("heap", "goroutine", ...) as it stands.
func (in *Instance) Profile(name string, seconds int, path string) error {
	u := in.URL + "/debug/pprof/" + name
	if name == "profile" || name == "trace" || name == "allocs" {
		u += fmt.Sprintf("?seconds=%d", seconds)
	}
	c := http.Client{Timeout: time.Duration(seconds)*time.Second + time.Minute}
	res, err := c.Get(u)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Ready reports whether /readyz answers 200.
func (in *Instance) Ready() bool {
	res, err := in.client.Get(in.URL + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// ParseMetrics sums the samples of the Prometheus text format by metric
// name (labels dropped), and keeps each labelled sample under its name and
// labels as well (`name{label="value"}`).
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, labelled := f[0], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			labelled = line[:strings.LastIndexByte(line, '}')+1]
			name = name[:i]
			// Label values may hold spaces: the value follows the '}'.
			f = strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
			if len(f) == 0 {
				continue
			}
			f = append([]string{name}, f...)
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		m[name] += v
		if labelled != "" {
			m[labelled] += v
		}
	}
	return m, sc.Err()
}

// Load publishes generated likes to a topic at a steady rate, keyed by
// video id with record time = event time, event times starting at the
// wall clock.
type Load struct {
	produced atomic.Int64
	stop     context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	err      error
}

// StartLoad starts publishing rate likes a second to topic for up to
// span (the generator's event-time span; the load stops earlier with
// Stop). videos and users size the generator's catalogue.
func StartLoad(kc kafkaio.Config, topic string, rate float64, span time.Duration, videos, users int) (*Load, error) {
	cfg := gen.DefaultConfig()
	cfg.Start = time.Now().UTC().Truncate(time.Millisecond)
	cfg.Duration = span
	cfg.Events = int(rate * span.Seconds())
	cfg.Videos, cfg.Users = videos, users
	if span < 2*time.Hour {
		// Bursts and campaigns need hours of event time to unfold.
		cfg.Bursts, cfg.Campaigns = 0, 0
	}
	g, err := gen.New(cfg)
	if err != nil {
		return nil, err
	}
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer p.Close()
		l.setErr(l.run(ctx, p, g, rate))
	}()
	return l, nil
}

// loadStep is how far ahead of its schedule the load may get before it
// sends what it buffered and sleeps: the likes go out in steps of about
// this much time, as from a producer with this linger. At 5 ms the load
// sent about 500 requests a second at 5,000 likes/s, and the broker, on
// the same two cores as the service it measures, spent CPU on each.
const loadStep = 50 * time.Millisecond

func (l *Load) run(ctx context.Context, p *kafkaio.Producer, g *gen.Generator, rate float64) error {
	begin := time.Now()
	var ev event.Event
	var line, key []byte
	for i := 0; ctx.Err() == nil; i++ {
		var ts int64
		var ok bool
		if line, ts, ok = g.Next(line[:0]); !ok {
			break
		}
		if d := time.Until(begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > loadStep {
			if err := p.Flush(ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("publish likes: %w", err)
			}
			l.produced.Store(p.Writes())
			sleep(ctx, d)
		}
		var err error
		if key, err = produceLike(ctx, p, line, ts, &ev, key); err != nil && ctx.Err() == nil {
			return fmt.Errorf("publish likes: %w", err)
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Flush(fctx)
	l.produced.Store(p.Writes())
	return err
}

// produceLike buffers one generated like keyed by its video id, with its
// event time as record time; key is a buffer for the key, returned for
// reuse. A like too large for a record batch is skipped.
func produceLike(ctx context.Context, p *kafkaio.Producer, line []byte, ts int64, ev *event.Event, key []byte) ([]byte, error) {
	var k []byte
	if event.Decode(line, ts, ev) == nil {
		key = append(key[:0], ev.VideoID...)
		k, ts = key, ev.TS
	}
	err := p.Produce(ctx, k, line, time.UnixMilli(ts))
	var tl *kafkaio.TooLargeError
	if errors.As(err, &tl) {
		err = nil
	}
	return key, err
}

// Preload publishes every like cfg generates to topic as fast as the
// broker acknowledges them, keyed by video id with record time = event
// time, and returns the number acknowledged.
func Preload(ctx context.Context, kc kafkaio.Config, topic string, cfg gen.Config) (int64, error) {
	g, err := gen.New(cfg)
	if err != nil {
		return 0, err
	}
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	var ev event.Event
	var line, key []byte
	for {
		var ts int64
		var ok bool
		if line, ts, ok = g.Next(line[:0]); !ok {
			break
		}
		if key, err = produceLike(ctx, p, line, ts, &ev, key); err != nil {
			return p.Writes(), fmt.Errorf("preload %s: %w", topic, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		return p.Writes(), fmt.Errorf("preload %s: %w", topic, err)
	}
	return p.Writes(), nil
}

// ReadAll is a plain consumer, the ceiling of a catch-up: it fetches each
// of the topic's partitions from its first offset to its end as of the
// call, one goroutine a partition, and decodes every record, doing
// nothing else. It returns the records read.
func ReadAll(ctx context.Context, kc kafkaio.Config, topic string, partitions int) (int64, error) {
	var read atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, partitions)
	for part := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, end, err := kafkaio.FirstLastOffsets(ctx, kc, topic, part)
			if err != nil {
				errs <- err
				return
			}
			src, err := kafkaio.NewPartitionSource(kc, topic, part, kafkaio.FirstOffset)
			if err != nil {
				errs <- err
				return
			}
			defer src.Close()
			var recs []processor.Record
			var ev event.Event
			for src.Offset() < end {
				if recs, err = src.Next(ctx, recs); err != nil {
					errs <- err
					return
				}
				for i := range recs {
					_ = event.Decode(recs[i].Value, recs[i].Time, &ev)
				}
				read.Add(int64(len(recs)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	return read.Load(), <-errs
}

// Memory returns the resident set of process pid and its peak, in bytes
// (VmRSS and VmHWM of /proc/PID/status).
func Memory(pid int) (rss, peak int64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

func (l *Load) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// Err returns the error that stopped the load, if any.
func (l *Load) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Produced returns the number of likes acknowledged so far.
func (l *Load) Produced() int64 { return l.produced.Load() }

// Stop ends the load, flushing what it buffered, and returns its error.
func (l *Load) Stop() error {
	l.stop()
	<-l.done
	return l.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// DirSize returns the bytes of the regular files under dir.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Bench is what a benchmark against the real broker starts from: the
// broker's configuration, a directory of its own and `virality` built in
// it.
type Bench struct {
	Kafka kafkaio.Config
	Dir   string
	Bin   string
	name  string
}

// Setup reads the brokers (brokersFlag, else KAFKA_BROKERS), makes a
// temporary directory for the benchmark name and builds `virality` as of
// commit rev into it. The caller ends with Done.
func Setup(name, brokersFlag, rev string) (*Bench, error) {
	brokers, err := Brokers(brokersFlag)
	if err != nil {
		return nil, err
	}
	b := &Bench{Kafka: kafkaio.DefaultConfig(), name: name}
	b.Kafka.Brokers = brokers
	if b.Dir, err = os.MkdirTemp("", "virality-"+name+"-"); err != nil {
		return nil, err
	}
	if b.Bin, err = Build(b.Dir, rev); err != nil {
		b.Done(false)
		return nil, err
	}
	return b, nil
}

// Done removes the benchmark's directory, or says where it is kept.
func (b *Bench) Done(keep bool) {
	if keep {
		fmt.Fprintf(os.Stderr, "%s: kept %s (state, log)\n", b.name, b.Dir)
		return
	}
	os.RemoveAll(b.Dir)
}

// Brokers returns KAFKA_BROKERS split, or an error saying how to set it.
func Brokers(flagValue string) ([]string, error) {
	if flagValue == "" {
		flagValue = os.Getenv("KAFKA_BROKERS")
	}
	if flagValue == "" {
		return nil, errors.New("no broker: set KAFKA_BROKERS (set -a; . .cache/kafka/env; set +a) or -brokers")
	}
	return strings.Split(flagValue, ","), nil
}

// DeleteTopics deletes the benchmark's topics, reporting nothing: what
// is left behind only takes space.
func DeleteTopics(kc kafkaio.Config, topics ...string) {
	cl, err := kc.Client()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
}

// HostCPU is a snapshot of the machine's CPU time, in clock ticks, from
// the first line of /proc/stat.
type HostCPU struct {
	Total, Idle, Steal int64
}

// ReadHostCPU reads the machine's CPU time so far. On a virtual machine,
// steal is the time its CPUs were ready to run but the hypervisor ran
// another guest: a benchmark's tail on a shared host follows it more than
// any change of the code.
func ReadHostCPU() (HostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return HostCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice],
	// guest time already counted in user and nice.
	var c HostCPU
	for i, s := range f[1:9] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return HostCPU{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		c.Total += v
		switch i {
		case 3, 4:
			c.Idle += v
		case 7:
			c.Steal = v
		}
	}
	return c, nil
}

// Shares returns, between the snapshot before and c, the shares of the
// machine's CPU time that were stolen by the hypervisor and that were
// busy (neither idle nor stolen).
func (c HostCPU) Shares(before HostCPU) (steal, busy float64) {
	total := float64(c.Total - before.Total)
	if total <= 0 {
		return 0, 0
	}
	steal = float64(c.Steal-before.Steal) / total
	busy = 1 - steal - float64(c.Idle-before.Idle)/total
	return steal, busy
}
