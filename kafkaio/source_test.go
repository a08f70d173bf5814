package kafkaio

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
)

// fill writes n records to partition 0 of a one-partition topic: key
// k<i>, value <i>, time base+i*1000.
func fill(t *testing.T, c Config, topic string, n int, base int64) {
	t.Helper()
	s, err := NewSink(c, topic, SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		m := processor.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Append(nil, i), Time: base + int64(i)*1000}
		if err := s.Write(&m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(testCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// drain reads src until a fetch comes back empty and returns the offsets
// and values read.
func drain(t *testing.T, src *PartitionSource) (offsets []int64, values []string) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	var buf []processor.Record
	for {
		var err error
		if buf, err = src.Next(ctx, buf); err != nil {
			t.Fatal(err)
		}
		if len(buf) == 0 {
			return offsets, values
		}
		for _, r := range buf {
			offsets = append(offsets, r.Offset)
			values = append(values, string(r.Value))
		}
	}
}

func TestPartitionSource(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "likes", Partitions: 1})
	const base = 1_700_000_000_000
	fill(t, c, "likes", 20, base)
	ctx := testCtx(t, 10*time.Second)

	t.Run("from an offset", func(t *testing.T) {
		src, err := NewPartitionSource(c, "likes", 0, 15)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		offsets, values := drain(t, src)
		if fmt.Sprint(offsets) != "[15 16 17 18 19]" || fmt.Sprint(values) != "[15 16 17 18 19]" {
			t.Errorf("read offsets %v values %v", offsets, values)
		}
		if src.Offset() != 20 || src.HighWatermark() != 20 {
			t.Errorf("offset %d, high watermark %d, want 20 and 20", src.Offset(), src.HighWatermark())
		}
	})

	// Detached records stay as they were while the source fetches on and
	// while their memory serves others once released.
	t.Run("detach", func(t *testing.T) {
		mustTopics(t, c, TopicSpec{Name: "detach", Partitions: 1})
		w, err := NewSink(c, "detach", SinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		for i := range 20 { // five record batches of four
			m := processor.Message{Value: fmt.Appendf(nil, "v%d", i), Time: base}
			if err := w.Write(&m); err != nil {
				t.Fatal(err)
			}
			if i%4 == 3 {
				if err := w.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		src, err := NewPartitionSource(c, "detach", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		src.MaxBytes = 1 // a record batch a fetch
		var kept [][]processor.Record
		var held []Chunks
		var got []string
		for len(got) < 20 {
			recs, err := src.Next(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				t.Fatalf("a fetch came back empty after %d records", len(got))
			}
			for _, r := range recs {
				got = append(got, string(r.Value))
			}
			kept = append(kept, recs)
			held = append(held, src.Detach())
			if held[len(held)-1].Bytes() == 0 {
				t.Fatal("detached chunks take no memory")
			}
		}
		var again []string
		for _, recs := range kept {
			for _, r := range recs {
				again = append(again, string(r.Value))
			}
		}
		if fmt.Sprint(again) != fmt.Sprint(got) || len(kept) < 5 {
			t.Errorf("detached records read %v after later fetches, %v when fetched in %d fetches (want 5 or more)", again, got, len(kept))
		}
		free := len(chunks.free)
		for i := range held {
			held[i].Release()
			held[i].Release() // twice does nothing
		}
		if n := len(chunks.free) - free; n == 0 && free < maxFreeChunks {
			t.Error("released chunks did not come back to the free list")
		}
	})

	t.Run("idle", func(t *testing.T) {
		src, err := NewPartitionSource(c, "likes", 0, 20)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		src.MaxWait = 100 * time.Millisecond
		start := time.Now()
		recs, err := src.Next(ctx, nil)
		if err != nil || len(recs) != 0 {
			t.Fatalf("at the end: %d records, error %v; want none and no error", len(recs), err)
		}
		if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
			t.Errorf("an idle fetch took %v with MaxWait 100ms", d)
		}
		// A record written while the source waits is returned.
		done := make(chan []processor.Record, 1)
		go func() {
			src.MaxWait = 5 * time.Second
			recs, err := src.Next(ctx, nil)
			if err != nil {
				t.Error(err)
			}
			done <- recs
		}()
		time.Sleep(50 * time.Millisecond)
		fill(t, c, "likes", 1, base+99_000)
		if recs := <-done; len(recs) != 1 || recs[0].Offset != 20 || recs[0].Time != base+99_000 {
			t.Errorf("after a write: %+v", recs)
		}
	})

	t.Run("first and end", func(t *testing.T) {
		src, err := NewPartitionSource(c, "likes", 0, FirstOffset)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if offsets, _ := drain(t, src); len(offsets) != 21 || offsets[0] != 0 {
			t.Errorf("from FirstOffset: offsets %v", offsets)
		}
		end, err := NewPartitionSource(c, "likes", 0, EndOffset)
		if err != nil {
			t.Fatal(err)
		}
		defer end.Close()
		end.MaxWait = 50 * time.Millisecond
		if offsets, _ := drain(t, end); len(offsets) != 0 || end.Offset() != 21 {
			t.Errorf("from EndOffset: offsets %v, offset %d", offsets, end.Offset())
		}
	})

	t.Run("out of range", func(t *testing.T) {
		src, err := NewPartitionSource(c, "likes", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		_, err = src.Next(ctx, nil)
		var oor *OffsetOutOfRangeError
		if !errors.Is(err, ErrOffsetOutOfRange) || !errors.As(err, &oor) {
			t.Fatalf("error %v, want ErrOffsetOutOfRange", err)
		}
		if oor.Offset != 1000 || oor.First != 0 || oor.End != 21 {
			t.Errorf("error %+v", oor)
		}
		want := "kafkaio: offset 1000 of likes/0 is out of range: the partition holds offsets 0 to 20 (records before 0 were deleted by retention, or the topic was recreated)"
		if err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})

	t.Run("offset for time", func(t *testing.T) {
		for _, tc := range []struct {
			at   int64
			want int64
		}{
			{0, 0},
			{base, 0},
			{base + 1, 1},
			{base + 5000, 5},
			{base + 19_000, 19},
			{base + 19_001, 20}, // the record written in "idle"
			{base + 100_000, 21},
		} {
			got, err := OffsetForTime(ctx, c, "likes", 0, time.UnixMilli(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("offset for time base%+dms: %d, want %d", tc.at-base, got, tc.want)
			}
		}
		first, last, err := FirstLastOffsets(ctx, c, "likes", 0)
		if err != nil || first != 0 || last != 21 {
			t.Errorf("first, last = %d, %d, %v; want 0, 21", first, last, err)
		}
	})

	t.Run("missing partition", func(t *testing.T) {
		_, _, err := FirstLastOffsets(ctx, c, "likes", 7)
		if err == nil || err.Error() != "list offsets of likes/7: no such topic or partition" {
			t.Errorf("error %v", err)
		}
	})

	t.Run("context done", func(t *testing.T) {
		src, err := NewPartitionSource(c, "likes", 0, 21)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		src.MaxWait = 10 * time.Second
		cctx, cancel := contextWithTimeout(50 * time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := src.Next(cctx, nil); !errors.Is(err, errDeadline) {
			t.Errorf("error %v, want the context's", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Next returned %v after its context ended", d)
		}
	})
}
