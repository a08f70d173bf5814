package kafkaio

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
)

// broker starts an embedded broker for one test and returns a Config for
// it.
func broker(t testing.TB) Config {
	t.Helper()
	e, err := StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e.Config()
}

// onBrokers runs test on an embedded broker, and on the Kafka broker at
// KAFKA_BROKERS when it is set, with a topic name of its own on each
// (one a real broker has not seen).
func onBrokers(t *testing.T, test func(t *testing.T, c Config, topic string)) {
	t.Run("embedded", func(t *testing.T) { test(t, broker(t), "test") })
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		t.Run("kafka", func(t *testing.T) {
			c := DefaultConfig()
			c.Brokers = strings.Split(b, ",")
			test(t, c, fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()))
		})
	}
}

// testCtx is a context that ends with the test, at the latest after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustTopics creates topics or fails the test.
func mustTopics(t testing.TB, c Config, specs ...TopicSpec) {
	t.Helper()
	warn, err := EnsureTopics(testCtx(t, 10*time.Second), c, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) > 0 {
		t.Fatalf("unexpected warnings: %q", warn)
	}
}

var processorMessage = processor.Message{Key: []byte("k"), Value: []byte("v"), Time: 1}

var errDeadline = context.DeadlineExceeded

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
