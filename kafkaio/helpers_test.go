package kafkaio

import (
	"context"
	"github.com/viralityhq/virality/processor"
	"testing"
	"time"
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
