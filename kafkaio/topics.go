package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is a topic that a command needs.
type TopicSpec struct {
	Name string
	// Partitions is the partition count to create it with (0 or less:
	// the broker's default).
	Partitions int
	// Compacted topics keep the latest record per key
	// (cleanup.policy=compact): latest scores, changelogs.
	Compacted bool
	// AppendTime makes the broker stamp records with their append time
	// (message.timestamp.type=LogAppendTime), so that time-based retention
	// follows the wall clock whatever time the writer gave: internal
	// topics that carry old event times.
	AppendTime bool
}

// ErrUnknownTopic is wrapped by the errors of Partitions, FirstLastOffsets
// and OffsetForTime about a topic or partition that does not exist.
var ErrUnknownTopic error = kafka.UnknownTopicOrPartition

// adminTimeout bounds the admin calls that have no deadline of their own.
const adminTimeout = 30 * time.Second

// withClient runs fn with a client on a fresh transport, closed after, so
// that one-shot calls see current metadata.
func withClient(ctx context.Context, c Config, fn func(ctx context.Context, cl *kafka.Client) error) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	return fn(ctx, cl)
}

// EnsureTopics creates the topics of specs that do not exist, with the
// broker's default replication factor (1 on brokers too old to have
// one) and cleanup.policy=compact where asked. Existing topics are left
// as they are; when one differs from its spec (not compacted, another
// partition count) a warning says so, for the caller to show. An error
// names the topic, the broker's answer, and what to do instead.
func EnsureTopics(ctx context.Context, c Config, specs []TopicSpec) (warnings []string, err error) {
	err = withClient(ctx, c, func(ctx context.Context, cl *kafka.Client) error {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Name
		}
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("ensure topics: %w", err)
			}
			return explain(c, err)
		}
		found := make(map[string]kafka.Topic, len(md.Topics))
		var errs []error
		for _, t := range md.Topics {
			switch {
			case t.Error == nil:
				found[t.Name] = t
			case !errors.Is(t.Error, kafka.UnknownTopicOrPartition):
				errs = append(errs, fmt.Errorf("topic %q: the broker refused to describe it: %v; grant this user the right to describe it", t.Name, t.Error))
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		var check []TopicSpec
		var create []TopicSpec
		for _, s := range specs {
			if t, ok := found[s.Name]; ok {
				if s.Partitions > 0 && len(t.Partitions) != s.Partitions {
					warnings = append(warnings, fmt.Sprintf("topic %q exists with %d partitions, not the %d asked for; it is left as it is",
						s.Name, len(t.Partitions), s.Partitions))
				}
				check = append(check, s)
			} else {
				create = append(create, s)
			}
		}
		exists, errs := createTopics(ctx, cl, create, -1)
		check = append(check, exists...)
		warnings = append(warnings, checkCompacted(ctx, cl, check)...)
		return errors.Join(errs...)
	})
	return warnings, err
}

// createTopics creates specs with the replication factor rf (-1: the
// broker's default), and returns the specs that turned out to exist
// already (created meanwhile by someone else).
func createTopics(ctx context.Context, cl *kafka.Client, specs []TopicSpec, rf int) (exists []TopicSpec, errs []error) {
	if len(specs) == 0 {
		return nil, nil
	}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: -1, ReplicationFactor: rf}
		if s.Partitions > 0 {
			tc.NumPartitions = s.Partitions
		}
		if s.Compacted {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
		}
		if s.AppendTime {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "message.timestamp.type", ConfigValue: "LogAppendTime"})
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return nil, []error{fmt.Errorf("create topics %s: %v", topicNames(specs), oneLine(err))}
	}
	var retry []TopicSpec
	for _, s := range specs {
		e := res.Errors[s.Name]
		switch {
		case e == nil:
		case errors.Is(e, kafka.TopicAlreadyExists):
			exists = append(exists, s)
		case rf == -1 && errors.Is(e, kafka.InvalidReplicationFactor):
			// A broker before Kafka 2.4 has no default to use.
			retry = append(retry, s)
		default:
			errs = append(errs, refused(s, e))
		}
	}
	more, moreErrs := createTopics(ctx, cl, retry, 1)
	return append(exists, more...), append(errs, moreErrs...)
}

// refused explains a topic the broker would not create.
func refused(s TopicSpec, e error) error {
	how := "with the partitions you need"
	if s.Partitions > 0 {
		how = fmt.Sprintf("%d partitions", s.Partitions)
	}
	if s.Compacted {
		how += ", cleanup.policy=compact"
	}
	switch {
	case errors.Is(e, kafka.TopicAuthorizationFailed), errors.Is(e, kafka.ClusterAuthorizationFailed):
		return fmt.Errorf("create topic %q: the broker refused: %v; create it yourself (%s) or grant this user the right to create topics", s.Name, e, how)
	case errors.Is(e, kafka.PolicyViolation), errors.Is(e, kafka.InvalidConfiguration),
		errors.Is(e, kafka.InvalidPartitionNumber), errors.Is(e, kafka.InvalidReplicationFactor), errors.Is(e, kafka.InvalidTopic):
		return fmt.Errorf("create topic %q: the broker refused: %v; create it yourself (%s)", s.Name, e, how)
	}
	return fmt.Errorf("create topic %q: %v", s.Name, e)
}

// checkCompacted returns a warning for each spec asking for compaction
// whose topic is not compacted.
func checkCompacted(ctx context.Context, cl *kafka.Client, specs []TopicSpec) (warnings []string) {
	req := &kafka.DescribeConfigsRequest{}
	for _, s := range specs {
		if s.Compacted {
			req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
				ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, ConfigNames: []string{"cleanup.policy"},
			})
		}
	}
	if len(req.Resources) == 0 {
		return nil
	}
	res, err := cl.DescribeConfigs(ctx, req)
	if err != nil {
		for _, r := range req.Resources {
			warnings = append(warnings, fmt.Sprintf("cannot check that topic %q is compacted (%s)", r.ResourceName, oneLine(err)))
		}
		return warnings
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			warnings = append(warnings, fmt.Sprintf("cannot check that topic %q is compacted (%v)", r.ResourceName, r.Error))
			continue
		}
		policy := "delete" // Kafka's default
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
		if !strings.Contains(policy, "compact") {
			warnings = append(warnings, fmt.Sprintf("topic %q is not compacted (cleanup.policy=%s): retention will delete the latest record of keys that stop changing; "+
				"set cleanup.policy=compact on it", r.ResourceName, policy))
		}
	}
	return warnings
}

func topicNames(specs []TopicSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = fmt.Sprintf("%q", s.Name)
	}
	return strings.Join(names, ", ")
}

// Partitions returns the number of partitions of topic.
func Partitions(ctx context.Context, c Config, topic string) (int, error) {
	var n int
	err := withClient(ctx, c, func(ctx context.Context, cl *kafka.Client) error {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("partitions of topic %q: %w", topic, err)
			}
			return explain(c, err)
		}
		for _, t := range md.Topics {
			if t.Name != topic {
				continue
			}
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return &hintError{err: t.Error, msg: fmt.Sprintf("topic %q does not exist at %s: create it, or check the topic name", topic, c.addr())}
			}
			if t.Error != nil {
				return fmt.Errorf("topic %q: %w", topic, t.Error)
			}
			n = len(t.Partitions)
			return nil
		}
		return &hintError{err: kafka.UnknownTopicOrPartition, msg: fmt.Sprintf("topic %q does not exist at %s: create it, or check the topic name", topic, c.addr())}
	})
	return n, err
}

// TopicLimits are the settings of a topic that bound what may be written
// to it and how long it is kept, as the broker describes them.
type TopicLimits struct {
	// MaxMessageBytes is the topic's max.message.bytes: the largest
	// record batch it accepts, the batch's 61 bytes of header included
	// (Kafka's default: 1048588). 0 when the broker did not say.
	MaxMessageBytes int
	// DeletesByAge is whether the broker deletes records whose record
	// time is older than Retention: cleanup.policy includes delete and
	// retention.ms is not -1 (false too when the broker did not say).
	DeletesByAge bool
	// Retention is the topic's retention.ms, when DeletesByAge.
	Retention time.Duration
	// AppendTime is whether the broker stamps records with their append
	// time (message.timestamp.type=LogAppendTime), whatever record time
	// the writer gives.
	AppendTime bool
}

// DescribeTopicLimits returns the limits of topic (one DescribeConfigs
// request).
func DescribeTopicLimits(ctx context.Context, c Config, topic string) (TopicLimits, error) {
	var l TopicLimits
	err := withClient(ctx, c, func(ctx context.Context, cl *kafka.Client) error {
		var err error
		l, err = describeLimits(ctx, cl, topic)
		return err
	})
	return l, err
}

func describeLimits(ctx context.Context, cl *kafka.Client, topic string) (TopicLimits, error) {
	var l TopicLimits
	res, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		ConfigNames: []string{"max.message.bytes", "retention.ms", "cleanup.policy", "message.timestamp.type"},
	}}})
	if err != nil {
		return l, fmt.Errorf("describe the configuration of topic %q: %s", topic, oneLine(err))
	}
	policy, retention := "delete", int64(-1) // Kafka's default policy
	for _, r := range res.Resources {
		if r.Error != nil {
			return l, fmt.Errorf("describe the configuration of topic %q: %v", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			switch e.ConfigName {
			case "max.message.bytes":
				if n, err := strconv.Atoi(e.ConfigValue); err == nil && n > 0 {
					l.MaxMessageBytes = n
				}
			case "retention.ms":
				if n, err := strconv.ParseInt(e.ConfigValue, 10, 64); err == nil {
					retention = n
				}
			case "cleanup.policy":
				policy = e.ConfigValue
			case "message.timestamp.type":
				l.AppendTime = e.ConfigValue == "LogAppendTime"
			}
		}
	}
	if strings.Contains(policy, "delete") && retention >= 0 && retention <= math.MaxInt64/int64(time.Millisecond) {
		l.DeletesByAge, l.Retention = true, time.Duration(retention)*time.Millisecond
	}
	return l, nil
}
