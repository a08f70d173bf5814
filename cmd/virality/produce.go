package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

func init() {
	register("produce", "publish a JSON-lines file of likes to a Kafka topic, keyed by video, with record time = event time (or the wall clock)", runProduce)
}

// produceOptions are the settings of one produce run.
type produceOptions struct {
	kafka kafkaio.Config
	topic string
	in    []string
	// rate is records per second of wall time (0: as fast as possible).
	rate float64
	// partitions, when above 0, creates the topic with that many
	// partitions if it does not exist.
	partitions int
	// deadLetterOut, when set, receives the lines too large for the
	// topic as dead-letter JSON lines (reason too_large).
	deadLetterOut string
	// keyBy is what keys records: video, user or none.
	keyBy string
	// wallClock stamps each record with the wall clock rather than its
	// event time (--record-time now).
	wallClock bool
}

// reasonTooLarge is the dead-letter reason of a line too large for the
// topic.
const reasonTooLarge = "too_large"

// produceResult counts what a run published.
type produceResult struct {
	records, unkeyed int64
	// tooLarge counts the lines not published because a record batch of
	// the topic, at most maxBytes (max.message.bytes), cannot hold them.
	tooLarge int64
	maxBytes int
	// old counts the records published with a record time older than the
	// topic's retention (0 when it deletes nothing by age or its
	// retention could not be read).
	old       int64
	retention time.Duration
	elapsed   time.Duration
}

func runProduce(ctx context.Context, args []string) error {
	o := produceOptions{}
	var in pathList
	fs := newFlagSet("produce", "produce [flags] FILE...\n\n"+
		"Publishes like events from JSON-lines files (gzip detected by content; - is standard input),\n"+
		"in the order given, one record per non-blank line, to a Kafka topic: the value is the line as\n"+
		"it is, the key its video_id (partitioned as Java clients partition keys, murmur2; see --key), and the\n"+
		"record time its ts (the wall clock when it has no ts). A line that does not decode as a like\n"+
		"event (broken JSON, missing ids, bad action or ts) is published too, as it is, without a key,\n"+
		"and the processor dead-letters it with the reason. Such a line, and a like whose ts lies in\n"+
		"the future, takes the record time of the line before, so that the topic's timestamps stay\n"+
		"in order for lookups by time (replay). With --record-time now every record gets the wall\n"+
		"clock instead. Records whose record time is older than the topic's retention (retention.ms)\n"+
		"may be deleted by the broker at once: produce warns when it publishes such records.\n"+
		"A line too large for one record batch of the topic (max.message.bytes) is not published: it\n"+
		"is counted, written to --dead-letter-out if given, and produce goes on.\n"+
		"Every record is acknowledged by all in-sync replicas before produce exits.\n\n"+
		"Example:\n  virality gen --events 100000 --out likes.jsonl\n"+
		"  virality produce --brokers 127.0.0.1:9092 --topic likes --partitions 8 likes.jsonl")
	fs.Var(&in, "in", "input JSON-lines `FILE` (repeatable; gzip detected by content; - for standard input);\ninput files may also be given as arguments")
	fs.StringVar(&o.topic, "topic", "likes", "Kafka `TOPIC` to publish to")
	fs.Float64Var(&o.rate, "rate", 0, "publish `N` records a second of wall time (0: as fast as possible)")
	fs.IntVar(&o.partitions, "partitions", 0, "create --topic with `N` partitions when it does not exist (0: do not create it)")
	fs.StringVar(&o.deadLetterOut, "dead-letter-out", "", "write the lines too large for --topic to `FILE`, as dead-letter JSON lines with reason\ntoo_large (- for standard output; empty: only count them)")
	fs.StringVar(&o.keyBy, "key", "video", "record key: `video` (its video_id, recommended: no repartitioning), user (its user_id)\nor none (no key: records spread over the partitions); the service scores all three alike")
	recordTime := fs.String("record-time", "event", "record time of each record: `event` (its event time, as above) or now (the wall clock)")
	kf := addKafkaFlags(fs)
	if err := parseWithInputs(fs, args); err != nil {
		return err
	}
	o.in = in
	switch {
	case len(o.in) == 0:
		return usagef("no input: give FILE arguments or --in FILE (- for standard input)")
	case o.topic == "":
		return usagef("--topic: give the topic to publish to")
	case o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0):
		return usagef("--rate %v: must be 0 (as fast as possible) or more records a second", o.rate)
	case o.partitions < 0:
		return usagef("--partitions %d: must not be negative", o.partitions)
	case o.keyBy != "video" && o.keyBy != "user" && o.keyBy != "none":
		return usagef("--key %q: choose video, user or none", o.keyBy)
	case *recordTime != "event" && *recordTime != "now":
		return usagef("--record-time %q: must be event (the line's event time) or now (the wall clock)", *recordTime)
	}
	o.wallClock = *recordTime == "now"
	var err error
	if o.kafka, err = kf.config(); err != nil {
		return err
	}
	res, err := produceFiles(ctx, o)
	if res.records > 0 || res.tooLarge > 0 || err == nil {
		fmt.Fprintf(os.Stderr, "produce: published %d records (%d unkeyed: lines that are not like events) to topic %q at %s in %.2fs (%.0f/s)\n",
			res.records, res.unkeyed, o.topic, strings.Join(o.kafka.Brokers, ","), res.elapsed.Seconds(), float64(res.records)/max(res.elapsed.Seconds(), 1e-9))
		where := ""
		if o.deadLetterOut != "" {
			where = ", written to " + o.deadLetterOut
		}
		fmt.Fprintf(os.Stderr, "produce: skipped %d lines too large for topic %q (a record batch holds at most %d bytes, max.message.bytes)%s\n",
			res.tooLarge, o.topic, res.maxBytes, where)
		if res.old > 0 {
			fmt.Fprintf(os.Stderr, "warning: %d records have a record time older than the retention of topic %q (%s): the broker may delete them at once; --record-time now stamps records with the wall clock\n",
				res.old, o.topic, res.retention)
		}
	}
	return err
}

// produceFiles publishes the lines of o.in to o.topic and returns what it
// published: every record counted is acknowledged. When ctx ends it
// stops reading, sends what it has buffered, and returns ctx's error.
func produceFiles(ctx context.Context, o produceOptions) (res produceResult, err error) {
	began := time.Now()
	defer func() { res.elapsed = time.Since(began) }()
	src, err := jsonl.OpenSource(o.in)
	if err != nil {
		return res, err
	}
	defer src.Close()
	if err := kafkaio.Ping(ctx, o.kafka); err != nil {
		return res, err
	}
	if err := ensureTopic(ctx, o.kafka, o.topic, o.partitions); err != nil {
		return res, err
	}
	// Records older than the retention may be deleted as soon as they
	// are written.
	if lim, err := kafkaio.DescribeTopicLimits(ctx, o.kafka, o.topic); err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v: record times are not checked against the topic's retention\n", err)
	} else if lim.DeletesByAge && !lim.AppendTime {
		// (A topic that stamps append times keeps records by those.)
		res.retention = lim.Retention
	}
	p, err := kafkaio.NewProducer(o.kafka, o.topic)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	res.maxBytes = p.MaxMessageBytes()
	var dead *jsonl.Sink
	if o.deadLetterOut != "" {
		if dead, err = jsonl.CreateSink(o.deadLetterOut, jsonl.DeadLetters, jsonl.SinkOptions{}); err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, dead.Flush(context.Background()), dead.Close()) }()
		// A new file each run: CreateSink leaves an existing one as it is.
		if err := dead.Restore(0); err != nil {
			return res, err
		}
	}

	pace := pacer{rate: o.rate}
	var (
		recs    []processor.Record
		ev      event.Event
		key     []byte
		unkeyed int64
		last    time.Time // record time of the last line with a usable ts
	)
	defer func() {
		// Count only what the broker acknowledged.
		res.records = p.Writes()
		res.unkeyed = min(unkeyed, res.records)
	}()
	for {
		recs, err = src.Next(ctx, recs)
		for _, r := range recs {
			if err := pace.wait(ctx, 0, p.Flush); err != nil {
				return res, finishProduce(p, err)
			}
			now := time.Now()
			// A line that does not decode, or whose event time lies in
			// the future, takes the record time of the line before: the
			// topic's timestamps then stay in order, for time lookups,
			// and the processor still dead-letters it with the reason.
			k, t := []byte(nil), last
			decoded := event.Decode(r.Value, now.UnixMilli(), &ev) == nil
			if decoded {
				switch o.keyBy {
				case "none":
				case "user":
					key = append(key[:0], ev.UserID...)
					k = key
				default: // video
					key = append(key[:0], ev.VideoID...)
					k = key
				}
				if ev.TS <= now.UnixMilli() && !o.wallClock {
					t = time.UnixMilli(ev.TS)
					last = t
				}
			}
			if t.IsZero() || o.wallClock {
				t = now
			}
			perr := p.Produce(ctx, k, r.Value, t)
			var tooLarge *kafkaio.TooLargeError
			switch {
			case errors.As(perr, &tooLarge):
				// Not publishable: counted, kept aside if asked, and
				// the run goes on.
				res.tooLarge++
				if dead != nil {
					if err := dead.Write(tooLargeLetter(&r, tooLarge)); err != nil {
						return res, finishProduce(p, err)
					}
				}
				continue
			case perr != nil:
				return res, finishProduce(p, perr)
			}
			if !decoded {
				unkeyed++
			}
			if res.retention > 0 && now.Sub(t) > res.retention {
				if res.old == 0 {
					fmt.Fprintf(os.Stderr, "warning: record %d of %s has record time %s, older than the retention of topic %q (%s): the broker may delete it at once; --record-time now stamps records with the wall clock\n",
						r.Offset, r.Topic, t.UTC().Format(time.RFC3339), o.topic, res.retention)
				}
				res.old++
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, finishProduce(p, err)
		}
	}
	return res, p.Flush(ctx)
}

// tooLargeLetter returns the dead letter of an input record too large for
// the topic, as the processor writes dead letters to files.
func tooLargeLetter(r *processor.Record, e *kafkaio.TooLargeError) *processor.Message {
	return &processor.Message{Value: r.Value, Headers: []processor.Header{
		{Key: processor.HeaderReason, Value: []byte(reasonTooLarge)},
		{Key: processor.HeaderError, Value: fmt.Appendf(nil, "a line of %d bytes needs a record batch of %d bytes, more than the %d topic %q accepts (max.message.bytes)",
			len(r.Value), e.Size, e.Max, e.Topic)},
		{Key: processor.HeaderTopic, Value: []byte(r.Topic)},
		{Key: processor.HeaderPartition, Value: []byte("0")},
		{Key: processor.HeaderOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
	}}
}

// finishProduce sends what p has buffered after a stop (Ctrl-C or a read
// error), so that what was read is published, and returns err.
func finishProduce(p *kafkaio.Producer, err error) error {
	if p.Buffered() == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, p.Flush(ctx))
}

// ensureTopic checks that topic exists, and creates it with partitions
// partitions when it does not and partitions is above 0.
func ensureTopic(ctx context.Context, kc kafkaio.Config, topic string, partitions int) error {
	_, err := kafkaio.Partitions(ctx, kc, topic)
	if err == nil || !errors.Is(err, kafkaio.ErrUnknownTopic) {
		return err
	}
	if partitions <= 0 {
		return fmt.Errorf("topic %q does not exist at %s: create it, or give --partitions N to create it with N partitions", topic, strings.Join(kc.Brokers, ","))
	}
	warnings, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: topic, Partitions: partitions}})
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	return err
}

// pacer spaces records out in wall time: at rate records a second, or,
// when realtime, each when the wall clock reaches its event time. The zero
// pacer does not wait.
type pacer struct {
	rate     float64
	realtime bool

	start time.Time // wall time of the first record
	n     int64     // records paced so far
}

// flushBefore is the shortest wait before which buffered records are
// flushed, so that paced records are visible when due rather than when a
// buffer fills.
const flushBefore = 20 * time.Millisecond

// wait returns when the next record, whose event time is ts (ms), is due.
// flush (may be nil) is called before a wait long enough to matter.
func (p *pacer) wait(ctx context.Context, ts int64, flush func(context.Context) error) error {
	var due time.Time
	switch {
	case p.realtime:
		due = time.UnixMilli(ts)
	case p.rate > 0:
		if p.n == 0 {
			p.start = time.Now()
		}
		due = p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
		p.n++
	default:
		return nil
	}
	d := time.Until(due)
	if d <= time.Millisecond {
		return ctx.Err()
	}
	if d >= flushBefore && flush != nil {
		if err := flush(ctx); err != nil {
			return err
		}
		d = time.Until(due)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
