package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/metrics"
	"github.com/viralityhq/virality/store"
)

// retentionStall sets up the hardening issue's silent stall on the
// embedded broker: a service consumes the first half of the likes and
// stops; the second half is published; then retention deletes, in each
// partition, the first half of what the service has not read yet, so
// that the offset it resumes at is gone. It returns the configuration,
// the state directory, the offset each partition's reading stopped at
// and the offset its records now start at.
func retentionStall(t *testing.T, policy string) (cfg Config, dir string, stopped, cut map[int32]int64, lines []line) {
	t.Helper()
	// DeleteRecords is the embedded broker's: this test does not run
	// against KAFKA_BROKERS.
	emb := embeddedBroker(t)
	kc := emb.Config()
	cfg = testConfig(t, kc)
	cfg.OnOffsetOutOfRange = policy
	const n = 2
	lines = generatedLines(t, 40_000)
	half := len(lines) / 2
	createInput(t, kc, cfg.InputTopic, n)
	produce(t, kc, cfg.InputTopic, lines[:half])
	dir = t.TempDir()
	svc, stop := startService(t, cfg, dir)
	waitFor(t, "the first half consumed", time.Minute, func() bool { return svc.EventsIn.Load() == int64(half) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stopped, cut = map[int32]int64{}, map[int32]int64{}
	for p := range int32(n) {
		_, end, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.InputTopic, int(p))
		if err != nil {
			t.Fatal(err)
		}
		stopped[p] = end
	}
	produce(t, kc, cfg.InputTopic, lines[half:])
	for p := range int32(n) {
		_, end, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.InputTopic, int(p))
		if err != nil {
			t.Fatal(err)
		}
		cut[p] = stopped[p] + (end-stopped[p])/2
		if cut[p] <= stopped[p] {
			t.Fatalf("partition %d: %d records after offset %d, too few", p, end-stopped[p], stopped[p])
		}
		if err := emb.DeleteRecords(cfg.InputTopic, int(p), cut[p]); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, dir, stopped, cut, lines
}

// observed is a service run with metrics and its warnings captured.
type observed struct {
	svc  *Service
	reg  *prometheus.Registry
	logs *syncBuffer
	done chan error
	stop func() error
}

func runObserved(t *testing.T, cfg Config, dir string) *observed {
	t.Helper()
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, done: make(chan error, 1)}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), o.logs)).Level(zerolog.WarnLevel)
	if o.svc, err = New(cfg, db, metrics.New(o.reg), log); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { o.done <- o.svc.Run(ctx) }()
	var once sync.Once
	var runErr error
	o.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = errors.Join(<-o.done, db.Close())
		})
		return runErr
	}
	t.Cleanup(func() { o.stop() })
	return o
}

// lost reads records_lost_to_retention_total by partition.
func (o *observed) lost(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "virality_records_lost_to_retention_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "partition" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

// logLines returns the JSON log lines whose message contains msg.
func (o *observed) logLines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(o.logs.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && strings.Contains(fmt.Sprint(m["message"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestRetentionResumesAtEarliest: the offsets a restarted service resumes
// at were deleted by retention. With --on-offset-out-of-range earliest
// (the default) each partition logs a warning with the lost range, counts
// the lost records in records_lost_to_retention_total, resumes at the
// first offset the topic holds and consumes the rest: its state ends as a
// backfill of the records it was given, as if the lost ones had never
// been, and it is ready.
func TestRetentionResumesAtEarliest(t *testing.T) {
	if DefaultConfig().OnOffsetOutOfRange != OutOfRangeEarliest {
		t.Fatalf("default policy %q, want earliest", DefaultConfig().OnOffsetOutOfRange)
	}
	cfg, dir, stopped, cut, lines := retentionStall(t, OutOfRangeEarliest)
	kc := cfg.Kafka
	// What is left of the second half: what the service must read.
	rest := readTopic(t, kc, cfg.InputTopic)
	var lostTotal int64
	for p := range cut {
		lostTotal += cut[p] - stopped[p]
	}
	half := len(lines) / 2
	if int64(len(rest))+lostTotal != int64(len(lines)-half) {
		t.Fatalf("%d records left and %d deleted, want %d in all", len(rest), lostTotal, len(lines)-half)
	}

	o := runObserved(t, cfg, dir)
	waitFor(t, "the records left consumed", time.Minute, func() bool { return o.svc.EventsIn.Load() == int64(len(rest)) })
	waitFor(t, "the service quiet and ready", time.Minute, func() bool {
		ok, _ := o.svc.Ready()
		return ok && o.svc.Quiet()
	})
	if in := o.svc.EventsIn.Load(); in != int64(len(rest)) {
		t.Fatalf("read %d records, want the %d left", in, len(rest))
	}

	gotLost := o.lost(t)
	warnings := o.logLines(t, "deleted by retention")
	if len(warnings) != len(cut) {
		t.Errorf("%d warnings about deleted records, want one per partition: %v", len(warnings), warnings)
	}
	for p := range cut {
		want := cut[p] - stopped[p]
		if got := gotLost[fmt.Sprint(p)]; got != float64(want) {
			t.Errorf("records_lost_to_retention_total{partition=%d} = %v, want %d", p, got, want)
		}
		found := false
		for _, w := range warnings {
			if w["level"] == "warn" && w["partition"] == float64(p) && w["topic"] == cfg.InputTopic &&
				w["from"] == float64(stopped[p]) && w["to"] == float64(cut[p]-1) &&
				w["count"] == float64(want) && w["resume_at"] == float64(cut[p]) {
				found = true
			}
		}
		if !found {
			t.Errorf("partition %d: no warning with from %d, to %d, count %d: %v", p, stopped[p], cut[p]-1, want, warnings)
		}
	}

	// The state is that of the records seen: the first half, then what
	// retention left of the second.
	seen := append([]line(nil), lines[:half]...)
	for _, r := range rest {
		seen = append(seen, line{value: r.Value, ts: r.Time})
	}
	wantScores, _ := backfill(t, cfg.Engine, seen, len(cut))
	want := lastPerVideo(wantScores)
	var got map[string]string
	converged := func() bool {
		got = lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic))
		for id, w := range want {
			if got[id] != w {
				return false
			}
		}
		return len(got) == len(want)
	}
	waitFor(t, "every video's last score to be the backfill's of the records seen", time.Minute, converged)
	if err := o.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("lost %v records to retention; read the %d left; %d videos agree with a backfill of the records seen", gotLost, len(rest), len(want))
}

// TestRetentionFailPolicy: with --on-offset-out-of-range fail, the same
// stall stops the service with an error that names the partition and the
// lost range, and it is not ready meanwhile.
func TestRetentionFailPolicy(t *testing.T) {
	cfg, dir, stopped, cut, _ := retentionStall(t, OutOfRangeFail)
	o := runObserved(t, cfg, dir)
	var err error
	select {
	case err = <-o.done:
		o.done <- err // for stop
	case <-time.After(time.Minute):
		t.Fatal("the service did not stop within a minute")
	}
	if err == nil {
		t.Fatal("the service stopped without an error")
	}
	var oor *kafkaio.OffsetOutOfRangeError
	if !errors.As(err, &oor) {
		t.Fatalf("error %q does not wrap an *OffsetOutOfRangeError", err)
	}
	p := int32(oor.Partition)
	want := fmt.Sprintf("partition %d of %s: offsets %d to %d (%d records) were deleted by retention before they were read",
		p, cfg.InputTopic, stopped[p], cut[p]-1, cut[p]-stopped[p])
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q\nwant it to contain %q", err, want)
	}
	if ok, why := o.svc.Ready(); ok || !strings.Contains(why, "out of range") {
		t.Fatalf("Ready() = %v, %q after the stall; want not ready, saying why", ok, why)
	}
	if n := len(o.logLines(t, "deleted by retention")); n == 0 {
		t.Error("no error logged")
	}
	if got := o.lost(t)[fmt.Sprint(p)]; got != 0 {
		t.Errorf("records_lost_to_retention_total{partition=%d} = %v, want 0: nothing was skipped", p, got)
	}
	t.Logf("stopped: %v", err)
}

// TestOutOfRangeAheadOfEnd: a partition's next offset past the end of
// the partition (the input topic deleted and created again) is not a loss
// that retention explains, and going back would not help: the service
// stays up, reads nothing of it, logs an error once per partition and is
// not ready, saying why.
func TestOutOfRangeAheadOfEnd(t *testing.T) {
	emb := embeddedBroker(t)
	kc := emb.Config()
	cfg := testConfig(t, kc)
	const n = 2
	lines := generatedLines(t, 40_000)
	createInput(t, kc, cfg.InputTopic, n)
	produce(t, kc, cfg.InputTopic, lines[:4_000])
	dir := t.TempDir()
	svc, stop := startService(t, cfg, dir)
	waitFor(t, "the likes consumed", time.Minute, func() bool { return svc.EventsIn.Load() == 4_000 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl := &kafka.Client{Addr: kafka.TCP(emb.Addr()), Timeout: 10 * time.Second}
	res, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{cfg.InputTopic}})
	if err != nil {
		t.Fatal(err)
	}
	for topic, err := range res.Errors {
		if err != nil {
			t.Fatalf("delete %s: %v", topic, err)
		}
	}
	createInput(t, kc, cfg.InputTopic, n)
	produce(t, kc, cfg.InputTopic, lines[4_000:4_100])

	o := runObserved(t, cfg, dir)
	var why string
	waitFor(t, "an error logged for each partition and the service not ready", time.Minute, func() bool {
		var ok bool
		ok, why = o.svc.Ready()
		return !ok && strings.Contains(why, "out of range") && len(o.logLines(t, "past the end of the partition")) == n
	})
	select {
	case err := <-o.done:
		t.Fatalf("the service stopped: %v", err)
	default:
	}
	if in := o.svc.EventsIn.Load(); in != 0 {
		t.Errorf("read %d records", in)
	}
	for p, v := range o.lost(t) {
		if v != 0 {
			t.Errorf("records_lost_to_retention_total{partition=%s} = %v, want 0", p, v)
		}
	}
	if err := o.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("not ready: %s", why)
}
