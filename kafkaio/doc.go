// Package kafkaio is Kafka I/O for virality: it knows nothing of scores.
//
// It turns a Config (brokers, TLS, SASL) into kafka-go clients, and offers
// the few things the commands need on top of them:
//
//   - Ping and EnsureTopics, whose errors say what to fix, and
//     DescribeTopicLimits (max.message.bytes, retention);
//   - Sink, an ordered output whose Flush returns once every record is
//     acknowledged by all in-sync replicas (processor.Sink); a record too
//     large for the topic is cut to fit (dead letters) or refused by
//     Write, never left to fail a Flush;
//   - PartitionSource, the records of one partition from an exact offset,
//     one fetch per call (processor.Source), with OffsetForTime and
//     FirstLastOffsets to locate ranges;
//   - Producer and PartitionOf, to publish keyed input the way Java
//     clients partition it;
//   - StartEmbedded, an in-process Kafka-protocol broker on loopback for
//     the demo and for tests.
//
// Every client is github.com/segmentio/kafka-go; the embedded broker is
// github.com/twmb/franz-go/pkg/kfake.
//
// Sinks and sources made from equal Configs share one kafka.Transport
// (one connection pool and one metadata poller), so that an instance with
// thousands of partitions does not poll metadata thousands of times.
package kafkaio
