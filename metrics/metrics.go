// Package metrics holds the Prometheus collectors of the live service.
//
// The service calls plain methods (AddIn, SetLag, ...) once per batch; the
// collectors are registered on a registry the caller gives, never on the
// global one, so tests and several services in one process do not collide.
package metrics

import (
	"errors"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/viralityhq/virality/event"
)

// Namespace prefixes every metric name.
const Namespace = "virality"

// Kinds of emitted records, the values of the kind label of
// records_emitted_total.
const (
	KindScore      = "score"
	KindTrending   = "trending"
	KindDeadLetter = "dead_letter"
	// Creator score records and rising-creators lists.
	KindCreator        = "creator"
	KindRisingCreators = "rising_creators"
)

// Reasons are the dead-letter reasons, the values of the reason label of
// dead_letters_total: the decoder's and the processor's (late, future).
// Their series exist at 0 from the start, so that a rate or an alert over
// one reason has a series before its first dead letter.
var Reasons = []event.Reason{
	event.ReasonBadJSON, event.ReasonBadField, event.ReasonMissingVideo, event.ReasonMissingUser,
	event.ReasonTooLong, event.ReasonInvalidUTF8, event.ReasonBadAction, event.ReasonBadTS,
	event.ReasonMissingTS, event.ReasonFuture, event.ReasonLate,
}

// IgnoredReasons are the values of the reason label of
// events_ignored_total. A like taken from the input is applied, ignored
// for one of them, or dead-lettered.
var IgnoredReasons = []string{IgnoredRepeatedLike, IgnoredStrayUnlike, IgnoredReplayed}

const (
	IgnoredRepeatedLike = "repeated_like"
	IgnoredStrayUnlike  = "stray_unlike"
	IgnoredReplayed     = "replayed"
)

// BuildInfo is the labels of build_info: what binary is running.
type BuildInfo struct {
	Version   string // the release, or Go's module version of the build
	GoVersion string // the Go toolchain that built it (runtime.Version())
	Revision  string // the VCS revision, with "-modified" when the tree was dirty
}

var (
	buildMu sync.Mutex
	build   = BuildInfo{Version: "unknown", GoVersion: runtime.Version(), Revision: "unknown"}
)

// SetBuildInfo sets the labels of build_info for the collectors that New
// creates afterwards. The command sets it once at start; empty fields keep
// their defaults ("unknown", and runtime.Version() for GoVersion).
func SetBuildInfo(b BuildInfo) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if b.Version != "" {
		build.Version = b.Version
	}
	if b.GoVersion != "" {
		build.GoVersion = b.GoVersion
	}
	if b.Revision != "" {
		build.Revision = b.Revision
	}
}

func currentBuild() BuildInfo {
	buildMu.Lock()
	defer buildMu.Unlock()
	return build
}

// CommitBuckets are the upper bounds, in seconds, of batch_commit_seconds:
// from half a millisecond (an in-memory batch) to 5 s (a stalled disk).
var CommitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics is the service's collectors.
//
// Every method is safe for concurrent use: partition goroutines call them
// at the end of each batch. Label children are looked up once and cached,
// so a call costs a read lock and an atomic add. Methods on a nil *Metrics
// do nothing, for modes that export no metrics (backfill, replay).
type Metrics struct {
	in, applied, dead, emitted, lost    *prometheus.CounterVec
	ignored                             *prometheus.CounterVec
	stateWritten, cacheLookups          *prometheus.CounterVec
	lag, watermark, timeLag, stateBytes *prometheus.GaugeVec
	commit                              prometheus.Histogram
	commitFailures, restored            prometheus.Counter
	partitions, ready, restoring        prometheus.Gauge
	inputHeld                           prometheus.Gauge
	eventsHeld                          *prometheus.GaugeVec
	disk, memtable                      prometheus.Gauge
	wal, flushed, compacted             prometheus.Counter
	cacheHits, cacheMisses              prometheus.Counter

	// written and looked are the store's counts at the last
	// SetStateWrites and SetStateCache.
	written [3]uint64
	looked  [2]uint64

	mu     sync.RWMutex
	parts  map[int32]*partition
	labels map[labelKey]prometheus.Counter // dead letters and emitted records
}

// partition is the cached label children of one partition.
type partition struct {
	in, applied    prometheus.Counter
	lag, watermark prometheus.Gauge
	timeLag        prometheus.Gauge // nil until the first SetEventTimeLag, guarded by mu
}

type labelKey struct {
	vec   *prometheus.CounterVec
	value string
}

// New creates the collectors and registers them, with build_info and the
// Go runtime and process collectors, on reg. Calling New again with the same registry
// returns metrics backed by the collectors already registered. It panics if
// a different collector of the same name is registered on reg, which is a
// programming error.
func New(reg *prometheus.Registry) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: name, Help: help,
		}, labels))
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: name, Help: help,
		}, labels))
	}
	gauge := func(name, help string) prometheus.Gauge {
		return register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: name, Help: help,
		}))
	}
	m := &Metrics{
		in:           counter("events_in_total", "Like events taken from the input topic.", "partition"),
		applied:      counter("events_applied_total", "Like events applied to the state (not dead-lettered, not ignored).", "partition"),
		dead:         counter("dead_letters_total", "Events sent to the dead-letter topic, by reason.", "reason"),
		ignored:      counter("events_ignored_total", "Valid events that changed nothing, by reason (repeated_like: a like while the user's like stood; stray_unlike: an unlike with no like standing; replayed: an event the partition had applied before a restart).", "reason"),
		emitted:      counter("records_emitted_total", "Records written to the output topics, by kind (score, trending, dead_letter, creator, rising_creators).", "kind"),
		lost:         counter("records_lost_to_retention_total", "Records a partition skipped because retention deleted them before they were read.", "partition"),
		lag:          gaugeVec("lag_records", "Records between the committed offset and the end of the partition.", "partition"),
		watermark:    gaugeVec("watermark_seconds", "Event-time watermark of the partition, seconds since the Unix epoch (0 before its first event).", "partition"),
		timeLag:      gaugeVec("event_time_lag_seconds", "Wall clock minus the event-time watermark of the partition, in seconds.", "partition"),
		stateBytes:   gaugeVec("state_bytes", "Size of the local state, by kind (disk, memtable).", "kind"),
		stateWritten: counter("state_written_bytes_total", "Bytes the state store wrote, by what wrote them (wal: commits to the write-ahead log, flush: memtables written as tables, compaction: tables rewritten by compactions).", "by"),
		cacheLookups: counter("state_block_cache_lookups_total", "Blocks the state store looked up in its block cache, by result (hit; miss: read from the file system).", "result"),
		commit: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "batch_commit_seconds",
			Help:    "Time to flush the sinks and commit one batch of state and offsets.",
			Buckets: CommitBuckets,
		})),
		commitFailures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "commit_failures_total",
			Help: "Batch commits (sink flush, state and offsets) that failed and will be retried.",
		})),
		restored: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "restored_records_total",
			Help: "Changelog records read to restore the state of partitions assigned to this instance.",
		})),
		restoring:  gauge("partitions_restoring", "Partitions whose state is being restored from the changelog."),
		partitions: gauge("partitions_owned", "Input partitions assigned to this instance."),
		eventsHeld: gaugeVec("events_held", "Events taken but not yet applied, by where they wait (weighing: in the account stages, for the buckets their weights read to close; reorder: in the partitions' reorder buffers, for the watermark).", "where"),
		inputHeld:  gauge("input_held_bytes", "Input read from the broker but not yet applied, decoded, in bytes (bounded by a share of --memory-budget)."),
		ready:      gauge("ready", "1 when the service is ready (assignments loaded, broker reachable), else 0."),
		parts:      map[int32]*partition{},
		labels:     map[labelKey]prometheus.Counter{},
	}
	m.disk = m.stateBytes.WithLabelValues("disk")
	m.memtable = m.stateBytes.WithLabelValues("memtable")
	m.wal = m.stateWritten.WithLabelValues("wal")
	m.flushed = m.stateWritten.WithLabelValues("flush")
	m.compacted = m.stateWritten.WithLabelValues("compaction")
	m.cacheHits = m.cacheLookups.WithLabelValues("hit")
	m.cacheMisses = m.cacheLookups.WithLabelValues("miss")
	for _, r := range IgnoredReasons {
		m.counter(m.ignored, r)
	}
	m.SetEventsHeld(0, 0) // both series from the start
	for _, r := range Reasons {
		m.counter(m.dead, string(r))
	}
	for _, k := range []string{KindScore, KindTrending, KindDeadLetter, KindCreator, KindRisingCreators} {
		m.counter(m.emitted, k)
	}
	b := currentBuild()
	gaugeVec("build_info", "Always 1; the labels say which build is running.", "version", "goversion", "revision").
		WithLabelValues(b.Version, b.GoVersion, b.Revision).Set(1)
	register(reg, collectors.NewGoCollector())
	register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register registers c on reg, or returns the equal collector registered
// before.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("metrics: register: " + err.Error())
}

// AddIn counts n records taken from a partition.
func (m *Metrics) AddIn(partition int32, n int64) {
	if m == nil {
		return
	}
	m.partition(partition).in.Add(float64(n))
}

// AddApplied counts n events of a partition applied to the state.
func (m *Metrics) AddApplied(partition int32, n int64) {
	if m == nil {
		return
	}
	m.partition(partition).applied.Add(float64(n))
}

// AddIgnored counts n events ignored for a reason (IgnoredReasons).
func (m *Metrics) AddIgnored(reason string, n int64) {
	if m == nil || n == 0 {
		return
	}
	m.counter(m.ignored, reason).Add(float64(n))
}

// AddDead counts n dead letters for a reason.
func (m *Metrics) AddDead(reason string, n int64) {
	if m == nil {
		return
	}
	m.counter(m.dead, reason).Add(float64(n))
}

// AddEmitted counts n records emitted of a kind (KindScore, KindTrending,
// KindDeadLetter).
func (m *Metrics) AddEmitted(kind string, n int64) {
	if m == nil {
		return
	}
	m.counter(m.emitted, kind).Add(float64(n))
}

// AddLostToRetention counts n records of a partition that were deleted
// (retention) before the service read them: it resumed after them.
func (m *Metrics) AddLostToRetention(partition int32, n int64) {
	if m == nil {
		return
	}
	m.counter(m.lost, partitionLabel(partition)).Add(float64(n))
}

// SetLag sets the lag of a partition, in records.
func (m *Metrics) SetLag(partition int32, lag int64) {
	if m == nil {
		return
	}
	m.partition(partition).lag.Set(float64(lag))
}

// SetWatermark sets the event-time watermark of a partition from epoch ms
// (as the engine keeps it); the gauge is in seconds.
func (m *Metrics) SetWatermark(partition int32, ms int64) {
	if m == nil {
		return
	}
	m.partition(partition).watermark.Set(float64(ms) / 1000)
}

// SetEventTimeLag sets how far a partition's event time is behind: the wall
// clock minus its watermark. The gauge is in seconds; a partition has no
// series until its first call, so that "never set" does not read as "no
// lag".
func (m *Metrics) SetEventTimeLag(partition int32, lag time.Duration) {
	if m == nil {
		return
	}
	c := m.partition(partition)
	m.mu.RLock()
	g := c.timeLag
	m.mu.RUnlock()
	if g == nil {
		m.mu.Lock()
		if c.timeLag == nil {
			c.timeLag = m.timeLag.WithLabelValues(partitionLabel(partition))
		}
		g = c.timeLag
		m.mu.Unlock()
	}
	g.Set(lag.Seconds())
}

// ObserveCommit records how long a batch commit took.
func (m *Metrics) ObserveCommit(d time.Duration) {
	if m == nil {
		return
	}
	m.commit.Observe(d.Seconds())
}

// AddCommitFailure counts one failed batch commit.
func (m *Metrics) AddCommitFailure() {
	if m == nil {
		return
	}
	m.commitFailures.Inc()
}

// SetRestoring sets the number of partitions being restored.
func (m *Metrics) SetRestoring(n int) {
	if m == nil {
		return
	}
	m.restoring.Set(float64(n))
}

// AddRestored counts changelog records read by restores.
func (m *Metrics) AddRestored(n int64) {
	if m == nil {
		return
	}
	m.restored.Add(float64(n))
}

// SetStateBytes sets the size of the state on disk and in memtables.
func (m *Metrics) SetStateBytes(disk, memtable uint64) {
	if m == nil {
		return
	}
	m.disk.Set(float64(disk))
	m.memtable.Set(float64(memtable))
}

// SetStateWrites advances the counts of bytes the state store wrote to
// the store's own counts since it opened (a count below the last one
// starts over: the store was opened again). It is called from one
// goroutine.
func (m *Metrics) SetStateWrites(wal, flushed, compacted uint64) {
	if m == nil {
		return
	}
	addCounts([]prometheus.Counter{m.wal, m.flushed, m.compacted}, []uint64{wal, flushed, compacted}, m.written[:])
}

// SetStateCache adds to the block cache's counters what the store's
// counts of hits and misses grew by since the last call, as
// SetStateWrites does. It is called from one goroutine.
func (m *Metrics) SetStateCache(hits, misses uint64) {
	if m == nil {
		return
	}
	addCounts([]prometheus.Counter{m.cacheHits, m.cacheMisses}, []uint64{hits, misses}, m.looked[:])
}

// addCounts adds to each counter what its count grew by since prev (all
// of it if it fell: the store was opened again), and keeps the counts in
// prev.
func addCounts(cs []prometheus.Counter, counts, prev []uint64) {
	for i, c := range cs {
		p := prev[i]
		if counts[i] < p {
			p = 0
		}
		c.Add(float64(counts[i] - p))
		prev[i] = counts[i]
	}
}

// SetEventsHeld sets the events the account stages hold for weighing and
// the partitions' reorder buffers hold for the watermark.
func (m *Metrics) SetEventsHeld(weighing, reorder int64) {
	if m == nil {
		return
	}
	m.eventsHeld.WithLabelValues("weighing").Set(float64(weighing))
	m.eventsHeld.WithLabelValues("reorder").Set(float64(reorder))
}

// SetInputHeld sets the bytes of input read but not yet applied.
func (m *Metrics) SetInputHeld(n int64) {
	if m == nil {
		return
	}
	m.inputHeld.Set(float64(n))
}

// SetPartitions sets the number of partitions this instance owns.
func (m *Metrics) SetPartitions(n int) {
	if m == nil {
		return
	}
	m.partitions.Set(float64(n))
}

// SetReady sets the ready gauge to 1 or 0.
func (m *Metrics) SetReady(ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.ready.Set(v)
}

// ForgetPartition deletes the series of a partition, when it is revoked, so
// that an instance exports only the partitions it owns. Its counters start
// from zero if it comes back, which Prometheus reads as a counter reset.
func (m *Metrics) ForgetPartition(partition int32) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.parts, partition)
	l := partitionLabel(partition)
	m.in.DeleteLabelValues(l)
	m.applied.DeleteLabelValues(l)
	m.lag.DeleteLabelValues(l)
	m.watermark.DeleteLabelValues(l)
	m.timeLag.DeleteLabelValues(l)
	m.lost.DeleteLabelValues(l)
	delete(m.labels, labelKey{m.lost, l})
}

// partition returns the cached children of a partition, creating them on
// first use.
func (m *Metrics) partition(p int32) *partition {
	m.mu.RLock()
	c := m.parts[p]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.parts[p]; c == nil {
		l := partitionLabel(p)
		c = &partition{
			in:        m.in.WithLabelValues(l),
			applied:   m.applied.WithLabelValues(l),
			lag:       m.lag.WithLabelValues(l),
			watermark: m.watermark.WithLabelValues(l),
		}
		m.parts[p] = c
	}
	return c
}

// counter returns the cached child of vec for a label value.
func (m *Metrics) counter(vec *prometheus.CounterVec, value string) prometheus.Counter {
	k := labelKey{vec, value}
	m.mu.RLock()
	c := m.labels[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.labels[k]; c == nil {
		c = vec.WithLabelValues(value)
		m.labels[k] = c
	}
	return c
}

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
