package kafkaio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/viralityhq/virality/processor"
)

// fakeConn is a connection that answers with resp and keeps what was
// written to it.
type fakeConn struct {
	*bufio.Reader
	w bytes.Buffer
}

func (c *fakeConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func newFakeConn(resp []byte) *fakeConn {
	return &fakeConn{Reader: bufio.NewReader(bytes.NewReader(resp))}
}

// encodeSet encodes recs with kafka-go as one record set of the given
// version and attributes, with base offset base; the size prefix is cut.
func encodeSet(t *testing.T, version int8, attrs protocol.Attributes, base int64, recs []protocol.Record) []byte {
	t.Helper()
	for i := range recs {
		recs[i].Offset = base + int64(i)
	}
	var b bytes.Buffer
	rs := protocol.RecordSet{Version: version, Attributes: attrs, Records: protocol.NewRecordReader(recs...)}
	if _, err := rs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()[4:]
	if version == 2 {
		binary.BigEndian.PutUint64(p, uint64(base))
		return p
	}
	if attrs != 0 {
		t.Fatal("messages of magic 0 and 1 are not compressed here")
	}
	// kafka-go numbers messages from 0: each is its offset, its size, then
	// the message.
	for i, m := 0, p; len(m) > 0; i++ {
		binary.BigEndian.PutUint64(m, uint64(base)+uint64(i))
		m = m[12+binary.BigEndian.Uint32(m[8:]):]
	}
	return p
}

// setRecords returns n random records (randomRecords), one of them
// sometimes with a value larger than a quarter of a chunk, as kafka-go's
// encoder takes them.
func setRecords(t *testing.T, r *rand.Rand, n int) []protocol.Record {
	t.Helper()
	_, ws := randomRecords(t, r, n)
	if r.IntN(4) == 0 {
		ws[r.IntN(n)].value = bytes.Repeat([]byte{byte(n)}, chunkSize/4+r.IntN(chunkSize))
	}
	recs := make([]protocol.Record, n)
	for i, w := range ws {
		recs[i].Time = w.at
		if w.key != nil {
			recs[i].Key = protocol.NewBytes(w.key)
		}
		if w.value != nil {
			recs[i].Value = protocol.NewBytes(w.value)
		}
		for _, h := range w.hs {
			recs[i].Headers = append(recs[i].Headers, protocol.Header{Key: h.Key, Value: h.Value})
		}
	}
	return recs
}

// fetchResponse builds a fetch response of version v (4 to 11) holding
// set as the records of likes/3; with beside, the same records come
// before as those of another topic's partition 3 and of likes/4.
func fetchResponse(v int16, id int32, code int16, hw int64, set []byte, beside bool) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(id))
	b = binary.BigEndian.AppendUint32(b, 0) // throttle
	if v >= 7 {
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	partition := func(b []byte, idx int32, code int16, hw int64, set []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(idx))
		b = binary.BigEndian.AppendUint16(b, uint16(code))
		b = binary.BigEndian.AppendUint64(b, uint64(hw))
		b = binary.BigEndian.AppendUint64(b, uint64(hw)) // last stable offset
		if v >= 5 {
			b = binary.BigEndian.AppendUint64(b, 0)
		}
		b = binary.BigEndian.AppendUint32(b, 1) // one aborted transaction
		b = append(b, make([]byte, 16)...)
		if v >= 11 {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
		}
		if set == nil {
			return binary.BigEndian.AppendUint32(b, 0xffffffff)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(set)))
		return append(b, set...)
	}
	if beside {
		b = binary.BigEndian.AppendUint32(b, 2)
		b = appendString16(b, "other")
		b = binary.BigEndian.AppendUint32(b, 1)
		b = partition(b, 3, 0, 7, set)
		b = appendString16(b, "likes")
		b = binary.BigEndian.AppendUint32(b, 2)
		b = partition(b, 4, 0, 9, set)
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
		b = appendString16(b, "likes")
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	b = partition(b, 3, code, hw, set)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// exchange runs a fetch of likes/3 from offset at version v against the
// response resp.
func exchange(t *testing.T, v int16, offset int64, resp []byte) (*fetchExchange, *fakeConn) {
	t.Helper()
	x := newFetchExchange("likes", 3, "virality-test")
	x.reset(offset, 200*time.Millisecond, 1<<20)
	if !x.Required(map[protocol.ApiKey]int16{protocol.Fetch: v}) {
		t.Fatal("the exchange is not raw")
	}
	c := newFakeConn(resp)
	m, err := x.RawExchange(c)
	if err != nil {
		t.Fatal(err)
	}
	if m != x || !x.finished.Load() {
		t.Fatal("the exchange did not finish")
	}
	if _, err := c.ReadByte(); err != io.EOF {
		t.Fatal("the response was not read to its end")
	}
	return x, c
}

// asKafkaGo decodes set from offset with kafka-go's decoder, as sources
// did before they decoded fetch responses themselves.
func asKafkaGo(t *testing.T, set []byte, offset int64) *fetchExchange {
	t.Helper()
	y := newFetchExchange("likes", 3, "")
	y.reset(offset, time.Second, 1)
	var rs protocol.RecordSet
	p := binary.BigEndian.AppendUint32(nil, uint32(len(set)))
	if _, err := rs.ReadFrom(bytes.NewBuffer(append(p, set...))); err != nil {
		t.Fatalf("kafka-go: %v", err)
	}
	if rs.Records != nil {
		if err := y.readRecords(rs.Records); err != nil {
			t.Fatalf("kafka-go: %v", err)
		}
	}
	return y
}

func sameRecords(t *testing.T, got, want []processor.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	sameBytes := func(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }
	for i := range got {
		g, w := &got[i], &want[i]
		if g.Topic != w.Topic || g.Partition != w.Partition || g.Offset != w.Offset || g.Time != w.Time ||
			!sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: got %s/%d@%d time %d key %q value %q %d headers, want %s/%d@%d time %d key %q value %q %d headers",
				i, g.Topic, g.Partition, g.Offset, g.Time, g.Key, g.Value, len(g.Headers),
				w.Topic, w.Partition, w.Offset, w.Time, w.Key, w.Value, len(w.Headers))
		}
		for j := range g.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !sameBytes(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: got %q=%q, want %q=%q", i, j,
					g.Headers[j].Key, g.Headers[j].Value, w.Headers[j].Key, w.Headers[j].Value)
			}
		}
	}
}

// TestFetchAsKafkaGo decodes random record sets (batches compressed with
// every codec or not, control batches, a last batch cut short, message
// sets of magic 1 after them, fetches from inside a batch) and compares
// the records with kafka-go's decoding of the same bytes.
func TestFetchAsKafkaGo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	codecs := []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd}
	compared := 0
	for i := range 300 {
		var set []byte
		base := int64(r.IntN(1000))
		offset := base + int64(r.IntN(5))
		batches := 1 + r.IntN(4)
		var last int
		for range batches {
			n := 1 + r.IntN(30)
			attrs := protocol.Attributes(codecs[r.IntN(len(codecs))])
			if r.IntN(10) == 0 {
				attrs |= protocol.Control
			}
			last = len(set)
			set = append(set, encodeSet(t, 2, attrs, base, setRecords(t, r, n))...)
			base += int64(n)
		}
		switch r.IntN(4) {
		case 0:
			if batches > 1 { // the broker cut the last batch short
				set = set[:last+1+r.IntN(len(set)-last-1)]
			}
		case 1: // an old producer's messages follow
			set = append(set, encodeSet(t, 1, 0, base, setRecords(t, r, 1+r.IntN(5)))...)
		}
		v := int16(minFetchVersion + i%(maxFetchVersion-minFetchVersion+1))
		x, _ := exchange(t, v, offset, fetchResponse(v, 1, 0, 12345, set, true))
		y := asKafkaGo(t, set, offset)
		if x.err() != nil || x.bad != nil || x.hw != 12345 {
			t.Fatalf("set %d: error %v, bad %v, high watermark %d", i, x.err(), x.bad, x.hw)
		}
		sameRecords(t, x.recs, y.recs)
		compared += len(x.recs)
		if x.next != y.next {
			t.Fatalf("set %d: next offset %d, want %d", i, x.next, y.next)
		}
	}
	if compared < 5000 {
		t.Fatalf("only %d records compared", compared)
	}
}

// TestFetchResponseAsKafkaGo reads responses kafka-go encodes, at every
// version, and checks the request against kafka-go's reading of it.
func TestFetchResponseAsKafkaGo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for v := int16(minFetchVersion); v <= maxFetchVersion; v++ {
		// kafka-go's encoder writes base offset 0: the records are at 0 to 9.
		seed := r.Uint64()
		set := encodeSet(t, 2, 0, 0, setRecords(t, rand.New(rand.NewPCG(seed, 0)), 10))
		recs := setRecords(t, rand.New(rand.NewPCG(seed, 0)), 10)
		var b bytes.Buffer
		res := &fetch.Response{Topics: []fetch.ResponseTopic{{Topic: "likes", Partitions: []fetch.ResponsePartition{
			{Partition: 1, HighWatermark: 3, RecordSet: protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(protocol.Record{Time: time.UnixMilli(1)})}},
			{Partition: 3, HighWatermark: 50, LastStableOffset: 50, PreferredReadReplica: -1,
				AbortedTransactions: []fetch.ResponseTransaction{{ProducerID: 1, FirstOffset: 2}},
				RecordSet:           protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(recs...)}},
		}}}}
		if err := protocol.WriteResponse(&b, v, 1, res); err != nil {
			t.Fatal(err)
		}
		x, c := exchange(t, v, 2, b.Bytes())
		if x.err() != nil || x.bad != nil || x.hw != 50 || x.next != 10 || len(x.recs) != 8 {
			t.Fatalf("v%d: error %v, bad %v, high watermark %d, next %d, %d records", v, x.err(), x.bad, x.hw, x.next, len(x.recs))
		}
		sameRecords(t, x.recs, asKafkaGo(t, set, 2).recs)

		gotV, id, client, msg, err := protocol.ReadRequest(&c.w)
		if err != nil {
			t.Fatalf("v%d: kafka-go reads the request: %v", v, err)
		}
		req := msg.(*fetch.Request)
		p := req.Topics[0].Partitions[0]
		if gotV != v || id != 1 || client != "virality-test" || req.ReplicaID != -1 || req.MaxWaitTime != 200 ||
			req.MinBytes != 1 || req.MaxBytes != 1<<20 || req.IsolationLevel != 0 ||
			len(req.Topics) != 1 || req.Topics[0].Topic != "likes" || len(req.Topics[0].Partitions) != 1 ||
			p.Partition != 3 || p.FetchOffset != 2 || p.PartitionMaxBytes != 1<<20 {
			t.Fatalf("v%d: request v%d id %d client %q %+v", v, gotV, id, client, req)
		}
		if v >= 7 && (req.SessionID != 0 || req.SessionEpoch != -1) {
			t.Fatalf("v%d: session %d epoch %d, want a fetch without a session", v, req.SessionID, req.SessionEpoch)
		}
		if c.w.Len() != 0 {
			t.Fatalf("v%d: %d bytes after the request", v, c.w.Len())
		}
	}
}

// TestFetchBadBatch: a batch whose checksum does not match, or that
// breaks the format, ends the records there; the connection reads on.
func TestFetchBadBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	one := encodeSet(t, 2, 0, 0, setRecords(t, r, 5))
	two := encodeSet(t, 2, 0, 5, setRecords(t, r, 5))
	three := encodeSet(t, 2, 0, 10, setRecords(t, r, 5))
	for name, spoil := range map[string]func(b []byte){
		"checksum":     func(b []byte) { b[len(b)-1] ^= 1 },
		"record count": func(b []byte) { binary.BigEndian.PutUint32(b[57:], 4); fixCRC(b) },
		"length":       func(b []byte) { b[61] = 0x7f; fixCRC(b) },
	} {
		t.Run(name, func(t *testing.T) {
			bad := bytes.Clone(two)
			spoil(bad)
			set := slicesConcat(one, bad, three)
			x, _ := exchange(t, 11, 0, fetchResponse(11, 1, 0, 15, set, true))
			if x.bad == nil || !errors.Is(x.bad, errMalformed) && name != "checksum" || !retriable(x.bad) {
				t.Fatalf("bad: %v", x.bad)
			}
			sameRecords(t, x.recs, asKafkaGo(t, one, 0).recs)
			if x.next != 5 {
				t.Fatalf("next offset %d, want 5", x.next)
			}
		})
	}
}

func slicesConcat(ps ...[]byte) []byte { return bytes.Join(ps, nil) }

// fixCRC sets the checksum of the batch b.
func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[batchCRCAt:], crc32.Checksum(b[batchAttrsAt:], castagnoli))
}

// TestFetchCompactedBatch: a source moves past records that compaction
// removed from the end of a batch, and past a batch left empty.
func TestFetchCompactedBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	b := encodeSet(t, 2, 0, 20, setRecords(t, r, 3))
	binary.BigEndian.PutUint32(b[23:], 9) // offsets 20 to 29, of which 23 to 29 were removed
	fixCRC(b)
	x, _ := exchange(t, 11, 20, fetchResponse(11, 1, 0, 40, b, true))
	sameRecords(t, x.recs, asKafkaGo(t, b, 20).recs)
	if len(x.recs) != 3 || x.next != 30 {
		t.Fatalf("%d records, next offset %d; want 3 and 30", len(x.recs), x.next)
	}

	empty := bytes.Clone(b[:batchHeadLen])
	binary.BigEndian.PutUint64(empty, 30)
	binary.BigEndian.PutUint32(empty[batchLengthAt:], batchLengthMin)
	binary.BigEndian.PutUint32(empty[57:], 0)
	fixCRC(empty)
	x, _ = exchange(t, 11, 30, fetchResponse(11, 1, 0, 40, empty, true))
	if x.bad != nil || len(x.recs) != 0 || x.next != 40 {
		t.Fatalf("bad %v, %d records, next offset %d; want none and 40", x.bad, len(x.recs), x.next)
	}
}

// TestFetchErrors: the partition's error, or its absence, is the fetch's.
func TestFetchErrors(t *testing.T) {
	x, _ := exchange(t, 11, 0, fetchResponse(11, 1, int16(kafka.OffsetOutOfRange), -1, nil, true))
	if err := x.err(); !errors.Is(err, kafka.OffsetOutOfRange) {
		t.Fatalf("error %v, want %v", err, kafka.OffsetOutOfRange)
	}
	x = newFetchExchange("views", 0, "")
	x.reset(0, time.Second, 1)
	x.Required(map[protocol.ApiKey]int16{protocol.Fetch: 11})
	if _, err := x.RawExchange(newFakeConn(fetchResponse(11, 1, 0, 5, nil, true))); err != nil {
		t.Fatal(err)
	}
	if err := x.err(); !errors.Is(err, protocol.ErrNoPartition) {
		t.Fatalf("error %v, want %v", err, protocol.ErrNoPartition)
	}
	// A response cut short, or of another request, is the connection's
	// error.
	resp := fetchResponse(11, 1, 0, 5, nil, true)
	for _, bad := range [][]byte{resp[:len(resp)-3], fetchResponse(11, 2, 0, 5, nil, true)} {
		x = newFetchExchange("likes", 3, "")
		x.reset(0, time.Second, 1)
		x.Required(map[protocol.ApiKey]int16{protocol.Fetch: 11})
		if _, err := x.RawExchange(newFakeConn(bad)); err == nil {
			t.Fatal("a broken response was read")
		}
	}
	x.Required(map[protocol.ApiKey]int16{protocol.Fetch: 3})
	if _, err := x.RawExchange(newFakeConn(resp)); err == nil {
		t.Fatal("fetch version 3 was used")
	}
}

// BenchmarkFetch reads a fetch response of 4 batches of 1,000
// score-sized records with a header, as a source reads it (fetchExchange)
// and as kafka-go read it before.
func BenchmarkFetch(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	var set []byte
	for n := range 4 {
		bt := &batcher{topic: "t"}
		bt.setLimit(1 << 20)
		idx := make([]int32, 1000)
		value := make([]byte, 200)
		for i := range idx {
			idx[i] = int32(i)
			key := fmt.Appendf(nil, "video-%d", rng.IntN(100_000))
			hs := []processor.Header{{Key: processor.HeaderCommit, Value: []byte("0123456789abcdef")}}
			if err := bt.add(key, value, time.UnixMilli(1_700_000_000_000+int64(i)), hs); err != nil {
				b.Fatal(err)
			}
		}
		var w bytes.Buffer
		bs := batchSet{r: &bt.records, chunk: bt.recs, idx: idx}
		if _, err := bs.WriteTo(&w); err != nil {
			b.Fatal(err)
		}
		batch := w.Bytes()[4:]
		binary.BigEndian.PutUint64(batch, uint64(n*1000))
		set = append(set, batch...)
	}
	resp := fetchResponse(11, 1, 0, 4000, set, false)
	b.Run("fetchExchange", func(b *testing.B) {
		x := newFetchExchange("likes", 3, "")
		x.Required(map[protocol.ApiKey]int16{protocol.Fetch: 11})
		c := newFakeConn(nil)
		for b.Loop() {
			x.reset(0, time.Second, 1<<20)
			x.id = 0
			c.Reader.Reset(bytes.NewReader(resp))
			c.w.Reset()
			if _, err := x.RawExchange(c); err != nil || len(x.recs) != 4000 {
				b.Fatal(err, len(x.recs))
			}
		}
		b.ReportMetric(float64(b.N*4000)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("kafka-go", func(b *testing.B) {
		y := newFetchExchange("likes", 3, "")
		br := bufio.NewReader(nil)
		for b.Loop() {
			y.reset(0, time.Second, 1<<20)
			br.Reset(bytes.NewReader(resp))
			_, m, err := protocol.ReadResponse(br, protocol.Fetch, 11)
			if err != nil {
				b.Fatal(err)
			}
			if err := y.readRecords(m.(*fetch.Response).Topics[0].Partitions[0].RecordSet.Records); err != nil || len(y.recs) != 4000 {
				b.Fatal(err, len(y.recs))
			}
		}
		b.ReportMetric(float64(b.N*4000)/b.Elapsed().Seconds(), "records/s")
	})
}
