package kafkaio

import (
	"fmt"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
)

// BenchmarkSink measures Write and Flush of score-sized records to the
// embedded broker (which shares the CPU), flushing every 10000 records as
// the engine's commits do.
func BenchmarkSink(b *testing.B) {
	c := broker(b)
	mustTopics(b, c, TopicSpec{Name: "out", Partitions: 8})
	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(b, 10*time.Minute)
	value := make([]byte, 300)
	key := make([]byte, 0, 16)
	b.ReportAllocs()
	start := time.Now()
	i := 0
	for b.Loop() {
		key = fmt.Appendf(key[:0], "v%d", i%100_000)
		if err := s.Write(&processor.Message{Key: key, Value: value, Time: int64(i)}); err != nil {
			b.Fatal(err)
		}
		if i++; i%10_000 == 0 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkPartitionSource measures reading records back.
func BenchmarkPartitionSource(b *testing.B) {
	c := broker(b)
	mustTopics(b, c, TopicSpec{Name: "in", Partitions: 1})
	ctx := testCtx(b, 10*time.Minute)
	s, err := NewSink(c, "in", SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	value := make([]byte, 150)
	const n = 200_000
	for i := range n {
		s.Write(&processor.Message{Key: fmt.Appendf(nil, "v%d", i), Value: value, Time: int64(i + 1)})
		if i%10_000 == 0 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	read := 0
	var src *PartitionSource
	var buf []processor.Record
	for b.Loop() {
		if src == nil || src.Offset() >= n {
			if src != nil {
				src.Close()
			}
			if src, err = NewPartitionSource(c, "in", 0, 0); err != nil {
				b.Fatal(err)
			}
		}
		if buf, err = src.Next(ctx, buf); err != nil {
			b.Fatal(err)
		}
		read += len(buf)
	}
	if src != nil {
		src.Close()
	}
	b.ReportMetric(float64(read)/time.Since(start).Seconds(), "records/s")
}
