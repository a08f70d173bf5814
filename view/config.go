package view

import (
	"errors"
	"fmt"
	"time"

	"github.com/viralityhq/virality/kafkaio"
)

// Config says where the view reads and how much it keeps. Start from
// DefaultConfig.
type Config struct {
	// Kafka is how to reach the cluster: brokers, client id, TLS, SASL.
	Kafka kafkaio.Config
	// ScoresTopic is the compacted topic of score records (key: video id).
	ScoresTopic string
	// TrendingTopic is the topic of trending lists (key: region); empty:
	// do not read trending lists (Top then reports nothing).
	TrendingTopic string
	// MaxVideos bounds the videos held; beyond it the videos with the
	// oldest ts are dropped (see the package comment).
	MaxVideos int
	// MaxWait is how long one fetch waits for new records (0: 200ms). It
	// bounds how late a record is seen on a quiet partition, not how fast
	// a busy one is read.
	MaxWait time.Duration
}

// Defaults of Config.
const (
	DefaultScoresTopic   = "video-scores"
	DefaultTrendingTopic = "trending"
	DefaultMaxVideos     = 1_000_000
)

// DefaultConfig reads video-scores and trending from a local broker and
// holds at most one million videos.
func DefaultConfig() Config {
	return Config{
		Kafka:         kafkaio.DefaultConfig(),
		ScoresTopic:   DefaultScoresTopic,
		TrendingTopic: DefaultTrendingTopic,
		MaxVideos:     DefaultMaxVideos,
	}
}

// Validate checks c without connecting (it reads the TLS files).
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.ScoresTopic == "" {
		return errors.New("view: no scores topic given (the compacted topic of score records, such as video-scores)")
	}
	if c.TrendingTopic == c.ScoresTopic {
		return fmt.Errorf("view: the trending topic and the scores topic are both %q", c.ScoresTopic)
	}
	if c.MaxVideos <= 0 {
		return fmt.Errorf("view: max videos %d: must be at least 1", c.MaxVideos)
	}
	if c.MaxWait < 0 {
		return fmt.Errorf("view: max wait %v: must not be negative", c.MaxWait)
	}
	return nil
}
