package service

import (
	"strings"
	"testing"
	"time"
)

// TestOneRecordCannotMakeOthersLate: a like without ts takes its record's
// time, here the wall clock, a month ahead of the likes around it (history
// loaded into a topic now). It must not drag its partition's watermark
// forward: the valid likes after it are not late, and every other video
// ends as in the backfill of the same records. (Before the robust
// watermark, thousands of them were dead-lettered as late.)
func TestOneRecordCannotMakeOthersLate(t *testing.T) {
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	const n = 4
	lines := generatedLines(t, 40_000)
	now := time.Now().UnixMilli()
	odd := line{value: []byte(`{"video_id":"v-no-ts","user_id":"u-no-ts"}`), video: "v-no-ts", user: "u-no-ts", ts: now}
	at := len(lines) / 4
	lines = append(lines[:at], append([]line{odd}, lines[at:]...)...)
	createInput(t, kc, cfg.InputTopic, n)
	produce(t, kc, cfg.InputTopic, lines)

	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(len(lines)) })
	waitFor(t, "the service to go quiet", time.Minute, svc.Quiet)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantScores, _ := backfill(t, cfg.Engine, lines, n)
	got, want := lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic)), lastPerVideo(wantScores)
	delete(want, "v-no-ts") // a month ahead: it waits until its partition gets there
	delete(got, "v-no-ts")
	if len(got) != len(want) {
		t.Fatalf("%d videos, backfill %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("video %s:\n live:     %s\n backfill: %s", id, got[id], w)
		}
	}
	late := 0
	for _, r := range readTopic(t, kc, cfg.DeadLetterTopic) {
		for _, h := range r.Headers {
			if h.Key == "virality-reason" && string(h.Value) == "late" {
				late++
			}
		}
	}
	// The generator plants 0.1% of likes 10-30 minutes late: those, and no
	// more, are late.
	if planted := len(lines) / 1000; late > 2*planted+10 {
		t.Fatalf("%d likes dead-lettered as late; the generator planted about %d", late, planted)
	}
	t.Logf("%d videos agree; %d late dead letters (about %d planted); the like without ts waits: %s",
		len(want), late, len(lines)/1000, strings.TrimSpace(string(odd.value)))
}
