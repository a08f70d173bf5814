package kafkaio

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/rawproduce"

	"github.com/viralityhq/virality/processor"
)

// written is a record as the test wrote it.
type written struct {
	key, value []byte
	hs         []processor.Header
	at         time.Time
}

// kafkaGo returns rs as kafka-go's records (whose key and value readers
// are read once).
func kafkaGo(rs []written) []protocol.Record {
	out := make([]protocol.Record, len(rs))
	for i, r := range rs {
		out[i] = protocol.Record{Time: r.at, Key: protocol.NewBytes(r.key), Value: protocol.NewBytes(r.value)}
		for _, h := range r.hs {
			out[i].Headers = append(out[i].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	return out
}

// randomRecords adds n records to a batcher without a broker: keys and
// values nil, empty or of random bytes, up to 3 headers (values nil or
// not), record times around a fixed one, both ways. It returns them as
// written.
func randomRecords(t *testing.T, rng *rand.Rand, n int) (*batcher, []written) {
	t.Helper()
	b := &batcher{topic: "t"}
	b.setLimit(1 << 20)
	some := func(max int) []byte {
		switch rng.IntN(5) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		p := make([]byte, 1+rng.IntN(max))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	var want []written
	for range n {
		r := written{key: some(40), value: some(400), at: time.UnixMilli(1_700_000_000_000 + rng.Int64N(200_000) - 100_000)}
		for j := range rng.IntN(4) {
			r.hs = append(r.hs, processor.Header{Key: fmt.Sprintf("h%d-%d", j, rng.IntN(3)), Value: some(20)})
		}
		if err := b.add(r.key, r.value, r.at, r.hs); err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	return b, want
}

// TestBatchSetAsKafkaGo: the record set a batchSet writes is, byte for
// byte, the one kafka-go's encoder writes for the same records (size,
// header, checksum and records), for all of a buffer's records and for
// every other one of them, as a partition's share; with large records,
// by WriteTo and by Read.
func TestBatchSetAsKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 45))
	for round := range 40 {
		b, want := randomRecords(t, rng, 1+rng.IntN(300))
		if round%4 == 0 {
			// A large value; once larger than the scratch arrays kept.
			x := &want[rng.IntN(len(want))]
			x.value = bytes.Repeat([]byte{byte(round)}, 64<<10+rng.IntN(256<<10))
			if round == 8 {
				x.value = bytes.Repeat([]byte{8}, maxScratchKept+1)
			}
			b = &batcher{topic: "t"}
			b.setLimit(2 * maxScratchKept)
			for _, r := range want {
				if err := b.add(r.key, r.value, r.at, r.hs); err != nil {
					t.Fatal(err)
				}
			}
		}
		var all, odd []int32
		var wantOdd []written
		for i := range want {
			all = append(all, int32(i))
			if i%2 == 1 {
				odd = append(odd, int32(i))
				wantOdd = append(wantOdd, want[i])
			}
		}
		for k, c := range []struct {
			idx  []int32
			want []written
		}{{all, want}, {odd, wantOdd}} {
			if len(c.idx) == 0 {
				continue
			}
			set := &batchSet{r: &b.records, chunk: b.recs, idx: c.idx}
			var got []byte
			if k == 0 {
				var w bytes.Buffer
				if _, err := set.WriteTo(&w); err != nil {
					t.Fatal(err)
				}
				got = w.Bytes()
			} else {
				var err error
				if got, err = io.ReadAll(set); err != nil {
					t.Fatal(err)
				}
			}
			var kg bytes.Buffer
			rs := protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(kafkaGo(c.want)...)}
			if _, err := rs.WriteTo(&kg); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, kg.Bytes()) {
				t.Fatalf("round %d, %d records: batchSet wrote %d bytes\n%x\nkafka-go %d\n%x", round, len(c.idx), len(got), got, kg.Len(), kg.Bytes())
			}
		}
	}
}

// TestBatchSetNoTime: records without a time get the one given, and
// kafka-go reads the batch back whole, its checksum checked.
func TestBatchSetNoTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	b, want := randomRecords(t, rng, 20)
	for _, i := range []int{0, 7, 19} {
		b.recs[i].ms = noTime
		want[i].at = time.UnixMilli(1_800_000_000_000)
	}
	idx := make([]int32, len(want))
	for i := range idx {
		idx[i] = int32(i)
	}
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(&batchSet{r: &b.records, chunk: b.recs, idx: idx, now: 1_800_000_000_000}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		r, err := rs.Records.ReadRecord()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("read %d records back, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := want[i]
		key, _ := protocol.ReadAll(r.Key)
		value, _ := protocol.ReadAll(r.Value)
		if r.Offset != int64(i) || !r.Time.Equal(w.at) || !bytes.Equal(key, w.key) || (key == nil) != (w.key == nil) ||
			!bytes.Equal(value, w.value) || (value == nil) != (w.value == nil) || len(r.Headers) != len(w.hs) {
			t.Fatalf("record %d read back as offset %d, %v, key %x, value %x, %d headers; want %v, %x, %x, %d headers",
				i, r.Offset, r.Time, key, value, len(r.Headers), w.at, w.key, w.value, len(w.hs))
		}
		for j, h := range r.Headers {
			if h.Key != w.hs[j].Key || !bytes.Equal(h.Value, w.hs[j].Value) {
				t.Fatalf("record %d header %d: %q=%x, want %q=%x", i, j, h.Key, h.Value, w.hs[j].Key, w.hs[j].Value)
			}
		}
	}
}

// BenchmarkBatchSet compares batchSet with kafka-go's encoder on
// 1,000 score-sized records with one header (the size of a catch-up's
// batches). kafka-go's time includes making its records' readers, which
// the sinks did without allocating.
func BenchmarkBatchSet(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	bt := &batcher{topic: "t"}
	bt.setLimit(1 << 20)
	var recs []written
	idx := make([]int32, 1000)
	value := make([]byte, 200)
	for i := range idx {
		idx[i] = int32(i)
		key := fmt.Appendf(nil, "video-%d", rng.IntN(100_000))
		at := time.UnixMilli(1_700_000_000_000 + int64(i))
		hs := []processor.Header{{Key: processor.HeaderCommit, Value: []byte("0123456789abcdef")}}
		if err := bt.add(key, value, at, hs); err != nil {
			b.Fatal(err)
		}
		recs = append(recs, written{key: key, value: value, hs: hs, at: at})
	}
	b.Run("batchSet", func(b *testing.B) {
		var w bytes.Buffer
		for b.Loop() {
			w.Reset()
			set := batchSet{r: &bt.records, chunk: bt.recs, idx: idx}
			set.WriteTo(&w)
		}
		b.ReportMetric(float64(b.N*len(idx))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("kafka-go", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			rs := protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(kafkaGo(recs)...)}
			if _, err := rs.WriteTo(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(idx))/b.Elapsed().Seconds(), "records/s")
	})
}

// TestProduceRequestAsKafkaGo: a produce request that writes itself
// writes, byte for byte, what kafka-go writes for the same raw produce
// request, at every version, for two topics of two partitions; in one
// part, and in several (a record larger than a part).
func TestProduceRequestAsKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 7))
	for _, large := range []bool{false, true} {
		b, ws := randomRecords(t, rng, 40)
		if large {
			b = &batcher{topic: "t"}
			b.setLimit(1 << 20)
			ws[3].value = bytes.Repeat([]byte{3}, writePart+100)
			for _, w := range ws {
				if err := b.add(w.key, w.value, w.at, w.hs); err != nil {
					t.Fatal(err)
				}
			}
		}
		if writes := produceAsKafkaGo(t, b); (writes > 1) != large {
			t.Fatalf("the request was written in %d parts", writes)
		}
	}
}

// countingWriter counts the writes to a buffer.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// produceAsKafkaGo compares the requests for some records of b, and
// returns the writes of the last one.
func produceAsKafkaGo(t *testing.T, b *batcher) (writes int) {
	request := func() *produceRequest {
		r := &produceRequest{clientID: "virality-test", Request: rawproduce.Request{Acks: -1, Timeout: 9000}}
		for _, topic := range []string{"t", "u"} {
			rt := rawproduce.RequestTopic{Topic: topic}
			for p, idx := range [][]int32{{0, 2, 4, 5}, {1, 3, 39}} {
				rt.Partitions = append(rt.Partitions, rawproduce.RequestPartition{
					Partition: int32(p),
					RecordSet: protocol.RawRecordSet{Reader: &batchSet{r: &b.records, chunk: b.recs, idx: idx, now: 5}},
				})
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	}
	for v := int16(minProduceVersion); v <= maxProduceVersion; v++ {
		r := request()
		r.Required(map[protocol.ApiKey]int16{protocol.Produce: v})
		var w countingWriter
		if _, err := r.write(&w, nil, 77); err != nil {
			t.Fatal(err)
		}
		got := w.Bytes()
		writes = w.writes
		var kg bytes.Buffer
		if err := protocol.WriteRequest(&kg, v, 77, "virality-test", &request().Request); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, kg.Bytes()) {
			t.Fatalf("v%d: wrote %d bytes\n%x\nkafka-go %d\n%x", v, len(got), got, kg.Len(), kg.Bytes())
		}
	}
	return writes
}
