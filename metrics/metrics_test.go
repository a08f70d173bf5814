package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viralityhq/virality/event"
)

func TestCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.AddIn(0, 100)
	m.AddIn(0, 50)
	m.AddIn(3, 7)
	m.AddApplied(0, 140)
	m.AddDead("malformed", 2)
	m.AddDead("late", 1)
	m.AddDead("malformed", 1)
	m.AddEmitted(KindScore, 90)
	m.AddEmitted(KindTrending, 9)
	m.AddEmitted(KindDeadLetter, 3)

	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"in p0", m.in.WithLabelValues("0"), 150},
		{"in p3", m.in.WithLabelValues("3"), 7},
		{"applied p0", m.applied.WithLabelValues("0"), 140},
		{"dead malformed", m.dead.WithLabelValues("malformed"), 3},
		{"dead late", m.dead.WithLabelValues("late"), 1},
		{"emitted score", m.emitted.WithLabelValues("score"), 90},
		{"emitted trending", m.emitted.WithLabelValues("trending"), 9},
		{"emitted dead_letter", m.emitted.WithLabelValues("dead_letter"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testutil.ToFloat64(tc.c); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.AddIn(1, 10)
	m.AddApplied(1, 9)
	m.AddIgnored(IgnoredRepeatedLike, 2)
	m.AddIgnored(IgnoredRepeatedLike, 0)
	m.SetLag(1, 42)
	m.SetWatermark(1, 1_790_000_000_250)
	m.SetEventTimeLag(1, 90*time.Second+500*time.Millisecond)
	m.SetStateBytes(1<<20, 4096)
	m.SetStateWrites(100, 50, 400)
	m.SetStateWrites(150, 50, 900) // later counts of the same store
	m.SetStateWrites(10, 0, 0)     // the store opened again
	m.SetStateCache(90, 10)
	m.SetStateCache(300, 20)
	m.SetPartitions(3)
	m.SetInputHeld(3 << 20)
	m.SetReady(true)

	want := `
# HELP virality_events_applied_total Like events applied to the state (not dead-lettered, not ignored).
# TYPE virality_events_applied_total counter
virality_events_applied_total{partition="1"} 9
# HELP virality_event_time_lag_seconds Wall clock minus the event-time watermark of the partition, in seconds.
# TYPE virality_event_time_lag_seconds gauge
virality_event_time_lag_seconds{partition="1"} 90.5
# HELP virality_events_ignored_total Valid events that changed nothing, by reason (repeated_like: a like while the user's like stood; stray_unlike: an unlike with no like standing; replayed: an event the partition had applied before a restart).
# TYPE virality_events_ignored_total counter
virality_events_ignored_total{reason="replayed"} 0
virality_events_ignored_total{reason="repeated_like"} 2
virality_events_ignored_total{reason="stray_unlike"} 0
# HELP virality_events_in_total Like events taken from the input topic.
# TYPE virality_events_in_total counter
virality_events_in_total{partition="1"} 10
# HELP virality_input_held_bytes Input read from the broker but not yet applied, decoded, in bytes (bounded by a share of --memory-budget).
# TYPE virality_input_held_bytes gauge
virality_input_held_bytes 3.145728e+06
# HELP virality_lag_records Records between the committed offset and the end of the partition.
# TYPE virality_lag_records gauge
virality_lag_records{partition="1"} 42
# HELP virality_partitions_owned Input partitions assigned to this instance.
# TYPE virality_partitions_owned gauge
virality_partitions_owned 3
# HELP virality_ready 1 when the service is ready (assignments loaded, broker reachable), else 0.
# TYPE virality_ready gauge
virality_ready 1
# HELP virality_state_block_cache_lookups_total Blocks the state store looked up in its block cache, by result (hit; miss: read from the file system).
# TYPE virality_state_block_cache_lookups_total counter
virality_state_block_cache_lookups_total{result="hit"} 300
virality_state_block_cache_lookups_total{result="miss"} 20
# HELP virality_state_bytes Size of the local state, by kind (disk, memtable).
# TYPE virality_state_bytes gauge
virality_state_bytes{kind="disk"} 1.048576e+06
virality_state_bytes{kind="memtable"} 4096
# HELP virality_state_written_bytes_total Bytes the state store wrote, by what wrote them (wal: commits to the write-ahead log, flush: memtables written as tables, compaction: tables rewritten by compactions).
# TYPE virality_state_written_bytes_total counter
virality_state_written_bytes_total{by="compaction"} 900
virality_state_written_bytes_total{by="flush"} 50
virality_state_written_bytes_total{by="wal"} 160
# HELP virality_watermark_seconds Event-time watermark of the partition, seconds since the Unix epoch (0 before its first event).
# TYPE virality_watermark_seconds gauge
virality_watermark_seconds{partition="1"} 1.79000000025e+09
`
	names := []string{
		"virality_event_time_lag_seconds", "virality_events_applied_total", "virality_events_ignored_total", "virality_events_in_total",
		"virality_input_held_bytes", "virality_lag_records", "virality_partitions_owned", "virality_ready", "virality_state_block_cache_lookups_total", "virality_state_bytes",
		"virality_state_written_bytes_total", "virality_watermark_seconds",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	m.SetReady(false)
	if got := testutil.ToFloat64(m.ready); got != 0 {
		t.Errorf("ready after SetReady(false) = %v, want 0", got)
	}
}

func TestCommitHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ObserveCommit(300 * time.Microsecond)
	m.ObserveCommit(3 * time.Millisecond)
	m.ObserveCommit(10 * time.Second)

	want := `
# HELP virality_batch_commit_seconds Time to flush the sinks and commit one batch of state and offsets.
# TYPE virality_batch_commit_seconds histogram
virality_batch_commit_seconds_bucket{le="0.0005"} 1
virality_batch_commit_seconds_bucket{le="0.001"} 1
virality_batch_commit_seconds_bucket{le="0.0025"} 1
virality_batch_commit_seconds_bucket{le="0.005"} 2
virality_batch_commit_seconds_bucket{le="0.01"} 2
virality_batch_commit_seconds_bucket{le="0.025"} 2
virality_batch_commit_seconds_bucket{le="0.05"} 2
virality_batch_commit_seconds_bucket{le="0.1"} 2
virality_batch_commit_seconds_bucket{le="0.25"} 2
virality_batch_commit_seconds_bucket{le="0.5"} 2
virality_batch_commit_seconds_bucket{le="1"} 2
virality_batch_commit_seconds_bucket{le="2.5"} 2
virality_batch_commit_seconds_bucket{le="5"} 2
virality_batch_commit_seconds_bucket{le="+Inf"} 3
virality_batch_commit_seconds_sum 10.0033
virality_batch_commit_seconds_count 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "virality_batch_commit_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestEventTimeLagOnlyOnceSet: a partition's event-time lag has no series
// before the service sets it (0 would read as "not behind").
func TestEventTimeLagOnlyOnceSet(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.AddIn(0, 1)
	m.SetWatermark(0, 1_790_000_000_000)
	if n, err := testutil.GatherAndCount(reg, "virality_event_time_lag_seconds"); err != nil || n != 0 {
		t.Fatalf("%d event-time lag series before any SetEventTimeLag (%v), want 0", n, err)
	}
	m.SetEventTimeLag(0, 2*time.Minute)
	m.SetEventTimeLag(0, 3*time.Minute)
	if got := testutil.ToFloat64(m.timeLag.WithLabelValues("0")); got != 180 {
		t.Errorf("event_time_lag_seconds{partition=0} = %v, want 180", got)
	}
}

func TestForgetPartition(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	for _, p := range []int32{0, 1} {
		m.AddIn(p, 5)
		m.AddApplied(p, 5)
		m.SetLag(p, 1)
		m.SetWatermark(p, 1000)
		m.SetEventTimeLag(p, time.Minute)
		m.AddLostToRetention(p, 7)
	}
	m.ForgetPartition(0)

	for _, name := range []string{
		"virality_events_in_total", "virality_events_applied_total",
		"virality_lag_records", "virality_watermark_seconds", "virality_event_time_lag_seconds",
		"virality_records_lost_to_retention_total",
	} {
		t.Run(name, func(t *testing.T) {
			n, err := testutil.GatherAndCount(reg, name)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("%d series after forgetting partition 0 of 2, want 1", n)
			}
		})
	}

	// A partition assigned again starts over.
	m.AddIn(0, 2)
	if got := testutil.ToFloat64(m.in.WithLabelValues("0")); got != 2 {
		t.Errorf("events_in_total{partition=0} after reassignment = %v, want 2", got)
	}
	m.AddLostToRetention(0, 1)
	if got := testutil.ToFloat64(m.lost.WithLabelValues("0")); got != 1 {
		t.Errorf("records_lost_to_retention_total{partition=0} after reassignment = %v, want 1", got)
	}
}

func TestLostToRetention(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	if n, err := testutil.GatherAndCount(reg, "virality_records_lost_to_retention_total"); err != nil || n != 0 {
		t.Fatalf("%d series before any loss (%v), want 0", n, err)
	}
	m.AddLostToRetention(3, 0) // a partition's series at 0, before any loss
	m.AddLostToRetention(3, 120)
	m.AddLostToRetention(3, 5)
	m.AddLostToRetention(4, 0)
	want := `
# HELP virality_records_lost_to_retention_total Records a partition skipped because retention deleted them before they were read.
# TYPE virality_records_lost_to_retention_total counter
virality_records_lost_to_retention_total{partition="3"} 125
virality_records_lost_to_retention_total{partition="4"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "virality_records_lost_to_retention_total"); err != nil {
		t.Fatal(err)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			// Process metrics exist only where procfs does (Linux).
			t.Errorf("%s: %d series, want 1", name, n)
		}
	}
}

func TestNewTwiceSharesCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := New(reg), New(reg)
	a.AddIn(0, 1)
	b.AddIn(0, 1)
	if got := testutil.ToFloat64(a.in.WithLabelValues("0")); got != 2 {
		t.Errorf("events_in_total = %v, want 2 (both Metrics on one registry)", got)
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.AddIn(0, 1)
	m.AddApplied(0, 1)
	m.AddDead("x", 1)
	m.AddEmitted(KindScore, 1)
	m.SetLag(0, 1)
	m.SetWatermark(0, 1)
	m.SetEventTimeLag(0, time.Second)
	m.ObserveCommit(time.Second)
	m.AddCommitFailure()
	m.AddLostToRetention(0, 1)
	m.SetStateBytes(1, 1)
	m.SetStateWrites(1, 1, 1)
	m.SetPartitions(1)
	m.SetReady(true)
	m.ForgetPartition(0)
}

func TestConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	done := make(chan struct{})
	for p := range int32(4) {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				m.AddIn(p, 1)
				m.AddEmitted(KindScore, 1)
				m.SetLag(p, 0)
				m.SetEventTimeLag(p, time.Second)
			}
			m.ForgetPartition(p)
		}()
	}
	for range 4 {
		<-done
	}
	if got := testutil.ToFloat64(m.emitted.WithLabelValues(KindScore)); got != 4000 {
		t.Errorf("records_emitted_total{kind=score} = %v, want 4000", got)
	}
}

func BenchmarkBatch(b *testing.B) {
	m := New(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.AddIn(7, 500)
		m.AddApplied(7, 498)
		m.AddDead("malformed", 2)
		m.AddEmitted(KindScore, 300)
		m.SetLag(7, 12)
		m.SetWatermark(7, 1_790_000_000_000)
		m.ObserveCommit(2 * time.Millisecond)
	}
}

// TestSeriesFromStart: every dead-letter reason and every kind of emitted
// record has its series at 0 before anything is counted, so that rates and
// alerts over them are defined from the first scrape.
func TestSeriesFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	for _, r := range Reasons {
		if got := testutil.ToFloat64(m.dead.WithLabelValues(string(r))); got != 0 {
			t.Errorf("dead_letters_total{reason=%q} = %v at start, want 0", r, got)
		}
	}
	for _, tc := range []struct {
		name string
		want int
	}{
		{"virality_dead_letters_total", len(Reasons)},
		{"virality_records_emitted_total", 5},
		{"virality_commit_failures_total", 1},
		{"virality_build_info", 1},
	} {
		n, err := testutil.GatherAndCount(reg, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("%s: %d series at start, want %d", tc.name, n, tc.want)
		}
	}
	m.AddDead(string(event.ReasonLate), 2)
	m.AddCommitFailure()
	want := `
# HELP virality_commit_failures_total Batch commits (sink flush, state and offsets) that failed and will be retried.
# TYPE virality_commit_failures_total counter
virality_commit_failures_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "virality_commit_failures_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.dead.WithLabelValues("late")); got != 2 {
		t.Errorf("dead_letters_total{reason=late} = %v, want 2", got)
	}
}

// TestReasonsMatchEvent: Reasons lists exactly the Reason constants that
// the event package declares, so that a new reason cannot be forgotten.
func TestReasonsMatchEvent(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../event/event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
			return true
		}
		for _, v := range vs.Values {
			if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				declared = append(declared, s)
			}
		}
		return true
	})
	var listed []string
	for _, r := range Reasons {
		listed = append(listed, string(r))
	}
	slices.Sort(declared)
	slices.Sort(listed)
	if len(declared) < 10 || !slices.Equal(declared, listed) {
		t.Errorf("event declares reasons %v; metrics.Reasons lists %v", declared, listed)
	}
}

func TestBuildInfo(t *testing.T) {
	saved := currentBuild()
	t.Cleanup(func() {
		buildMu.Lock()
		build = saved
		buildMu.Unlock()
	})
	SetBuildInfo(BuildInfo{Version: "v1.2.3", Revision: "0123abcd-modified"})
	reg := prometheus.NewRegistry()
	New(reg)
	want := `
# HELP virality_build_info Always 1; the labels say which build is running.
# TYPE virality_build_info gauge
virality_build_info{goversion="` + runtime.Version() + `",revision="0123abcd-modified",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "virality_build_info"); err != nil {
		t.Fatal(err)
	}
}
