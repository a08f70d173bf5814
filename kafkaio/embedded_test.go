package kafkaio

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStartEmbedded(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:9092"} {
		if _, err := StartEmbedded(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "listens on a loopback address only") {
			t.Errorf("StartEmbedded(%q): %v", addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := StartEmbedded(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") {
		t.Errorf("address %q, want 127.0.0.1:PORT", e.Addr())
	}
	if err := Ping(ctx, e.Config()); err != nil {
		t.Fatal(err)
	}
	cancel() // stops the broker
	c := e.Config()
	c.DialTimeout = time.Second
	deadline := time.Now().Add(2 * time.Second)
	for Ping(context.Background(), c) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the broker still answers after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
