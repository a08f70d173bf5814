package kafkaio

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSourceAfterRetention: records deleted before the source's next
// offset (retention, DeleteRecords) make Next return an
// *OffsetOutOfRangeError with the partition's range; SetOffset to its First
// resumes at the first record the partition still holds.
func TestSourceAfterRetention(t *testing.T) {
	e, err := StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c := e.Config()
	mustTopics(t, c, TopicSpec{Name: "old", Partitions: 1})
	fill(t, c, "old", 20, 1_000_000) // record times in 1970: long past any retention
	ctx := testCtx(t, 10*time.Second)

	src, err := NewPartitionSource(c, "old", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.MaxWait = 50 * time.Millisecond
	buf, err := src.Next(ctx, nil)
	if err != nil || len(buf) == 0 || buf[0].Offset != 0 {
		t.Fatalf("first fetch: %d records, %v", len(buf), err)
	}
	if err := src.SetOffset(5); err != nil {
		t.Fatal(err)
	}
	if src.Offset() != 5 {
		t.Fatalf("offset %d after SetOffset(5)", src.Offset())
	}
	if err := e.DeleteRecords("old", 0, 12); err != nil {
		t.Fatal(err)
	}
	_, err = src.Next(ctx, nil)
	var oor *OffsetOutOfRangeError
	if !errors.Is(err, ErrOffsetOutOfRange) || !errors.As(err, &oor) {
		t.Fatalf("after deleting offsets 0 to 11, reading offset 5: error %v, want an *OffsetOutOfRangeError", err)
	}
	if oor.Topic != "old" || oor.Partition != 0 || oor.Offset != 5 || oor.First != 12 || oor.End != 20 {
		t.Fatalf("error %+v, want offset 5 of old/0, range [12, 20)", oor)
	}
	if err := src.SetOffset(oor.First); err != nil {
		t.Fatal(err)
	}
	if offsets, _ := drain(t, src); len(offsets) != 8 || offsets[0] != 12 || offsets[7] != 19 {
		t.Fatalf("after SetOffset(%d): offsets %v, want 12 to 19", oor.First, offsets)
	}
	if err := src.SetOffset(-3); err == nil {
		t.Fatal("SetOffset(-3): no error")
	}
	if err := src.SetOffset(FirstOffset); err != nil {
		t.Fatal(err)
	}
	if offsets, _ := drain(t, src); len(offsets) != 8 || offsets[0] != 12 {
		t.Fatalf("after SetOffset(FirstOffset): offsets %v, want 12 to 19", offsets)
	}
}
