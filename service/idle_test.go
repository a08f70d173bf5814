package service

import (
	"context"
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
func TestIdlePartitionsWakeTogether(t *testing.T) {
	emb, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	kc := emb.Config()
	cfg := testConfig(t, kc)
	const n = 4
	createInput(t, kc, cfg.InputTopic, n)
	lines := generatedLines(t, 60_000)
	half := len(lines) / 2
	produce(t, kc, cfg.InputTopic, lines[:half])

	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "the first half taken", time.Minute, func() bool { return svc.EventsIn.Load() == int64(half) })
	waitFor(t, "every partition idle", time.Minute, svc.Quiet)

	// Partitions 1 to 3 cannot be fetched; once each has been refused,
	// no fetch of theirs that began before is still waiting for records.
	outage := emb.FailFetches(cfg.InputTopic, 1, 2, 3)
	defer outage.Stop()
	waitFor(t, "fetches of partitions 1 to 3 refused", time.Minute, func() bool {
		return outage.Refused(1) > 0 && outage.Refused(2) > 0 && outage.Refused(3) > 0
	})
	ctx := context.Background()
	_, before, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.InputTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, kc, cfg.InputTopic, lines[half:])
	_, after, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.InputTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := int64(half) + after - before
	waitFor(t, "partition 0's second half taken", time.Minute, func() bool { return svc.EventsIn.Load() == first })
	t.Logf("partition 0 took its %d records of the second half while the others could not be fetched", after-before)
	outage.Stop()
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(len(lines)) })
	waitFor(t, "the service to go quiet", time.Minute, svc.Quiet)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantScores, _ := backfill(t, cfg.Engine, lines, n)
	got, want := lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic)), lastPerVideo(wantScores)
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
