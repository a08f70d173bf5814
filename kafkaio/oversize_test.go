package kafkaio

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/processor"
)

// kafkaDefaultMaxMessageBytes is Kafka's (and kfake's) default
// max.message.bytes: 1 MiB of batch plus its 12 bytes of log overhead.
const kafkaDefaultMaxMessageBytes = 1048588

// createTopic creates a topic with topic configs, which EnsureTopics does
// not set.
func createTopic(t *testing.T, c Config, name string, partitions int, configs map[string]string) {
	t.Helper()
	cl, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	tc := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}
	for k, v := range configs {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	res, err := cl.CreateTopics(testCtx(t, 10*time.Second), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// readTopic returns every record of partition 0 of topic, with copied
// bytes.
func readTopic(t *testing.T, c Config, topic string) []processor.Record {
	t.Helper()
	src, err := NewPartitionSource(c, topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.MaxWait = 50 * time.Millisecond
	ctx := testCtx(t, 20*time.Second)
	var all, buf []processor.Record
	for {
		if buf, err = src.Next(ctx, buf); err != nil {
			t.Fatal(err)
		}
		if len(buf) == 0 {
			return all
		}
		for _, r := range buf {
			r.Key, r.Value, r.Headers = bytes.Clone(r.Key), bytes.Clone(r.Value), cloneHeaders(r.Headers)
			all = append(all, r)
		}
	}
}

// deadLetterHeaders are the headers the engine puts on a dead letter.
func deadLetterHeaders(offset int64) []processor.Header {
	return []processor.Header{
		{Key: processor.HeaderReason, Value: []byte("bad_json")},
		{Key: processor.HeaderError, Value: []byte("invalid character 'x' looking for beginning of value")},
		{Key: processor.HeaderTopic, Value: []byte("likes")},
		{Key: processor.HeaderPartition, Value: []byte("3")},
		{Key: processor.HeaderOffset, Value: strconv.AppendInt(nil, offset, 10)},
	}
}

// sizeOf returns recordSize of a message: what counts against the room of
// a batch.
func sizeOf(key, value []byte, hs []processor.Header) int {
	return recordSize(len(key), len(value), headersSize(len(hs), func(i int) (int, int) { return len(hs[i].Key), len(hs[i].Value) }))
}

// valueAt returns the length of value with which a record of this key
// and headers has recordSize room+delta.
func valueAt(room, delta int, key []byte, hs []processor.Header) int {
	return room + delta - sizeOf(key, nil, hs)
}

func payload(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = 'a' + (seed+byte(i))%26
	}
	return p
}

func TestDescribeTopicLimits(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "plain", Partitions: 1}, TopicSpec{Name: "compacted", Partitions: 1, Compacted: true})
	createTopic(t, c, "small", 1, map[string]string{"max.message.bytes": "20000", "retention.ms": "3600000"})
	createTopic(t, c, "forever", 1, map[string]string{"retention.ms": "-1"})
	mustTopics(t, c, TopicSpec{Name: "internal", Partitions: 1, AppendTime: true})
	ctx := testCtx(t, 10*time.Second)
	for _, tc := range []struct {
		topic string
		want  TopicLimits
	}{
		{"plain", TopicLimits{MaxMessageBytes: kafkaDefaultMaxMessageBytes, DeletesByAge: true, Retention: 7 * 24 * time.Hour}},
		{"compacted", TopicLimits{MaxMessageBytes: kafkaDefaultMaxMessageBytes}},
		{"small", TopicLimits{MaxMessageBytes: 20000, DeletesByAge: true, Retention: time.Hour}},
		{"forever", TopicLimits{MaxMessageBytes: kafkaDefaultMaxMessageBytes}},
		{"internal", TopicLimits{MaxMessageBytes: kafkaDefaultMaxMessageBytes, DeletesByAge: true, Retention: 7 * 24 * time.Hour, AppendTime: true}},
	} {
		got, err := DescribeTopicLimits(ctx, c, tc.topic)
		if err != nil || got != tc.want {
			t.Errorf("topic %s: %+v, %v; want %+v", tc.topic, got, err, tc.want)
		}
	}
	if _, err := DescribeTopicLimits(ctx, c, "nosuch"); err == nil || !strings.Contains(err.Error(), `topic "nosuch"`) {
		t.Errorf("unknown topic: %v", err)
	}
}

// TestSinkLimit: a sink reads its topic's max.message.bytes, unless told.
func TestSinkLimit(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "plain", Partitions: 1})
	createTopic(t, c, "small", 1, map[string]string{"max.message.bytes": "20000"})
	for _, tc := range []struct {
		topic string
		opt   int
		want  int
	}{
		{"plain", 0, kafkaDefaultMaxMessageBytes},
		{"small", 0, 20000},
		{"small", 5000, 5000},
		{"nosuch", 0, defaultMaxMessageBytes}, // cannot be read
	} {
		s, err := NewSink(c, tc.topic, SinkOptions{MaxMessageBytes: tc.opt})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.MaxMessageBytes(); got != tc.want {
			t.Errorf("topic %s, option %d: limit %d, want %d", tc.topic, tc.opt, got, tc.want)
		}
		if got := s.b.room(); got != tc.want-batchOverhead {
			t.Errorf("topic %s, option %d: batch room %d, want %d", tc.topic, tc.opt, got, tc.want-batchOverhead)
		}
		s.Close()
	}
	if _, err := NewSink(c, "plain", SinkOptions{MaxMessageBytes: -1}); err == nil {
		t.Error("negative MaxMessageBytes accepted")
	}
	if _, err := NewSink(c, "plain", SinkOptions{Oversize: 7}); err == nil {
		t.Error("unknown Oversize accepted")
	}
}

// TestSinkRecordsAtTheLimit writes records of Kafka's default topic limit
// at, just below and just above what one batch may hold, and batches of
// many records whose sizes add up to the limit: everything the sink
// accepts, the broker accepts.
func TestSinkRecordsAtTheLimit(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 1})
	ctx := testCtx(t, 30*time.Second)
	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	room := kafkaDefaultMaxMessageBytes - batchOverhead
	if s.MaxMessageBytes() != kafkaDefaultMaxMessageBytes {
		t.Fatalf("limit %d", s.MaxMessageBytes())
	}
	key := []byte("v42")
	hs := []processor.Header{{Key: "h", Value: []byte("x")}}
	var want [][]byte
	for i, delta := range []int{0, -1, 0} {
		v := payload(valueAt(room, delta, key, hs), byte(i))
		if err := s.Write(&processor.Message{Key: key, Value: v, Time: 1_700_000_000_000, Headers: hs}); err != nil {
			t.Fatalf("record %d bytes from the limit: %v", delta, err)
		}
		want = append(want, v)
		// A small record between the large ones: the writer must put
		// it in a batch of its own or with a large one only if both fit.
		small := fmt.Appendf(nil, "small%d", i)
		if err := s.Write(&processor.Message{Key: key, Value: small, Time: 1}); err != nil {
			t.Fatal(err)
		}
		want = append(want, small)
	}
	// One byte over: refused, nothing buffered.
	before := s.Buffered()
	over := payload(valueAt(room, 1, key, hs), 9)
	err = s.Write(&processor.Message{Key: key, Value: over, Time: 1_700_000_000_000, Headers: hs})
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Max != kafkaDefaultMaxMessageBytes || tl.Size != kafkaDefaultMaxMessageBytes+1 || tl.ValueLen != len(over) {
		t.Fatalf("record 1 byte over the limit: %v (%+v)", err, tl)
	}
	if !strings.Contains(err.Error(), `write to topic "out": a record of`) || !strings.Contains(err.Error(), "max.message.bytes") {
		t.Errorf("error %q", err)
	}
	if s.Buffered() != before || s.Truncated() != 0 {
		t.Fatalf("buffered %d (was %d), truncated %d after a refused record", s.Buffered(), before, s.Truncated())
	}
	// Many records that fill batches exactly, with record times far
	// apart (long time deltas), as dead letters may have.
	const n = 900
	each := room / n
	for i := range n {
		v := payload(valueAt(each, 0, key, hs), byte(i))
		ts := int64(1)
		if i%2 == 1 {
			ts = time.Now().UnixMilli()
		}
		if err := s.Write(&processor.Message{Key: key, Value: v, Time: ts, Headers: hs}); err != nil {
			t.Fatal(err)
		}
		want = append(want, v)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	got := readTopic(t, c, "out")
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if !bytes.Equal(r.Value, want[i]) {
			t.Fatalf("record %d: value of %d bytes, want %d", i, len(r.Value), len(want[i]))
		}
	}
}

// TestSinkTruncatesDeadLetters: a dead letter too large for the topic is
// cut to fit exactly, and keeps its headers.
func TestSinkTruncatesDeadLetters(t *testing.T) {
	const limit = 20000
	room := limit - batchOverhead
	c := broker(t)
	createTopic(t, c, "likes.dlq", 1, map[string]string{"max.message.bytes": strconv.Itoa(limit)})
	ctx := testCtx(t, 20*time.Second)
	s, err := NewSink(c, "likes.dlq", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	key := []byte("v1")
	hs := deadLetterHeaders(17)
	type rec struct {
		key, value []byte
		truncated  bool
	}
	var sent []rec
	for i, delta := range []int{-1, 0, 1, 500, 1_000_000} {
		v := payload(valueAt(room, delta, key, hs), byte(i))
		if err := s.Write(&processor.Message{Key: key, Value: v, Time: 1_700_000_000_000, Headers: hs}); err != nil {
			t.Fatalf("dead letter %d bytes from the limit: %v", delta, err)
		}
		sent = append(sent, rec{key, v, delta > 0})
	}
	// A key that does not fit even with an empty value, and a nil key.
	bigKey := payload(limit+10, 3)
	if err := s.Write(&processor.Message{Key: bigKey, Value: []byte("x"), Headers: hs}); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, rec{bigKey, []byte("x"), true})
	big := payload(3*limit, 4)
	if err := s.Write(&processor.Message{Value: big, Headers: hs}); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, rec{nil, big, true})
	if s.Truncated() != 5 {
		t.Errorf("truncated %d, want 5", s.Truncated())
	}
	// Headers alone over the limit: nothing to cut.
	huge := append(deadLetterHeaders(1), processor.Header{Key: "x", Value: payload(limit, 0)})
	var tl *TooLargeError
	if err := s.Write(&processor.Message{Key: key, Value: []byte("x"), Headers: huge}); !errors.As(err, &tl) {
		t.Errorf("headers over the limit: %v", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	got := readTopic(t, c, "likes.dlq")
	if len(got) != len(sent) {
		t.Fatalf("read %d records, want %d", len(got), len(sent))
	}
	for i, r := range got {
		w := sent[i]
		if !w.truncated {
			if !bytes.Equal(r.Key, w.key) || !bytes.Equal(r.Value, w.value) || len(r.Headers) != len(hs) {
				t.Errorf("record %d: changed although it fits", i)
			}
			if sizeOf(r.Key, r.Value, r.Headers) > room {
				t.Errorf("record %d: size %d over room %d", i, sizeOf(r.Key, r.Value, r.Headers), room)
			}
			continue
		}
		// The engine's headers first, as they were, then the marks.
		if len(r.Headers) < len(hs)+2 {
			t.Fatalf("record %d: headers %q", i, r.Headers)
		}
		for j, h := range hs {
			if r.Headers[j].Key != h.Key || !bytes.Equal(r.Headers[j].Value, h.Value) {
				t.Errorf("record %d: header %d is %s=%s, want %s=%s", i, j, r.Headers[j].Key, r.Headers[j].Value, h.Key, h.Value)
			}
		}
		extra := map[string]string{}
		for _, h := range r.Headers[len(hs):] {
			extra[h.Key] = string(h.Value)
		}
		if extra[HeaderTruncated] != "true" || extra[HeaderOriginalLength] != strconv.Itoa(len(w.value)) {
			t.Errorf("record %d: headers %v", i, extra)
		}
		keyCut := len(w.key) > len(r.Key)
		if keyCut != (extra[HeaderOriginalKeyLength] != "") || (keyCut && extra[HeaderOriginalKeyLength] != strconv.Itoa(len(w.key))) {
			t.Errorf("record %d: key of %d bytes from %d, headers %v", i, len(r.Key), len(w.key), extra)
		}
		if !bytes.HasPrefix(w.key, r.Key) || !bytes.HasPrefix(w.value, r.Value) || (w.key == nil) != (r.Key == nil) {
			t.Errorf("record %d: key or value is not a prefix of the original", i)
		}
		if keyCut && len(r.Value) != 0 {
			t.Errorf("record %d: key cut but value of %d bytes kept", i, len(r.Value))
		}
		// Cut to fit exactly: not a byte more could have stayed.
		if n := sizeOf(r.Key, r.Value, r.Headers); n != room {
			t.Errorf("record %d: cut to size %d, want exactly %d", i, n, room)
		}
	}
}

// TestPoisonPill is the case of the issue: a record that the input topic
// (Kafka's default limit) accepted is dead-lettered to a topic with the
// same limit; with the dead-letter headers it no longer fits, and is cut
// rather than failing the sink.
func TestPoisonPill(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "likes", Partitions: 1}, TopicSpec{Name: "likes.dlq", Partitions: 1})
	ctx := testCtx(t, 30*time.Second)
	p, err := NewProducer(c, "likes")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	room := p.MaxMessageBytes() - batchOverhead
	// The largest record the input topic takes, one larger, and the
	// issue's 1,040,149 bytes.
	key := []byte("v1")
	values := [][]byte{payload(valueAt(room, 0, key, nil), 1), payload(1_040_149, 2)}
	for _, v := range values {
		if err := p.Produce(ctx, key, v, time.UnixMilli(1_700_000_000_000)); err != nil {
			t.Fatal(err)
		}
	}
	var tl *TooLargeError
	if err := p.Produce(ctx, key, payload(valueAt(room, 1, key, nil), 3), time.Time{}); !errors.As(err, &tl) || p.Buffered() != 2 {
		t.Fatalf("producer: a record 1 byte over: %v, %d buffered", err, p.Buffered())
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	in := readTopic(t, c, "likes")
	if len(in) != 2 {
		t.Fatalf("input topic holds %d records", len(in))
	}

	dlq, err := NewSink(c, "likes.dlq", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	for _, r := range in {
		m := processor.Message{Key: r.Key, Value: r.Value, Time: r.Time, Headers: deadLetterHeaders(r.Offset)}
		if err := dlq.Write(&m); err != nil {
			t.Fatal(err)
		}
	}
	if err := dlq.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	out := readTopic(t, c, "likes.dlq")
	if len(out) != 2 || dlq.Truncated() != 1 {
		t.Fatalf("dead-letter topic holds %d records, %d truncated", len(out), dlq.Truncated())
	}
	// The record at the input's limit is cut, the other kept whole.
	h := map[string]string{}
	for _, x := range out[0].Headers {
		h[x.Key] = string(x.Value)
	}
	if h[HeaderTruncated] != "true" || h[HeaderOriginalLength] != strconv.Itoa(len(values[0])) || h[processor.HeaderOffset] != "0" ||
		!bytes.HasPrefix(values[0], out[0].Value) || len(out[0].Value) >= len(values[0]) {
		t.Errorf("record at the limit: %d bytes, headers %v", len(out[0].Value), h)
	}
	if !bytes.Equal(out[1].Value, values[1]) || len(out[1].Headers) != 5 {
		t.Errorf("record of 1,040,149 bytes: %d bytes, %d headers", len(out[1].Value), len(out[1].Headers))
	}
}

// TestSinkOversizePolicies: scores and trending lists are refused, not
// cut; the policy can be forced either way.
func TestSinkOversizePolicies(t *testing.T) {
	const limit = 5000
	room := limit - batchOverhead
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 1})
	key := []byte("v1")
	dead := deadLetterHeaders(1)
	for _, tc := range []struct {
		policy   Oversize
		headers  []processor.Header
		truncate bool
	}{
		{OversizeAuto, nil, false},
		{OversizeAuto, dead, true},
		{OversizeFail, dead, false},
		{OversizeTruncate, nil, true},
	} {
		s, err := NewSink(c, "out", SinkOptions{MaxMessageBytes: limit, Oversize: tc.policy})
		if err != nil {
			t.Fatal(err)
		}
		at := processor.Message{Key: key, Value: payload(valueAt(room, 0, key, tc.headers), 1), Headers: tc.headers}
		over := processor.Message{Key: key, Value: payload(valueAt(room, 1, key, tc.headers), 1), Headers: tc.headers}
		if !s.Fits(&at) || s.Fits(&over) {
			t.Errorf("policy %d, %d headers: Fits at the limit %v, over it %v", tc.policy, len(tc.headers), s.Fits(&at), s.Fits(&over))
		}
		if err := s.Write(&at); err != nil {
			t.Errorf("policy %d, %d headers: record at the limit: %v", tc.policy, len(tc.headers), err)
		}
		err = s.Write(&over)
		var tl *TooLargeError
		switch {
		case tc.truncate && (err != nil || s.Truncated() != 1 || s.Buffered() != 2):
			t.Errorf("policy %d, %d headers: not truncated: %v", tc.policy, len(tc.headers), err)
		case !tc.truncate && (!errors.As(err, &tl) || s.Buffered() != 1):
			t.Errorf("policy %d, %d headers: not refused: %v", tc.policy, len(tc.headers), err)
		}
		s.Close()
	}
}

// TestSinkLimitTooHigh: a sink told a limit above the topic's learns the
// topic's when the broker refuses a batch, and cuts the dead letters it
// holds; a score record that no longer fits is a clear error.
func TestSinkLimitTooHigh(t *testing.T) {
	const limit = 20000
	c := broker(t)
	createTopic(t, c, "small", 1, map[string]string{"max.message.bytes": strconv.Itoa(limit)})
	ctx := testCtx(t, 20*time.Second)

	s, err := NewSink(c, "small", SinkOptions{MaxMessageBytes: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := []byte("v1")
	big := payload(3*limit, 1)
	for _, m := range []processor.Message{
		{Key: key, Value: []byte("before"), Headers: deadLetterHeaders(1)},
		{Key: key, Value: big, Headers: deadLetterHeaders(2)},
		{Key: key, Value: []byte("after"), Headers: deadLetterHeaders(3)},
	} {
		if err := s.Write(&m); err != nil {
			t.Fatal(err)
		}
	}
	if s.Truncated() != 0 {
		t.Fatal("truncated under the stated limit")
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if s.MaxMessageBytes() != limit || s.Truncated() != 1 || s.Buffered() != 0 {
		t.Errorf("limit %d, truncated %d, buffered %d", s.MaxMessageBytes(), s.Truncated(), s.Buffered())
	}
	var values []string
	for _, r := range readTopic(t, c, "small") {
		values = append(values, string(r.Value[:min(len(r.Value), 6)]))
	}
	// The first record may be written twice (it preceded the refusal).
	if got := strings.Join(values, ","); got != "before,"+string(big[:6])+",after" && got != "before,before,"+string(big[:6])+",after" {
		t.Errorf("records %s", got)
	}

	scores, err := NewSink(c, "small", SinkOptions{MaxMessageBytes: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer scores.Close()
	if err := scores.Write(&processor.Message{Key: key, Value: big}); err != nil {
		t.Fatal(err)
	}
	err = scores.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), `write to topic "small": the topic accepts record batches of at most 20000 bytes (max.message.bytes)`) {
		t.Errorf("score record over the topic's limit: %v", err)
	}
	if scores.Buffered() != 1 {
		t.Errorf("buffered %d after the error, want 1", scores.Buffered())
	}
}

func TestVarintLen(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{0, 1}, {-1, 1}, {63, 1}, {64, 2}, {-64, 1}, {-65, 2}, {8191, 2}, {8192, 3}, {1 << 20, 4},
	} {
		if got := varintLen(tc.n); got != tc.want {
			t.Errorf("varintLen(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
