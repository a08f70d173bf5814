package processor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/store"
)

// discard is a sink that keeps nothing.
type discard struct{ n int64 }

func (d *discard) Write(m *Message) error      { d.n += int64(len(m.Value)); return nil }
func (d *discard) Flush(context.Context) error { return nil }

// BenchmarkEngine applies a generated workload end to end: decode, state
// on disk, scoring, emission and commits, outputs discarded.
func BenchmarkEngine(b *testing.B) {
	cfg := gen.DefaultConfig()
	cfg.Events = 500_000
	cfg.Videos = 50_000
	cfg.Users = 250_000
	cfg.Duration = 2 * time.Hour
	recs, _ := generate(b, cfg)
	b.ReportAllocs()
	b.ResetTimer()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		dir, _ := os.MkdirTemp("", "bench")
		db, err := store.Open(dir, store.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		g, err := NewCoordinator(DefaultConfig(), db, Outputs{Scores: &discard{}, Trending: &discard{}, DeadLetters: &discard{}}, oneSource(1, 1))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.Open(0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := Run(context.Background(), g, &sliceSource{recs: recs, step: 4096}, RunOptions{Decoders: 1}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		_ = db.Close()
		_ = os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/total.Seconds(), "events/s")
}
