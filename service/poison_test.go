package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// TestPoisonPill: records as large as the input topic accepts never stop
// the service. A malformed one (the hardening issue's 1,040,149 bytes) is
// dead-lettered, cut to fit the dead-letter topic with headers saying so.
// A valid like that large (a field the event does not use makes it so) is
// scored: the internal topics carry the event, not the record, so it is
// forwarded to its user's and its video's partitions as any like is. The
// likes around them are scored.
func TestPoisonPill(t *testing.T) {
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	const n = 2
	createInput(t, kc, cfg.InputTopic, n)
	ctx := context.Background()
	p, err := kafkaio.NewProducer(kc, cfg.InputTopic)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	like := func(video, user string, i int, pad int) []byte {
		v := fmt.Sprintf(`{"video_id":%q,"user_id":%q,"ts":%d`, video, user, now.Add(time.Duration(i)*time.Second).UnixMilli())
		if pad > 0 {
			v += `,"pad":"` + strings.Repeat("x", pad) + `"`
		}
		return []byte(v + "}")
	}
	// A key that lands the huge like in the partition its video is not in.
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprint("k", i); kafkaio.PartitionOf([]byte(k), n) != kafkaio.PartitionOf([]byte("v-huge"), n) {
			other = k
		}
	}
	malformed := func(n int) []byte {
		return append([]byte(`{"video_id":"v1","user_id":`), bytes.Repeat([]byte("y"), n-27)...)
	}
	issue := malformed(1_040_149)
	records := []struct {
		key   string
		value []byte
	}{
		{"v1", like("v1", "u1", 0, 0)},
		{"v1", issue},
	}
	for _, r := range records {
		if err := p.Produce(ctx, []byte(r.key), r.value, now); err != nil {
			t.Fatalf("produce %d bytes: %v", len(r.value), err)
		}
	}
	// The largest malformed record the input topic takes: with the
	// dead-letter headers it no longer fits, and is cut.
	var tl *kafkaio.TooLargeError
	var largest []byte
	for size := p.MaxMessageBytes(); largest == nil; size-- {
		v := malformed(size)
		err := p.Produce(ctx, []byte("v1"), v, now)
		if err == nil {
			largest = v
			records = append(records, struct {
				key   string
				value []byte
			}{"v1", v})
		} else if !errors.As(err, &tl) {
			t.Fatal(err)
		}
	}
	// The largest like the input topic takes: forwarded whole, with its
	// header, it would no longer fit.
	var huge []byte
	for pad := p.MaxMessageBytes() - 100; ; pad-- {
		huge = like("v-huge", "u2", 1, pad)
		err := p.Produce(ctx, []byte(other), huge, now)
		if err == nil {
			records = append(records, struct {
				key   string
				value []byte
			}{other, huge})
			break
		}
		if !errors.As(err, &tl) {
			t.Fatal(err)
		}
	}
	for i, l := range [][2]string{{"v1", "u3"}, {"v2", "u4"}} {
		v := like(l[0], l[1], 2+i, 0)
		if err := p.Produce(ctx, []byte(l[0]), v, now); err != nil {
			t.Fatal(err)
		}
		records = append(records, struct {
			key   string
			value []byte
		}{l[0], v})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	if in := readTopic(t, kc, cfg.InputTopic); len(in) != len(records) {
		t.Fatalf("the input topic holds %d records, want %d", len(in), len(records))
	}
	consumeAll(t, cfg, len(records))

	dead := readTopic(t, kc, cfg.DeadLetterTopic)
	header := func(r processor.Record, k string) string {
		for _, h := range r.Headers {
			if h.Key == k {
				return string(h.Value)
			}
		}
		return ""
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	byReason := map[string][]processor.Record{}
	for _, r := range dead {
		byReason[header(r, processor.HeaderReason)] = append(byReason[header(r, processor.HeaderReason)], r)
	}
	if len(byReason["bad_json"]) != 2 {
		t.Fatalf("dead letters by reason: %d bad_json, %d too_large", len(byReason["bad_json"]), len(byReason[processor.ReasonTooLarge]))
	}
	var whole, cut processor.Record
	for _, r := range byReason["bad_json"] {
		if header(r, kafkaio.HeaderTruncated) == "true" {
			cut = r
		} else {
			whole = r
		}
	}
	if !bytes.Equal(whole.Value, issue) {
		t.Errorf("the issue's record of %d bytes: dead-lettered with %d bytes, want it whole", len(issue), len(whole.Value))
	}
	if header(cut, kafkaio.HeaderOriginalLength) != fmt.Sprint(len(largest)) || !bytes.HasPrefix(largest, cut.Value) || len(cut.Value) >= len(largest) {
		t.Errorf("the largest record the input takes: dead letter of %d bytes, original length %q, want a prefix of %d bytes",
			len(cut.Value), header(cut, kafkaio.HeaderOriginalLength), len(largest))
	}
	scores := lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic))
	if !strings.Contains(scores["v1"], `"likes":2,`) || scores["v2"] == "" {
		t.Fatalf("the likes around them were not all scored: v1 %s, v2 %s", scores["v1"], scores["v2"])
	}
	if !strings.Contains(scores["v-huge"], `"likes":1,`) {
		t.Fatalf("the like of %d bytes was not scored: %s", len(huge), scores["v-huge"])
	}
	t.Logf("dead letters: the issue's %d bytes whole, %d bytes cut from %d; a like of %d bytes, v1 and v2 scored",
		len(issue), len(cut.Value), len(largest), len(huge))
}
