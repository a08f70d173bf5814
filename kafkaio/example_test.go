package kafkaio_test

import (
	"context"
	"fmt"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// A sink and a source against the embedded broker.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	broker, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer broker.Close()
	c := kafkaio.DefaultConfig()
	c.Brokers = []string{broker.Addr()}

	if _, err := kafkaio.EnsureTopics(ctx, c, []kafkaio.TopicSpec{{Name: "video-scores", Partitions: 1, Compacted: true}}); err != nil {
		panic(err)
	}
	sink, err := kafkaio.NewSink(c, "video-scores", kafkaio.SinkOptions{})
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	sink.Write(&processor.Message{Key: []byte("v42"), Value: []byte(`{"video_id":"v42","score":1.5}`), Time: 1764136800123})
	if err := sink.Flush(ctx); err != nil { // acknowledged by all in-sync replicas
		panic(err)
	}

	src, err := kafkaio.NewPartitionSource(c, "video-scores", 0, kafkaio.FirstOffset)
	if err != nil {
		panic(err)
	}
	defer src.Close()
	recs, err := src.Next(ctx, nil)
	if err != nil {
		panic(err)
	}
	for _, r := range recs {
		fmt.Printf("%s/%d@%d %s %s %d\n", r.Topic, r.Partition, r.Offset, r.Key, r.Value, r.Time)
	}
	fmt.Println("lag:", src.HighWatermark()-src.Offset())
	// Output:
	// video-scores/0@0 v42 {"video_id":"v42","score":1.5} 1764136800123
	// lag: 0
}

func ExamplePing() {
	c := kafkaio.DefaultConfig()
	c.Brokers = []string{"127.0.0.1:1"}
	fmt.Println(kafkaio.Ping(context.Background(), c))
	// Output:
	// cannot reach Kafka at 127.0.0.1:1 (dial tcp 127.0.0.1:1: connect: connection refused): check --brokers and that the broker is running
}

func ExamplePartitionOf() {
	// The partition a Java producer (and kafkaio.Producer) picks for a key.
	fmt.Println(kafkaio.PartitionOf([]byte("v42"), 12))
	// Output:
	// 3
}
