package view

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// benchRecord is a score record as the service writes it (about 350 bytes).
func benchRecord(video string, ts, seq int64) []byte {
	return fmt.Appendf(nil, `{"video_id":%q,"ts":%d,"seq":%d,"model":"trending","score":12.512345678,"likes":40,"unique_likers":42,"unlikes":2,`+
		`"likes_1m":5,"likes_5m":21,"likes_1h":40,"likes_24h":40,"rate_5m":4.1234567,"rate_1h":0.6234567,"rate_24h":0.0271234,"velocity":4.1234567,"acceleration":3.48,"damped_likes_5m":0,"damped_likes_1h":0,"damped_reason":""}`,
		video, ts, seq)
}

func benchRecords(videos int) []processor.Record {
	recs := make([]processor.Record, videos)
	for i := range recs {
		id := fmt.Sprintf("v%07d", i)
		recs[i] = processor.Record{Key: []byte(id), Value: benchRecord(id, 1793491200000+int64(i), 1)}
	}
	return recs
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkGet looks up videos of a view holding 1,000,000.
func BenchmarkGet(b *testing.B) {
	const n = 1_000_000
	v := newView(DefaultConfig())
	recs := benchRecords(n)
	v.applyScores(recs, nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = string(recs[i].Key)
	}
	recs = nil
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := v.Get(ids[i]); !ok {
			b.Fatal("missing video")
		}
		i++
		if i == n {
			i = 0
		}
	}
}

// BenchmarkGetParallel is BenchmarkGet from every core at once.
func BenchmarkGetParallel(b *testing.B) {
	const n = 1_000_000
	v := newView(DefaultConfig())
	recs := benchRecords(n)
	v.applyScores(recs, nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = string(recs[i].Key)
	}
	recs = nil
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			v.Get(ids[i])
			i = (i + 7919) % n
		}
	})
}

// BenchmarkApply decodes and applies score records of 100,000 new videos
// in chunks as follow does, without Kafka, and reports the heap a held
// video costs (measured once, outside the timed loop).
func BenchmarkApply(b *testing.B) {
	const n = 100_000
	recs := benchRecords(n)
	apply := func() *View {
		v := newView(DefaultConfig())
		var items []item
		for i := 0; i < n; i += applyChunk {
			items = v.applyScores(recs[i:min(i+applyChunk, n)], items[:0])
		}
		if len(v.videos) != n {
			b.Fatalf("%d videos held, want %d", len(v.videos), n)
		}
		return v
	}
	before := heapInUse()
	v := apply()
	perVideo := float64(heapInUse()-before) / n
	runtime.KeepAlive(v)
	v = nil

	b.ReportAllocs()
	for b.Loop() {
		apply()
	}
	b.ReportMetric(perVideo, "B/video")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkBootstrap opens a view of 400,000 score records (200,000
// videos, 2 records each) in 4 partitions of an embedded broker and waits
// until it is ready.
func BenchmarkBootstrap(b *testing.B) {
	const videos, perVideo, parts = 200_000, 2, 4
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	broker, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	cfg := DefaultConfig()
	cfg.Kafka = broker.Config()
	cfg.TrendingTopic = ""
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{{Name: cfg.ScoresTopic, Partitions: parts, Compacted: true}}); err != nil {
		b.Fatal(err)
	}
	p, err := kafkaio.NewProducer(cfg.Kafka, cfg.ScoresTopic)
	if err != nil {
		b.Fatal(err)
	}
	for seq := int64(1); seq <= perVideo; seq++ {
		for i := range videos {
			id := fmt.Sprintf("v%07d", i)
			if err := p.Produce(ctx, []byte(id), benchRecord(id, 1793491200000+int64(i)+seq, seq), time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	p.Close()

	b.ReportAllocs()
	for b.Loop() {
		v, err := Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		if st := v.Stats(); st.Videos != videos || st.Applied != videos*perVideo {
			b.Fatalf("Stats = %+v", st)
		}
		v.Close()
	}
	b.ReportMetric(float64(videos*perVideo)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
