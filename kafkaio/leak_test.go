package kafkaio

import (
	"runtime"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
)

// TestNoGoroutineLeak checks that closing every sink and source, and the
// one-shot calls, leave no kafka-go goroutine behind (each transport
// polls metadata in a goroutine of its own until closed).
func TestNoGoroutineLeak(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "t", Partitions: 2})
	ctx := testCtx(t, 20*time.Second)
	settle := func() int {
		time.Sleep(50 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	base := settle()
	for range 3 {
		s, err := NewSink(c, "t", SinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Write(&processor.Message{Key: []byte("k"), Value: []byte("v")})
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		src, err := NewPartitionSource(c, "t", PartitionOf([]byte("k"), 2), 0)
		if err != nil {
			t.Fatal(err)
		}
		src.MaxWait = 10 * time.Millisecond
		if _, err := src.Next(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := Ping(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := FirstLastOffsets(ctx, c, "t", 0); err != nil {
			t.Fatal(err)
		}
		s.Close()
		src.Close()
	}
	var n int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if n = settle(); n <= base+2 {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after closing everything, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
}
