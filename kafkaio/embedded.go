package kafkaio

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
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

// StartEmbedded starts a broker listening on addr, a loopback HOST:PORT
// ("" or "127.0.0.1:0": a free port on 127.0.0.1). The broker stops when
// ctx is done or Close is called.
//
// Topics are not created on first use: create them with EnsureTopics. A
// topic created without a partition count gets 10 partitions.
func StartEmbedded(ctx context.Context, addr string) (*Embedded, error) {
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
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", addr, err)
	}
	e := &Embedded{c: c, addr: c.ListenAddrs()[0], done: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			e.Close()
		case <-e.done:
		}
	}()
	return e, nil
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
