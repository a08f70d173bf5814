package kafkaio

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicConfig returns a topic's cleanup.policy as the broker describes it.
func cleanupPolicy(t *testing.T, c Config, topic string) string {
	t.Helper()
	cl, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	res, err := cl.DescribeConfigs(testCtx(t, 5*time.Second), &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				return e.ConfigValue
			}
		}
	}
	t.Fatalf("topic %s: no cleanup.policy described", topic)
	return ""
}

func TestEnsureTopics(t *testing.T) {
	c := broker(t)
	ctx := testCtx(t, 20*time.Second)
	specs := []TopicSpec{
		{Name: "likes", Partitions: 6},
		{Name: "video-scores", Partitions: 3, Compacted: true},
		{Name: "likes.dlq"}, // the broker's default partition count
	}
	mustTopics(t, c, specs...)

	for _, tc := range []struct {
		topic      string
		partitions int
		policy     string
	}{
		{"likes", 6, "delete"},
		{"video-scores", 3, "compact"},
		{"likes.dlq", 10, "delete"}, // kfake's default count
	} {
		n, err := Partitions(ctx, c, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.partitions {
			t.Errorf("topic %s: %d partitions, want %d", tc.topic, n, tc.partitions)
		}
		if p := cleanupPolicy(t, c, tc.topic); p != tc.policy {
			t.Errorf("topic %s: cleanup.policy=%s, want %s", tc.topic, p, tc.policy)
		}
	}

	// A second call changes nothing and warns of nothing.
	mustTopics(t, c, specs...)

	// Existing topics that differ from the spec are left alone, with a
	// warning for each difference.
	warn, err := EnsureTopics(ctx, c, []TopicSpec{{Name: "likes", Partitions: 4, Compacted: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`topic "likes" exists with 6 partitions, not the 4 asked for; it is left as it is`,
		`topic "likes" is not compacted (cleanup.policy=delete)`,
	}
	if len(warn) != len(want) {
		t.Fatalf("warnings %q, want %d", warn, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(warn[i], want[i]) {
			t.Errorf("warning %q, want it to start with %q", warn[i], want[i])
		}
	}
	if n, _ := Partitions(ctx, c, "likes"); n != 6 {
		t.Errorf("likes has %d partitions after EnsureTopics, want it left at 6", n)
	}
}

func TestPartitionsOfMissingTopic(t *testing.T) {
	c := broker(t)
	_, err := Partitions(testCtx(t, 5*time.Second), c, "nope")
	if err == nil {
		t.Fatal("no error for a missing topic")
	}
	want := `topic "nope" does not exist at ` + c.Brokers[0] + `: create it, or check the topic name`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("error %v does not wrap UnknownTopicOrPartition", err)
	}
}

// secureBroker starts a broker with SASL and ACLs: "admin" may do
// anything, "reader" may only describe.
func secureBroker(t *testing.T) Config {
	t.Helper()
	cl, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", "s3cret"),
		kfake.User("PLAIN", "reader", "pw",
			kfake.ACL{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true},
			kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "*", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true},
		),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	c := DefaultConfig()
	c.Brokers = cl.ListenAddrs()
	return c
}

func TestSASL(t *testing.T) {
	b := secureBroker(t)
	ctx := testCtx(t, 20*time.Second)
	admin := b
	admin.SASL = SASLConfig{Mechanism: "scram-sha-512", Username: "admin", Password: "s3cret"}
	if err := Ping(ctx, admin); err != nil {
		t.Fatalf("ping as admin: %v", err)
	}
	mustTopics(t, admin, TopicSpec{Name: "video-scores", Partitions: 2, Compacted: true})

	wrong := admin
	wrong.SASL.Password = "guess"
	err := Ping(ctx, wrong)
	// kfake closes the connection on bad credentials; Apache Kafka answers
	// SASL_AUTHENTICATION_FAILED (see TestExplain). Both name the flags.
	if err == nil || !strings.HasPrefix(err.Error(), "Kafka at "+b.Brokers[0]+" closed the connection (") ||
		!strings.Contains(err.Error(), `check --sasl-username/--sasl-password and --sasl-mechanism (SASL SCRAM-SHA-512, user "admin")`) {
		t.Errorf("ping with a wrong password: %v", err)
	}

	// No SASL at all: the broker closes the connection.
	if err := Ping(ctx, b); err == nil || !strings.Contains(err.Error(), "--sasl-mechanism (it may require SASL)") {
		t.Errorf("ping without SASL: %v", err)
	}

	reader := b
	reader.SASL = SASLConfig{Mechanism: "PLAIN", Username: "reader", Password: "pw"}
	if err := Ping(ctx, reader); err != nil {
		t.Fatalf("ping as reader: %v", err)
	}
	_, err = EnsureTopics(ctx, reader, []TopicSpec{{Name: "trending", Partitions: 1, Compacted: true}})
	if err == nil || !strings.HasPrefix(err.Error(), `create topic "trending": the broker refused: `) ||
		!strings.HasSuffix(err.Error(), "; create it yourself (1 partitions, cleanup.policy=compact) or grant this user the right to create topics") {
		t.Errorf("create as reader: %v", err)
	}
}
