package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

// testBroker returns the Kafka to test against: the broker named by
// KAFKA_BROKERS (a real Apache Kafka in CI), or an embedded one.
func testBroker(t *testing.T) kafkaio.Config {
	t.Helper()
	kc := kafkaio.DefaultConfig()
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		kc.Brokers = strings.Split(b, ",")
		t.Logf("against the Kafka broker at %s", b)
		return kc
	}
	kc.Brokers = []string{embeddedBroker(t).Addr()}
	return kc
}

// embeddedBroker starts an in-process broker for the test, whatever
// KAFKA_BROKERS says: for tests that need its controls (FailFetches,
// DeleteRecords).
func embeddedBroker(t *testing.T) *kafkaio.Embedded {
	t.Helper()
	emb, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	return emb
}

// ownedBy returns the input partitions an instance owns.
func ownedBy(s *Service) []int32 {
	if p := s.owned.Load(); p != nil {
		return *p
	}
	return nil
}

// waitSharing waits until instances a and b between them own each of the
// n input partitions once, and each owns some.
func waitSharing(t *testing.T, a, b *Service, n int) {
	t.Helper()
	waitFor(t, "both instances to own partitions", time.Minute, func() bool {
		pa, pb := ownedBy(a), ownedBy(b)
		all := append(slices.Clone(pa), pb...)
		slices.Sort(all)
		return len(pa) > 0 && len(pb) > 0 && slices.Equal(slices.Compact(all), all) && len(all) == n
	})
}

// uniqueTopics gives each test its own topics and group, so that tests can
// share a real broker.
func uniqueTopics(t *testing.T, cfg *Config) {
	suffix := "-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000")
	cfg.InputTopic += suffix
	cfg.ScoresTopic += suffix
	cfg.TrendingTopic += suffix
	cfg.DeadLetterTopic += suffix
	cfg.Group += suffix
}

type line struct {
	value []byte
	video string
	user  string
	ts    int64
}

func generatedLines(t *testing.T, events int) []line {
	t.Helper()
	cfg := gen.DefaultConfig()
	cfg.Events = events
	cfg.Videos = 3_000
	cfg.Users = 20_000
	cfg.Duration = 3 * time.Hour
	cfg.Bursts = 3
	cfg.Campaigns = 3
	cfg.FarmAccounts = 300
	cfg.LateShare = 0.001
	cfg.BadShare = 0.001
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []line
	for {
		l, ts, ok := g.Next(nil)
		if !ok {
			return out
		}
		var ev event.Event
		video, user := "", ""
		if event.Decode(l, 0, &ev) == nil {
			video, user, ts = ev.VideoID, ev.UserID, ev.TS
		}
		out = append(out, line{value: l, video: video, user: user, ts: ts})
	}
}

// keyBy says how a producer keys likes: by video (recommended), by user,
// or not at all.
type keyBy func(l *line) []byte

func byVideo(l *line) []byte { return []byte(l.video) }
func byUser(l *line) []byte  { return []byte(l.user) }
func unkeyed(*line) []byte   { return nil }

func produce(t *testing.T, kc kafkaio.Config, topic string, lines []line) {
	t.Helper()
	produceKeyed(t, kc, topic, lines, byVideo)
}

func produceKeyed(t *testing.T, kc kafkaio.Config, topic string, lines []line, key keyBy) {
	t.Helper()
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, l := range lines {
		key := key(&lines[i])
		if len(key) == 0 {
			key = nil
		}
		if err := p.Produce(ctx, key, l.value, time.UnixMilli(l.ts)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// backfill runs the engine over the same lines split into partitions as
// the producer split them: what `virality backfill --partitions N` does.
func backfill(t *testing.T, cfg processor.Config, lines []line, n int) (scores, trending []processor.Message) {
	t.Helper()
	scores, trending, _ = backfillStats(t, cfg, lines, n)
	return scores, trending
}

// backfillStats is backfill, with the coordinator's counters at the end.
func backfillStats(t *testing.T, cfg processor.Config, lines []line, n int) (scores, trending []processor.Message, st processor.Stats) {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, tr, d := &collect{}, &collect{}, &collect{}
	g, err := processor.NewCoordinator(cfg, db, processor.Outputs{Scores: s, Trending: tr, DeadLetters: d},
		processor.Topology{Partitions: n, Partitioner: Partitioner, Stream: true, Workers: 2, Expect: n})
	if err != nil {
		t.Fatal(err)
	}
	for p := range n {
		if _, err := g.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	now := time.Now().UnixMilli()
	recs := make([]processor.Record, len(lines))
	for i, l := range lines {
		// As produced: a record time in the future becomes the clock.
		recs[i] = processor.Record{Value: l.value, Time: min(l.ts, now), Offset: int64(i)}
	}
	b := &processor.Batch{}
	b.Fill(recs, 0)
	b.Decode()
	if err := g.TakeInput(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	if err := g.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return s.msgs, tr.msgs, g.Stats()
}

type collect struct{ msgs []processor.Message }

func (c *collect) Write(m *processor.Message) error {
	c.msgs = append(c.msgs, processor.Message{Key: append([]byte(nil), m.Key...), Value: append([]byte(nil), m.Value...), Time: m.Time})
	return nil
}
func (c *collect) Flush(context.Context) error { return nil }

// readTopic reads every record of a topic, partition by partition.
func readTopic(t *testing.T, kc kafkaio.Config, topic string) []processor.Record {
	t.Helper()
	ctx := context.Background()
	n, err := kafkaio.Partitions(ctx, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	var all []processor.Record
	for p := range n {
		first, last, err := kafkaio.FirstLastOffsets(ctx, kc, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		src, err := kafkaio.NewPartitionSource(kc, topic, p, first)
		if err != nil {
			t.Fatal(err)
		}
		var recs []processor.Record
		for src.Offset() < last {
			recs, err = src.Next(ctx, recs[:0])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				// The source reuses its buffers at the next call.
				r.Key = append([]byte(nil), r.Key...)
				r.Value = append([]byte(nil), r.Value...)
				hs := make([]processor.Header, len(r.Headers))
				for i, h := range r.Headers {
					hs[i] = processor.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
				}
				r.Headers = hs
				all = append(all, r)
			}
		}
		src.Close()
	}
	return all
}

// startService runs a service until the returned stop is called.
func startService(t *testing.T, cfg Config, dir string) (*Service, func() error) {
	t.Helper()
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	svc, err := New(cfg, db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := svc.Run(ctx)
		if ctx.Err() == nil {
			t.Logf("the service stopped by itself: %v", err)
		}
		done <- err
	}()
	return svc, func() error {
		cancel()
		err := <-done
		return errors.Join(err, db.Close())
	}
}

// waitFor polls cond until it holds or the time runs out.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	if !eventually(limit, cond) {
		// What every goroutine was doing: a wait that never ends is most
		// often a call that never returns.
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("timed out after %v waiting for %s; goroutines:\n%s", limit, what, buf)
	}
}

// eventually polls cond until it holds or limit passes, and reports
// whether it held.
func eventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func testConfig(t *testing.T, kc kafkaio.Config) Config {
	cfg := DefaultConfig()
	cfg.Kafka = kc
	cfg.IdleTimeout = time.Second
	cfg.CommitInterval = 200 * time.Millisecond
	cfg.Engine.CommitEvery = 5_000
	uniqueTopics(t, &cfg)
	return cfg
}

func createInput(t *testing.T, kc kafkaio.Config, topic string, n int) {
	t.Helper()
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: n}}); err != nil {
		t.Fatal(err)
	}
}

func lastPerVideo(recs []processor.Message) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		m[string(r.Key)] = string(r.Value)
	}
	return m
}

func lastPerVideoRecords(recs []processor.Record) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		m[string(r.Key)] = string(r.Value)
	}
	return m
}

// completeTrending keeps the snapshots of ticks every partition reached
// with its own events, as JSON lines in order.
func completeTrending(t *testing.T, values [][]byte, lines []line, n int) []string {
	t.Helper()
	maxTS := make([]int64, n)
	for _, l := range lines {
		if l.video != "" {
			p := kafkaio.PartitionOf([]byte(l.video), n)
			maxTS[p] = max(maxTS[p], l.ts)
		}
	}
	last := maxTS[0]
	for _, m := range maxTS {
		last = min(last, m)
	}
	// A list may be written again after a rebalance or a crash (output is
	// at least once), never differently.
	var out []string
	seen := map[string]string{}
	for _, v := range values {
		var s struct {
			TS     int64  `json:"ts"`
			Region string `json:"region"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprint(s.TS, s.Region)
		if prev, ok := seen[k]; ok {
			if prev != string(v) {
				t.Fatalf("trending %s has conflicting lists:\n%s\n%s", k, prev, v)
			}
			continue
		}
		seen[k] = string(v)
		if s.TS <= last-5*60_000 { // well inside: ticks near the end may wait on idleness
			out = append(out, string(v))
		}
	}
	return out
}

// TestLiveMatchesBackfill: generated likes in an 8-partition topic, the
// live service consumes them; once they are consumed and the idle timeout
// has passed, the last score of every video on video-scores equals the
// backfill's last record of it, and the trending snapshots of the ticks
// every partition reached are the backfill's.
//
// The input may be keyed by video (each record already in its video's
// partition), by user or not at all: records reach their video's partition
// through the repartition topic, and the outputs are the same. So they are
// when the input held read but not yet applied is bounded to 1 MiB (the
// fetchers wait on each other all the time, and a byte the gate lost would
// soon stop them all), and so is the output waiting for the broker.
func TestLiveMatchesBackfill(t *testing.T) {
	tight := func(c *Config) { c.InputMaxBytes, c.OutputMaxBytes, c.FetchMaxBytes = 1<<20, 1<<20, 16<<10 }
	for _, tc := range []struct {
		name string
		key  keyBy
		set  func(*Config)
	}{
		{"by video", byVideo, nil}, {"by user", byUser, nil}, {"unkeyed", unkeyed, nil},
		{"by user with 1 MiB of input and output held", byUser, tight},
	} {
		t.Run(tc.name, func(t *testing.T) { liveMatchesBackfill(t, tc.key, tc.set) })
	}
}

func liveMatchesBackfill(t *testing.T, key keyBy, set func(*Config)) {
	kc := testBroker(t)
	cfg := testConfig(t, kc)
	if set != nil {
		set(&cfg)
	}
	const n = 8
	lines := generatedLines(t, 40_000)
	createInput(t, kc, cfg.InputTopic, n)
	produceKeyed(t, kc, cfg.InputTopic, lines, key)

	wantScores, wantTrending, wantStats := backfillStats(t, cfg.Engine, lines, n)
	want := lastPerVideo(wantScores)

	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(len(lines)) })
	// Once the input is idle, held-back scores are flushed: wait for the
	// last record of every video to be the backfill's.
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
	var backTr [][]byte
	for _, m := range wantTrending {
		backTr = append(backTr, m.Value)
	}
	b := completeTrending(t, backTr, lines, n)
	// The merge of the partitions' lists lags the scores: partitions close
	// ticks as their slowest source advances, and the merger emits them
	// once every partition has reported.
	var a []string
	trendingDone := func() bool {
		var liveTr [][]byte
		for _, r := range readTopic(t, kc, cfg.TrendingTopic) {
			liveTr = append(liveTr, r.Value)
		}
		a = completeTrending(t, liveTr, lines, n)
		return len(a) >= len(b)
	}
	eventually(time.Minute, func() bool { return converged() && trendingDone() }) // checked below, with the differences
	// The counters follow the likes through the internal topics: every
	// like the backfill applied is counted once it is applied, though the
	// input went idle before.
	wantApplied := wantStats.Applied - wantStats.IgnoredLikes - wantStats.StrayUnlikes
	applied := func() bool {
		return svc.Applied.Load() == wantApplied &&
			svc.Applied.Load()+svc.Ignored.Load()+svc.DeadLetters.Load() == int64(len(lines))
	}
	eventually(time.Minute, applied)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%d videos on %s, backfill has %d", len(got), cfg.ScoresTopic, len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("video %s:\n live:     %s\n backfill: %s", id, got[id], w)
		}
	}
	if len(a) == 0 || len(a) != len(b) {
		for i := 0; i < min(len(a), len(b)); i++ {
			if a[i] != b[i] {
				t.Logf("first difference at %d:\n live:     %.300s\n backfill: %.300s", i, a[i], b[i])
				break
			}
		}
		t.Fatalf("trending: %d live snapshots, %d backfill", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("trending snapshot %d:\n live:     %s\n backfill: %s", i, a[i], b[i])
		}
	}
	if !applied() {
		t.Fatalf("the service counted %d likes applied, %d ignored and %d dead-lettered of %d; the backfill applied %d",
			svc.Applied.Load(), svc.Ignored.Load(), svc.DeadLetters.Load(), len(lines), wantApplied)
	}
	t.Logf("%d videos and %d trending records agree", len(want), len(a))
}

// TestRestoreFromChangelog: an instance consumes the first half of the
// input and stops; another, with an empty state directory, takes the
// partitions, restores their state from the changelog topic and consumes
// the second half: every video ends as in the backfill of the whole, as if
// one instance had done it all, and so do the trending lists. Stopped in
// the middle of a backlog, the first leaves partitions' trending reports
// it has not merged, which the second reads again from the partials topic.
// Compacted between the two (the embedded broker's Clean, as Kafka's log
// cleaner does to a changelog within minutes at a few MB/s), the changelog
// keeps each key's last change only, with the commits' last records
// (their meta records) gone but the last: the second restores the same.
func TestRestoreFromChangelog(t *testing.T) {
	t.Run("after the first half", func(t *testing.T) { restoreFromChangelog(t, false, false) })
	t.Run("in the middle of a backlog", func(t *testing.T) { restoreFromChangelog(t, true, false) })
	t.Run("compacted", func(t *testing.T) { restoreFromChangelog(t, false, true) })
}

func restoreFromChangelog(t *testing.T, midStream, compact bool) {
	var kc kafkaio.Config
	var emb *kafkaio.Embedded
	if compact {
		var err error
		// Retention kept off the generated likes' old record times: only
		// compaction drops records here, of every segment but the last
		// (the active one, as in Kafka), so segments are small.
		o := kafkaio.EmbeddedOptions{RetentionTime: 100 * 365 * 24 * time.Hour, CleanInterval: time.Hour, SegmentBytes: 16 << 10}
		if emb, err = kafkaio.StartEmbeddedWith(context.Background(), "127.0.0.1:0", o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emb.Close)
		kc = emb.Config()
	} else {
		kc = testBroker(t)
	}
	cfg := testConfig(t, kc)
	if compact {
		// Many commits, small fetches: the commits' changes compacted.
		cfg.Engine.CommitEvery = 200
		cfg.FetchMaxBytes = 16 << 10
	}
	if midStream {
		// Small fetches: the stop comes while partitions are at
		// different ticks.
		cfg.FetchMaxBytes = 16 << 10
	}
	const n = 4
	lines := generatedLines(t, 40_000)
	half := len(lines) / 2
	createInput(t, kc, cfg.InputTopic, n)
	if midStream {
		produceKeyed(t, kc, cfg.InputTopic, lines, byUser)
	} else {
		produceKeyed(t, kc, cfg.InputTopic, lines[:half], byUser)
	}
	wantScores, wantTrending := backfill(t, cfg.Engine, lines, n)
	want := lastPerVideo(wantScores)
	var backTr [][]byte
	for _, m := range wantTrending {
		backTr = append(backTr, m.Value)
	}
	wantLists := completeTrending(t, backTr, lines, n)

	first, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "the first half consumed", time.Minute, func() bool {
		if midStream {
			return first.EventsIn.Load() >= int64(half)
		}
		return first.EventsIn.Load() == int64(half)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if compact {
		before := len(readTopic(t, kc, cfg.ChangelogTopic()))
		emb.Clean()
		after := len(readTopic(t, kc, cfg.ChangelogTopic()))
		if after >= before {
			t.Fatalf("compaction kept all %d records of the changelog", before)
		}
		t.Logf("compaction kept %d of the changelog's %d records", after, before)
	}
	if !midStream {
		produceKeyed(t, kc, cfg.InputTopic, lines[half:], byUser)
	}
	second, stop := startService(t, cfg, t.TempDir())
	var got map[string]string
	waitFor(t, "every video's last record to be the backfill's", 2*time.Minute, func() bool {
		got = lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic))
		for id, w := range want {
			if got[id] != w {
				return false
			}
		}
		return len(got) == len(want)
	})
	var lists []string
	eventually(time.Minute, func() bool {
		var live [][]byte
		for _, r := range readTopic(t, kc, cfg.TrendingTopic) {
			live = append(live, r.Value)
		}
		lists = completeTrending(t, live, lines, n)
		return len(lists) >= len(wantLists)
	}) // checked below, with the differences
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if in := second.EventsIn.Load(); !midStream && in != int64(len(lines)-half) {
		t.Fatalf("the second instance read %d records, want the %d of the second half", in, len(lines)-half)
	}
	if len(lists) != len(wantLists) || len(lists) == 0 {
		t.Fatalf("trending: %d snapshots live, %d in the backfill", len(lists), len(wantLists))
	}
	for i := range lists {
		if lists[i] != wantLists[i] {
			t.Fatalf("trending snapshot %d:\n live:     %s\n backfill: %s", i, lists[i], wantLists[i])
		}
	}
	t.Logf("%d videos and %d trending lists agree; the second instance restored what the first committed and read %d records", len(want), len(lists), second.EventsIn.Load())
}
