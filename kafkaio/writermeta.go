package kafkaio

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// topicMetaTTL is how long a writer's transport answers its topic's
// metadata from memory.
const topicMetaTTL = time.Second

// writerTransport is the transport of a batcher. Each chunk a batcher
// sends asks for the topic's metadata (its partitions and their leaders),
// and kafka.Transport answers each ask with a new copy of its cached
// metadata filtered to the topic. (kafka-go's Writer, which sent before,
// asked once for every message: in the live service a tenth of all it
// allocated.) writerTransport answers that ask from its own copy for up
// to topicMetaTTL, and passes every other request (produce requests,
// other topics) to the shared transport. forget drops the copy, as a
// refresh of the shared transport does.
type writerTransport struct {
	kafka.RoundTripper
	topic string

	mu         sync.Mutex
	meta       *metadata.Response // the topic's, without error; nil: none
	at         time.Time
	partitions int // of meta's topic; 0: not known
}

func (t *writerTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadata.Request)
	if !ok || len(m.TopicNames) != 1 || m.TopicNames[0] != t.topic {
		return t.RoundTripper.RoundTrip(ctx, addr, req)
	}
	t.mu.Lock()
	if t.meta != nil && time.Since(t.at) < topicMetaTTL {
		r := t.meta
		t.mu.Unlock()
		return r, nil
	}
	t.mu.Unlock()
	res, err := t.RoundTripper.RoundTrip(ctx, addr, req)
	if err != nil {
		return res, err
	}
	if r, ok := res.(*metadata.Response); ok {
		for _, tm := range r.Topics {
			if tm.Name == t.topic && tm.ErrorCode == 0 && len(tm.Partitions) > 0 {
				t.mu.Lock()
				t.meta, t.at, t.partitions = r, time.Now(), len(tm.Partitions)
				t.mu.Unlock()
			}
		}
	}
	return res, err
}

// forget drops the cached answer.
func (t *writerTransport) forget() {
	t.mu.Lock()
	t.meta = nil
	t.mu.Unlock()
}

// knownPartitions returns the topic's partition count as last read, 0
// when not known.
func (t *writerTransport) knownPartitions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.partitions
}
