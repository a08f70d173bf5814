package service

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// ChangelogTopic is the compacted internal topic that holds every
// partition's state, so that a partition's state follows it to whichever
// instance the group gives it.
func (c *Config) ChangelogTopic() string { return c.Group + "-state-changelog" }

// targetBalancer sends a record to the partition its key names: each
// partition of state has the partition of the changelog of its number.
var targetBalancer = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
	if p, ok := processor.ChangelogPartition(m.Key); ok && int(p) < len(partitions) {
		return partitions[p]
	}
	return partitions[0]
})

// changelog is the changelog topic as the processor writes and reads it.
type changelog struct {
	*kafkaio.Sink
	kc    kafkaio.Config
	topic string
}

func (c *changelog) Ends(ctx context.Context, parts []int32) (map[int32]int64, error) {
	// A commit called from the processing loop has no deadline of its own.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ends, err := c.EndOffsets(ctx, parts)
	if err != nil {
		return nil, fmt.Errorf("end of changelog: %w", err)
	}
	return ends, nil
}

func (c *changelog) Bounds(ctx context.Context, part int32) (int64, int64, error) {
	return kafkaio.FirstLastOffsets(ctx, c.kc, c.topic, int(part))
}

func (c *changelog) Open(_ context.Context, part int32, offset int64) (processor.Source, error) {
	return kafkaio.NewPartitionSource(c.kc, c.topic, int(part), offset)
}

var (
	_ processor.Changelog       = (*changelog)(nil)
	_ processor.ChangelogReader = (*changelog)(nil)
)
