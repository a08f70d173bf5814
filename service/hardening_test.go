package service

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/store"
)

// TestStopLeavesGroup: a service stopped gracefully leaves its consumer
// group (LeaveGroup) before Run returns, so that an instance restarted
// after SIGTERM, or the others, need not wait for its session to expire.
func TestStopLeavesGroup(t *testing.T) {
	kc := testBroker(t)
	cfg := testConfig(t, kc)
	cfg.SessionTimeout = time.Minute // a member still listed after the stop would stay for this long
	createInput(t, kc, cfg.InputTopic, 2)
	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "the service to be ready", time.Minute, func() bool { ok, _ := svc.Ready(); return ok })
	if n := members(t, kc, cfg.Group); n != 1 {
		t.Fatalf("%d members in the group while the service runs, want 1", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := members(t, kc, cfg.Group); n != 0 {
		t.Fatalf("%d members in the group after a graceful stop, want 0: the service did not leave", n)
	}
}

// members returns the number of members of a consumer group.
func members(t *testing.T, kc kafkaio.Config, group string) int {
	t.Helper()
	cl, err := kc.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Groups) != 1 || res.Groups[0].Error != nil {
		t.Fatalf("describe group %s: %+v", group, res.Groups)
	}
	return len(res.Groups[0].Members)
}

// TestReadyReportsLowDisk: while the state's file system has less than
// MinFreeDisk free, a running service reports not ready with a reason that
// names the state directory and the flag, and is ready again once there
// is room. The free space is injected (a test cannot fill a disk safely);
// cmd/virality's TestRunReadyzLowDisk fills a real tmpfs as root.
func TestReadyReportsLowDisk(t *testing.T) {
	kc := testBroker(t)
	cfg := testConfig(t, kc)
	cfg.MinFreeDisk = 64 << 20
	createInput(t, kc, cfg.InputTopic, 1)
	var free atomic.Uint64
	free.Store(1 << 30)
	dir := t.TempDir()
	svc, stop := startServiceWith(t, cfg, dir, func(s *Service) {
		s.freeBytes = func(string) (uint64, error) { return free.Load(), nil }
		s.diskEvery = 10 * time.Millisecond
	})
	defer stop()
	waitFor(t, "the service to be ready", time.Minute, func() bool { ok, _ := svc.Ready(); return ok })

	free.Store(10 << 20)
	var why string
	waitFor(t, "not ready for lack of space", time.Minute, func() bool {
		var ok bool
		ok, why = svc.Ready()
		return !ok
	})
	for _, want := range []string{dir, "almost no space left", "10 MiB free, below --min-free-disk-mb 64"} {
		if !strings.Contains(why, want) {
			t.Fatalf("not ready because %q; want it to say %q", why, want)
		}
	}
	free.Store(1 << 30)
	waitFor(t, "ready again with room", time.Minute, func() bool { ok, _ := svc.Ready(); return ok })
}

// TestSessionTimeoutValidated: a session timeout too short for three
// heartbeats, or longer than brokers accept, names the flag.
func TestSessionTimeoutValidated(t *testing.T) {
	for _, d := range []time.Duration{time.Second, time.Hour} {
		cfg := DefaultConfig()
		cfg.SessionTimeout = d
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--session-timeout "+d.String()) {
			t.Errorf("session timeout %v: %v, want an error naming --session-timeout", d, err)
		}
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil || cfg.SessionTimeout != 6*time.Second {
		t.Fatalf("default session timeout %v: %v", cfg.SessionTimeout, err)
	}
}

// startServiceWith is startService with set called on the service before
// it runs.
func startServiceWith(t *testing.T, cfg Config, dir string, set func(*Service)) (*Service, func() error) {
	t.Helper()
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, db, nil, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	set(svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return svc, func() error {
		cancel()
		return errors.Join(<-done, db.Close())
	}
}
