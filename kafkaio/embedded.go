package kafkaio

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Embedded is an in-process Kafka-protocol broker (kfake): one broker,
// data in memory, no authentication. It is for the demo and for tests,
// and listens on a loopback address only.
type Embedded struct {
	c    *kfake.Cluster
	addr string
	once sync.Once
	done chan struct{}
}

// EmbeddedOptions bound what the embedded broker keeps in memory. The
// zero value keeps every record until Close (no retention runs).
type EmbeddedOptions struct {
	// RetentionTime deletes the records of a topic's partitions whose
	// record time is older than this, by the wall clock, as Kafka's
	// retention.ms does (0: 7 days, Kafka's default). Records with
	// event times as record times must be younger than this.
	RetentionTime time.Duration
	// RetentionBytes bounds the bytes each partition keeps, oldest
	// records first, as Kafka's retention.bytes does (0: no bound). It
	// applies to every topic, compacted ones too (after compaction): a
	// changelog then keeps only its latest changes.
	RetentionBytes int64
	// SegmentBytes is the size of the segments records are kept in (0: 1
	// MiB). Retention frees memory a whole segment at a time.
	SegmentBytes int64
	// CleanInterval is how often retention runs while the broker runs
	// (0: every 5 s when RetentionTime or RetentionBytes is set;
	// otherwise never), and compaction every tenth time (it reads every
	// record of the compacted topics). Clean runs both at once.
	CleanInterval time.Duration
}

// StartEmbedded starts a broker listening on addr, a loopback HOST:PORT
// ("" or "127.0.0.1:0": a free port on 127.0.0.1). The broker stops when
// ctx is done or Close is called. It keeps every record in memory until
// then: StartEmbeddedWith bounds that.
//
// Topics are not created on first use: create them with EnsureTopics. A
// topic created without a partition count gets 10 partitions.
func StartEmbedded(ctx context.Context, addr string) (*Embedded, error) {
	return StartEmbeddedWith(ctx, addr, EmbeddedOptions{})
}

// StartEmbeddedWith starts a broker as StartEmbedded does, with retention
// and compaction as o says: every o.CleanInterval, every partition drops
// its records older than o.RetentionTime and its oldest beyond
// o.RetentionBytes; every tenth time, compacted topics first keep only
// their latest record per key. A
// reader whose next offset was dropped gets an offset-out-of-range error,
// as from Kafka.
func StartEmbeddedWith(ctx context.Context, addr string, o EmbeddedOptions) (*Embedded, error) {
	if o.RetentionTime < 0 || o.RetentionBytes < 0 || o.SegmentBytes < 0 || o.CleanInterval < 0 {
		return nil, fmt.Errorf("embedded broker: retention, segment size and clean interval must not be negative")
	}
	if o.RetentionTime > 0 && o.RetentionTime < time.Millisecond {
		return nil, fmt.Errorf("embedded broker: retention time %v: must be at least 1ms", o.RetentionTime)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 1 << 20
	}
	if o.CleanInterval == 0 && (o.RetentionTime > 0 || o.RetentionBytes > 0) {
		o.CleanInterval = 5 * time.Second
	}
	bcfg := map[string]string{
		"log.segment.bytes": strconv.FormatInt(o.SegmentBytes, 10),
	}
	if o.RetentionTime > 0 {
		bcfg["log.retention.ms"] = strconv.FormatInt(o.RetentionTime.Milliseconds(), 10)
	}
	if o.RetentionBytes > 0 {
		bcfg["log.retention.bytes"] = strconv.FormatInt(o.RetentionBytes, 10)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: want HOST:PORT, such as 127.0.0.1:0", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("embedded broker address %q: the embedded broker has no authentication and listens on a loopback address only, such as 127.0.0.1:9092", addr)
	}
	listen := func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.ClusterID("virality-embedded"),
		kfake.BrokerConfigs(bcfg),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", addr, err)
	}
	e := &Embedded{c: c, addr: c.ListenAddrs()[0], done: make(chan struct{})}
	var tick <-chan time.Time
	stop := func() {}
	if o.CleanInterval > 0 {
		t := time.NewTicker(o.CleanInterval)
		tick, stop = t.C, t.Stop
	}
	go func() {
		defer stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				e.Close()
				return
			case <-e.done:
				return
			case <-tick:
				if n%10 == 0 {
					e.Clean()
				} else {
					e.c.ApplyRetention()
				}
			}
		}
	}()
	return e, nil
}

// Clean compacts the compacted topics and applies retention to every
// topic now, as the broker does every EmbeddedOptions.CleanInterval.
func (e *Embedded) Clean() {
	select {
	case <-e.done:
		return
	default:
	}
	e.c.Compact() // compaction, then retention, of every topic
}

// Addr returns the broker's HOST:PORT, for any Kafka client.
func (e *Embedded) Addr() string { return e.addr }

// Config returns DefaultConfig pointed at the broker.
func (e *Embedded) Config() Config {
	c := DefaultConfig()
	c.Brokers = []string{e.addr}
	return c
}

// DeleteRecords deletes the records of a partition before offset, as
// retention or a DeleteRecords request does: the partition then starts at
// offset (-1: at its end, deleting every record).
func (e *Embedded) DeleteRecords(topic string, partition int, offset int64) error {
	if err := e.c.DeleteRecords(topic, int32(partition), offset); err != nil {
		return fmt.Errorf("delete records of %s/%d before offset %d: %w", topic, partition, offset, err)
	}
	return nil
}

// Close stops the broker; its data is lost.
func (e *Embedded) Close() {
	e.once.Do(func() {
		close(e.done)
		e.c.Close()
	})
}

// FetchOutage makes the embedded broker refuse the fetches of some
// partitions, as when their leader is away, until Stop; see FailFetches.
type FetchOutage struct {
	mu      sync.Mutex
	stopped bool
	refused map[int32]int
}

// notLeaderOrFollower is Kafka's NOT_LEADER_OR_FOLLOWER error code: a
// reader retries the fetch after refreshing its metadata.
const notLeaderOrFollower = 6

// FailFetches answers every fetch of the given partitions of topic with
// a retriable error (the partition's leader is away) until the outage's
// Stop: readers of those partitions get no records and no empty fetches,
// while the other partitions are read as usual (a fetch that asks for
// one of them is refused whole: Kafka readers ask for one partition a
// fetch). It is for tests of a partial outage.
func (e *Embedded) FailFetches(topic string, partitions ...int32) *FetchOutage {
	o := &FetchOutage{refused: map[int32]int{}}
	failed := map[int32]bool{}
	for _, p := range partitions {
		failed[p] = true
	}
	e.c.ControlKey(int16(kmsg.Fetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.stopped {
			e.c.DropControl()
			return nil, nil, false
		}
		e.c.KeepControl()
		req := r.(*kmsg.FetchRequest)
		hit := false
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				hit = hit || t.Topic == topic && failed[p.Partition]
			}
		}
		if !hit {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = req.Version
		resp.SessionID = req.SessionID
		for _, t := range req.Topics {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = notLeaderOrFollower
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
				if t.Topic == topic && failed[p.Partition] {
					o.refused[p.Partition]++
				}
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return o
}

// Refused returns how many fetches of partition p the outage refused.
func (o *FetchOutage) Refused(p int32) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refused[p]
}

// Stop ends the outage: the next fetches are answered as usual.
func (o *FetchOutage) Stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopped = true
}
