package kafkaio

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
)

func TestProducerPartitionOf(t *testing.T) {
	c := broker(t)
	const parts, n = 8, 2000
	mustTopics(t, c, TopicSpec{Name: "likes", Partitions: parts})
	ctx := testCtx(t, 20*time.Second)
	p, err := NewProducer(c, "likes")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	key := make([]byte, 0, 16)
	for i := range n {
		key = fmt.Appendf(key[:0], "v%d", i) // reused: Produce copies
		if err := p.Produce(ctx, key, fmt.Append(nil, i), time.UnixMilli(int64(1000+i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Writes() != n || p.Buffered() != 0 {
		t.Fatalf("writes %d, buffered %d", p.Writes(), p.Buffered())
	}
	seen, used := 0, map[int]bool{}
	for part := range parts {
		src, err := NewPartitionSource(c, "likes", part, 0)
		if err != nil {
			t.Fatal(err)
		}
		src.MaxWait = 50 * time.Millisecond
		var buf []processor.Record
		for {
			if buf, err = src.Next(ctx, buf); err != nil {
				t.Fatal(err)
			}
			if len(buf) == 0 {
				break
			}
			for _, r := range buf {
				seen++
				used[part] = true
				if want := PartitionOf(r.Key, parts); want != part {
					t.Errorf("key %s is in partition %d, PartitionOf says %d", r.Key, part, want)
				}
				if want := "v" + string(r.Value); string(r.Key) != want {
					t.Errorf("key %s with value %s", r.Key, r.Value)
				}
			}
		}
		src.Close()
	}
	if seen != n || len(used) != parts {
		t.Errorf("read %d records from %d partitions, want %d from %d", seen, len(used), n, parts)
	}
}

// TestPartitionOfJava pins PartitionOf to values of Java's default
// partitioner (Utils.toPositive(Utils.murmur2(key)) % n).
func TestPartitionOfJava(t *testing.T) {
	for _, tc := range []struct {
		key  string
		n    int
		want int
	}{
		// murmur2 values from Kafka's UtilsTest.testMurmur2.
		{"21", 1000, (-973932308 & 0x7fffffff) % 1000},
		{"foobar", 1000, (-790332482 & 0x7fffffff) % 1000},
		{"abc", 1000, 479470107 % 1000},
		{"a-little-bit-long-string", 7, (-985981536 & 0x7fffffff) % 7},
		{"hello", 1, 0},
	} {
		if got := PartitionOf([]byte(tc.key), tc.n); got != tc.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
}

// TestSinkRetry checks that a failed Flush keeps its records and that the
// next Flush, once the broker is back, writes them all in order.
func TestSinkRetry(t *testing.T) {
	// Find a free port to restart the broker on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e, err := StartEmbedded(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Config()
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 2})
	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := s.Write(&processor.Message{Key: fmt.Appendf(nil, "k%d", i%5), Value: fmt.Append(nil, i), Time: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 10)
	if err := s.Flush(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	write(10, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = s.Flush(ctx)
	cancel()
	if err == nil {
		t.Fatal("flush to a stopped broker succeeded")
	}
	if !strings.HasPrefix(err.Error(), `write to topic "out": `) {
		t.Errorf("error %q does not name the topic", err)
	}
	if s.Buffered() != 20 {
		t.Fatalf("%d records buffered after a failed flush, want 20", s.Buffered())
	}

	e2, err := StartEmbedded(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 2})
	if err := s.Flush(testCtx(t, 20*time.Second)); err != nil {
		t.Fatalf("flush after the broker came back: %v", err)
	}
	// kafka-go keeps retrying the batches of the cancelled flush in the
	// background, ahead of the retried ones in each partition's queue, so
	// records may be written twice; but every record is there, and the
	// last record of each key is its newest.
	seen := map[string]bool{}
	last := map[int]string{}
	for p := range 2 {
		src, err := NewPartitionSource(c, "out", p, 0)
		if err != nil {
			t.Fatal(err)
		}
		src.MaxWait = 50 * time.Millisecond
		_, values := drain(t, src)
		for _, v := range values {
			seen[v] = true
			var i int
			fmt.Sscan(v, &i)
			last[i%5] = v
		}
		src.Close()
	}
	for i := 10; i < 30; i++ {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("record %d is missing", i)
		}
	}
	for k, v := range last {
		if want := fmt.Sprint(25 + k); v != want {
			t.Errorf("last record of key k%d is %s, want %s", k, v, want)
		}
	}
	if len(seen) != 20 {
		t.Errorf("the new broker holds %d distinct records, want 20", len(seen))
	}
}

// TestSourceTopicCreatedLater checks that a source whose shared transport
// knew the cluster before its topic existed finds the topic.
func TestSourceTopicCreatedLater(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "a", Partitions: 1})
	ctx := testCtx(t, 20*time.Second)
	first, err := NewPartitionSource(c, "a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.MaxWait = 10 * time.Millisecond
	if _, err := first.Next(ctx, nil); err != nil { // loads the metadata, without "b"
		t.Fatal(err)
	}
	mustTopics(t, c, TopicSpec{Name: "b", Partitions: 1})
	fill(t, c, "b", 3, 1)
	src, err := NewPartitionSource(c, "b", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	start := time.Now()
	recs, err := src.Next(ctx, nil)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, error %v", len(recs), err)
	}
	t.Logf("found the new topic after %v", time.Since(start))
}

// TestPartitionList: the ids a balancer chooses among are 0 to n-1 for any
// n, asked in any order and from many goroutines at once, and a caller
// cannot append to the shared list.
func TestPartitionList(t *testing.T) {
	done := make(chan error)
	for g := range 4 {
		go func() {
			for _, n := range []int{3, 40 + g, 1, 7, 300 + 5*g, 2} {
				l := partitionList(n)
				if len(l) != n || cap(l) != n {
					done <- fmt.Errorf("partitionList(%d): len %d, cap %d", n, len(l), cap(l))
					return
				}
				for i, id := range l {
					if id != i {
						done <- fmt.Errorf("partitionList(%d)[%d] = %d", n, i, id)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
