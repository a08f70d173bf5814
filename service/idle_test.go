package service

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
)

// TestIdlePartitionsWakeTogether: the input pauses long enough for every
// partition to go idle, then resumes on all of them at once, but one
// partition's records are fetched long before the others' (their leader
// is away). The others wake with it, and hold back its records until
// theirs come: the service ends with the state of an uninterrupted run.
// Left idle, they would let its records pass theirs by, and the account
// stages would weigh their likes late (the failure this test caught in
// TestRealKafkaBrokerRestart, where the broker came back and one
// partition was fetched first).
//
// The services' clock moves only when the test moves it (idleClock): a
// woken partition that cannot be fetched is idle again after 5 s of it,
// which the outage here must not outlast on a slow machine.
func TestIdlePartitionsWakeTogether(t *testing.T) {
	r := resumeOne(t)
	r.outage.Stop()
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return r.svc.EventsIn.Load() == int64(len(r.lines)) })
	waitFor(t, "the service to go quiet", time.Minute, func() bool { return r.clock.tick() && r.svc.Quiet() })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	sameAsBackfill(t, r.cfg, r.lines, 4)
}

// TestWokenPartitionsIdleAgain: partitions woken with another that cannot
// be fetched are idle again after 5 s of the service's clock, and the
// service goes quiet (holding them active until they could be fetched
// would hold every tick back for as long as their leader is away).
func TestWokenPartitionsIdleAgain(t *testing.T) {
	r := resumeOne(t)
	waitFor(t, "the service to go quiet while partitions 1 to 3 cannot be fetched", time.Minute,
		func() bool { return r.clock.tick() && r.svc.Quiet() })
	r.outage.Stop()
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return r.svc.EventsIn.Load() == int64(len(r.lines)) })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// resumed is a service whose four input partitions went idle after the
// first half of the lines, and of which only partition 0 could be fetched
// since the second half was produced.
type resumed struct {
	cfg    Config
	lines  []line
	svc    *Service
	stop   func() error
	clock  *idleClock
	outage *kafkaio.FetchOutage
}

func resumeOne(t *testing.T) *resumed {
	t.Helper()
	emb := embeddedBroker(t)
	kc := emb.Config()
	r := &resumed{cfg: testConfig(t, kc), lines: generatedLines(t, 60_000), clock: newIdleClock()}
	createInput(t, kc, r.cfg.InputTopic, 4)
	half := len(r.lines) / 2
	produce(t, kc, r.cfg.InputTopic, r.lines[:half])
	r.svc, r.stop = startServiceWith(t, r.cfg, t.TempDir(), func(s *Service) { s.now = r.clock.now })
	waitFor(t, "the first half taken", time.Minute, func() bool { return r.svc.EventsIn.Load() == int64(half) })
	waitFor(t, "every partition idle", time.Minute, func() bool { return r.clock.tick() && r.svc.Quiet() })

	// Partitions 1 to 3 cannot be fetched; once each has been refused,
	// no fetch of theirs that began before is still waiting for records.
	r.outage = emb.FailFetches(r.cfg.InputTopic, 1, 2, 3)
	t.Cleanup(r.outage.Stop)
	waitFor(t, "fetches of partitions 1 to 3 refused", time.Minute, func() bool {
		return r.outage.Refused(1) > 0 && r.outage.Refused(2) > 0 && r.outage.Refused(3) > 0
	})
	ctx := context.Background()
	_, before, err := kafkaio.FirstLastOffsets(ctx, kc, r.cfg.InputTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, kc, r.cfg.InputTopic, r.lines[half:])
	_, after, err := kafkaio.FirstLastOffsets(ctx, kc, r.cfg.InputTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := int64(half) + after - before
	waitFor(t, "partition 0's second half taken", time.Minute, func() bool { return r.svc.EventsIn.Load() == first })
	t.Logf("partition 0 took its %d records of the second half while the others could not be fetched", after-before)
	return r
}

// sameAsBackfill checks that every video's last score record on the
// scores topic is a backfill's of the lines, but for seq (a live run
// emits more records when it goes idle).
func sameAsBackfill(t *testing.T, cfg Config, lines []line, n int) {
	t.Helper()
	wantScores, _ := backfill(t, cfg.Engine, lines, n)
	got, want := lastPerVideoRecords(readTopic(t, cfg.Kafka, cfg.ScoresTopic)), lastPerVideo(wantScores)
	if len(got) != len(want) {
		t.Fatalf("%d videos, backfill %d", len(got), len(want))
	}
	differ := 0
	for id, w := range want {
		if withoutSeq(got[id]) != withoutSeq(w) {
			if differ < 3 {
				t.Errorf("video %s:\n live:     %s\n backfill: %s", id, got[id], w)
			}
			differ++
		}
	}
	if differ > 0 {
		t.Fatalf("%d of %d videos end unlike the backfill", differ, len(want))
	}
	t.Logf("%d videos end as in the backfill", len(want))
}

// TestIdlePartitionsWakeAcrossInstances: as TestIdlePartitionsWakeTogether,
// with two instances sharing the partitions: instance A's partitions are
// fetched after the pause while B's cannot be. A's records reach B's
// account stages, and B's theirs, through the by-user topic; every stage
// makes B's partitions active again when A's wake, and B, told by its
// stages, holds them active until it can fetch them.
func TestIdlePartitionsWakeAcrossInstances(t *testing.T) {
	emb := embeddedBroker(t)
	kc := emb.Config()
	cfg := testConfig(t, kc)
	const n = 4
	createInput(t, kc, cfg.InputTopic, n)
	clock := newIdleClock()
	a, stopA := startServiceWith(t, cfg, t.TempDir(), func(s *Service) { s.now = clock.now })
	b, stopB := startServiceWith(t, cfg, t.TempDir(), func(s *Service) { s.now = clock.now })
	waitSharing(t, a, b, n)
	pa, pb := ownedBy(a), ownedBy(b)
	t.Logf("instance A owns %v, instance B owns %v", pa, pb)

	lines := generatedLines(t, 60_000)
	half := len(lines) / 2
	produce(t, kc, cfg.InputTopic, lines[:half])
	waitFor(t, "the first half taken", time.Minute, func() bool { return a.EventsIn.Load()+b.EventsIn.Load() == int64(half) })
	waitFor(t, "both instances idle", time.Minute, func() bool { return clock.tick() && a.Quiet() && b.Quiet() })

	outage := emb.FailFetches(cfg.InputTopic, pb...)
	defer outage.Stop()
	waitFor(t, "fetches of B's partitions refused", time.Minute, func() bool {
		for _, p := range pb {
			if outage.Refused(p) == 0 {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	ends := func() (sum int64) {
		for _, p := range pa {
			_, last, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.InputTopic, int(p))
			if err != nil {
				t.Fatal(err)
			}
			sum += last
		}
		return sum
	}
	before, inA := ends(), a.EventsIn.Load()
	produce(t, kc, cfg.InputTopic, lines[half:])
	more := ends() - before
	waitFor(t, "A's second half taken", time.Minute, func() bool { return a.EventsIn.Load() == inA+more })
	// A's likes have gone through the by-user topic to B's stages too.
	waitFor(t, "the internal topics read", time.Minute, func() bool {
		return a.InternalLag.Load() == 0 && b.InternalLag.Load() == 0
	})
	t.Logf("A took its %d records of the second half while B's partitions could not be fetched", more)
	outage.Stop()
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool {
		return a.EventsIn.Load()+b.EventsIn.Load() == int64(len(lines))
	})
	waitFor(t, "both instances to go quiet", time.Minute, func() bool { return clock.tick() && a.Quiet() && b.Quiet() })
	if err := errorsJoin(stopA(), stopB()); err != nil {
		t.Fatal(err)
	}
	sameAsBackfill(t, cfg, lines, n)
}

// idleClock is a wall clock for the services that moves only when a test
// moves it, by a tenth of a second a tick.
type idleClock struct{ ns atomic.Int64 }

func newIdleClock() *idleClock {
	c := &idleClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *idleClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// tick moves the clock on; it returns true, for use in a condition.
func (c *idleClock) tick() bool {
	c.ns.Add(int64(100 * time.Millisecond))
	return true
}
