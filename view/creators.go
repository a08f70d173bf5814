package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// CreatorScore is a creator's record as the creator-scores topic carries
// it (README, Formats).
type CreatorScore struct {
	CreatorID     string  `json:"creator_id"`
	TS            int64   `json:"ts"`
	Seq           int64   `json:"seq"`
	Model         string  `json:"model"`
	Momentum      float64 `json:"momentum"`
	Baseline      float64 `json:"baseline"`
	Likes         int64   `json:"likes"`
	Likes5m       int64   `json:"likes_5m"`
	Likes1h       int64   `json:"likes_1h"`
	Likes24h      int64   `json:"likes_24h"`
	VideosLiked1h int64   `json:"videos_liked_1h"`
	Region        string  `json:"region"`
}

// RisingCreator is one entry of a rising-creators list.
type RisingCreator struct {
	CreatorID string  `json:"creator_id"`
	Momentum  float64 `json:"momentum"`
	Likes1h   int64   `json:"likes_1h"`
}

// RisingList is the rising creators of one region at a tick.
type RisingList struct {
	TS       int64           `json:"ts"`
	Region   string          `json:"region"`
	Creators []RisingCreator `json:"creators"`
}

// CreatorsConfig says where a Creators view reads.
type CreatorsConfig struct {
	Kafka kafkaio.Config
	// CreatorScoresTopic is the compacted topic of creator records (key:
	// creator id).
	CreatorScoresTopic string
	// RisingCreatorsTopic is the topic of rising-creators lists (key:
	// region); empty: not read.
	RisingCreatorsTopic string
	// MaxWait is how long one fetch waits for new records (0: 200ms).
	MaxWait time.Duration
}

// DefaultCreatorsConfig reads creator-scores and rising-creators from a
// local broker.
func DefaultCreatorsConfig() CreatorsConfig {
	return CreatorsConfig{Kafka: kafkaio.DefaultConfig(), CreatorScoresTopic: "creator-scores", RisingCreatorsTopic: "rising-creators"}
}

// Creators holds the latest record of each creator and the latest rising
// list of each region, read from the topics the live service writes. It
// keeps every creator of the compacted topic in memory (a few hundred
// bytes each). Its methods may be called from any goroutine.
type Creators struct {
	cfg    CreatorsConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	ready  chan struct{}

	mu       sync.RWMutex
	creators map[string]CreatorScore
	lists    map[string]RisingList
	pending  int
	scores   gate // shut: the creator scores topic is not read (FollowScores)
	err      error
}

// OpenCreators lists the partitions of the topics and reads them in the
// background until Close; Ready says when every partition has been read
// up to its end at Open.
func OpenCreators(ctx context.Context, cfg CreatorsConfig) (*Creators, error) {
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, err
	}
	if cfg.CreatorScoresTopic == "" {
		return nil, errors.New("view: no creator scores topic given (such as creator-scores)")
	}
	c := &Creators{cfg: cfg, ready: make(chan struct{}), creators: map[string]CreatorScore{}, lists: map[string]RisingList{}}
	type target struct {
		topic     string
		partition int
		end       int64
		scores    bool
	}
	var targets []target
	topics := []string{cfg.CreatorScoresTopic}
	if cfg.RisingCreatorsTopic != "" {
		topics = append(topics, cfg.RisingCreatorsTopic)
	}
	for i, topic := range topics {
		n, err := kafkaio.Partitions(ctx, cfg.Kafka, topic)
		if err != nil {
			return nil, fmt.Errorf("view: %w", err)
		}
		for p := range n {
			_, end, err := kafkaio.FirstLastOffsets(ctx, cfg.Kafka, topic, p)
			if err != nil {
				return nil, fmt.Errorf("view: %w", err)
			}
			targets = append(targets, target{topic, p, end, i == 0})
		}
	}
	var fctx context.Context
	fctx, c.cancel = context.WithCancel(context.Background())
	c.pending = len(targets)
	if c.pending == 0 {
		close(c.ready)
	}
	for _, t := range targets {
		c.wg.Add(1)
		go c.follow(fctx, t.topic, t.partition, t.end, t.scores)
	}
	return c, nil
}

func (c *Creators) follow(ctx context.Context, topic string, partition int, end int64, scores bool) {
	defer c.wg.Done()
	caught := false
	catchUp := func(off int64) {
		if !caught && off >= end {
			caught = true
			c.mu.Lock()
			if c.pending--; c.pending == 0 {
				close(c.ready)
			}
			c.mu.Unlock()
		}
	}
	var src *kafkaio.PartitionSource
	defer func() {
		if src != nil {
			src.Close()
		}
	}()
	var buf []processor.Record
	for ctx.Err() == nil {
		if scores && !c.scores.wait(ctx) {
			return
		}
		if src == nil {
			s, err := kafkaio.NewPartitionSource(c.cfg.Kafka, topic, partition, kafkaio.FirstOffset)
			if err != nil {
				c.setErr(err)
				sleepCtx(ctx, time.Second)
				continue
			}
			s.MaxWait = c.cfg.MaxWait
			src = s
			catchUp(src.Offset())
		}
		recs, err := src.Next(ctx, buf)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setErr(err)
			src.Close()
			src = nil // read again from the first offset: records are kept by seq
			sleepCtx(ctx, time.Second)
			continue
		}
		buf = recs
		c.mu.Lock()
		for _, r := range recs {
			if scores {
				if r.Value == nil {
					delete(c.creators, string(r.Key))
					continue
				}
				var s CreatorScore
				if json.Unmarshal(r.Value, &s) != nil || s.CreatorID == "" {
					continue
				}
				if old, ok := c.creators[s.CreatorID]; !ok || s.Seq > old.Seq {
					c.creators[s.CreatorID] = s
				}
				continue
			}
			var l RisingList
			if json.Unmarshal(r.Value, &l) != nil || l.Region == "" {
				continue
			}
			if old, ok := c.lists[l.Region]; !ok || l.TS >= old.TS {
				c.lists[l.Region] = l
			}
		}
		c.err = nil
		c.mu.Unlock()
		catchUp(src.Offset())
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *Creators) setErr(err error) {
	c.mu.Lock()
	c.err = fmt.Errorf("view: %w", err)
	c.mu.Unlock()
}

// Err returns the last read error, nil once a read succeeds again.
func (c *Creators) Err() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.err
}

// Ready reports whether every partition has been read up to its end at
// Open.
func (c *Creators) Ready() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until Ready or ctx ends.
func (c *Creators) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FollowScores(false) stops reading the creator scores topic, after the
// fetch under way, until FollowScores(true) reads on from where it
// stopped; the rising lists are read all along. Meanwhile Get answers what
// was read before, and Ready waits. A view follows from OpenCreators: the
// service that merges the creators turns it off rather than read its own
// records back.
func (c *Creators) FollowScores(on bool) { c.scores.set(on) }

// FollowingScores reports whether the view reads the creator scores topic
// (see FollowScores).
func (c *Creators) FollowingScores() bool { return c.scores.isOpen() }

// Get returns a creator's latest record.
func (c *Creators) Get(id string) (CreatorScore, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.creators[id]
	return s, ok
}

// Rising returns the first k creators (all with k <= 0) of the latest
// rising list of a region ("global" or a region code).
func (c *Creators) Rising(region string, k int) (RisingList, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l, ok := c.lists[region]
	if ok && k > 0 && len(l.Creators) > k {
		l.Creators = l.Creators[:k:k]
	}
	return l, ok
}

// Close stops reading; the view stays readable as it was.
func (c *Creators) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}
