package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// These tests prove the Kafka-facing features. They run against the broker
// named by KAFKA_BROKERS (CI starts a real Apache Kafka with
// scripts/kafka.sh) and otherwise against the embedded one, except those
// that need a real broker's listeners or a restart of it.

func kafkaName() string {
	if v := os.Getenv("KAFKA_VERSION"); v != "" && os.Getenv("KAFKA_BROKERS") != "" {
		return "Apache Kafka " + v
	}
	return "the embedded broker"
}

// consumeAll runs one service over lines already in cfg.InputTopic until
// every record is taken and the service has gone quiet: its input idle and
// every held-back record out.
func consumeAll(t *testing.T, cfg Config, n int) {
	t.Helper()
	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(n) })
	waitFor(t, "the service to go quiet", time.Minute, svc.Quiet)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRealKafkaGroupOwnership: two instances in one consumer group share
// the input partitions (each owns a disjoint part, together all), and the
// scores they write together equal the backfill's.
func TestRealKafkaGroupOwnership(t *testing.T) {
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	const n = 8
	createInput(t, kc, cfg.InputTopic, n)
	a, stopA := startService(t, cfg, t.TempDir())
	b, stopB := startService(t, cfg, t.TempDir())
	waitSharing(t, a, b, n)
	t.Logf("instance A owns %v, instance B owns %v", ownedBy(a), ownedBy(b))

	lines := generatedLines(t, 40_000)
	produce(t, kc, cfg.InputTopic, lines)
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool {
		return a.EventsIn.Load()+b.EventsIn.Load() == int64(len(lines))
	})
	if a.EventsIn.Load() == 0 || b.EventsIn.Load() == 0 {
		t.Fatalf("one instance took nothing: %d and %d", a.EventsIn.Load(), b.EventsIn.Load())
	}
	waitFor(t, "both instances to go quiet", time.Minute, func() bool { return a.Quiet() && b.Quiet() })
	if err := errorsJoin(stopA(), stopB()); err != nil {
		t.Fatal(err)
	}
	wantScores, _ := backfill(t, cfg.Engine, lines, n)
	got, want := lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic)), lastPerVideo(wantScores)
	if len(got) != len(want) {
		t.Fatalf("%d videos, backfill %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("video %s:\n live:     %s\n backfill: %s", id, got[id], w)
		}
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestRealKafkaOutputs: the service creates its output topics, video-scores
// compacted; bad records reach the dead-letter topic with their original
// bytes and headers naming the reason and source; and record timestamps
// are found by time.
func TestRealKafkaOutputs(t *testing.T) {
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	createInput(t, kc, cfg.InputTopic, 2)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var lines []line
	for i := range 200 {
		ts := base.Add(time.Duration(i) * time.Second).UnixMilli()
		v := fmt.Sprintf(`{"video_id":"v%d","user_id":"u%d","ts":%d}`, i%7, i, ts)
		lines = append(lines, line{value: []byte(v), video: fmt.Sprintf("v%d", i%7), ts: ts})
	}
	bad := []string{`{"video_id":"v1"`, `{"video_id":"v1","user_id":"u1","action":"share","ts":1}`}
	for _, v := range bad {
		lines = append(lines, line{value: []byte(v), ts: base.Add(300 * time.Second).UnixMilli()})
	}
	produce(t, kc, cfg.InputTopic, lines)
	consumeAll(t, cfg, len(lines))

	cl, err := kc.Client()
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: cfg.ScoresTopic,
			ConfigNames: []string{"cleanup.policy"}}}})
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
	}
	if policy != "compact" {
		t.Errorf("%s has cleanup.policy %q, want compact", cfg.ScoresTopic, policy)
	}

	dead := readTopic(t, kc, cfg.DeadLetterTopic)
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	reasons := map[string]bool{}
	for _, d := range dead {
		h := map[string]string{}
		for _, x := range d.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[processor.HeaderTopic] != cfg.InputTopic || h[processor.HeaderOffset] == "" || h[processor.HeaderPartition] == "" || h[processor.HeaderError] == "" {
			t.Errorf("dead letter headers %v", h)
		}
		if !slices.Contains(bad, string(d.Value)) {
			t.Errorf("dead letter value %q is not an original record", d.Value)
		}
		reasons[h[processor.HeaderReason]] = true
	}
	if !reasons["bad_json"] || !reasons["bad_action"] {
		t.Errorf("dead letter reasons %v", reasons)
	}

	// Timestamp lookup: the first record at or after a time.
	mid := base.Add(100 * time.Second)
	total := 0
	for p := range 2 {
		off, err := kafkaio.OffsetForTime(context.Background(), kc, cfg.InputTopic, p, mid)
		if err != nil {
			t.Fatal(err)
		}
		src, err := kafkaio.NewPartitionSource(kc, cfg.InputTopic, p, off)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := src.Next(context.Background(), nil)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 && recs[0].Time < mid.UnixMilli() {
			t.Errorf("partition %d: offset %d for %v holds a record of %v", p, off, mid, time.UnixMilli(recs[0].Time))
		}
		for _, r := range recs {
			if r.Time >= mid.UnixMilli() {
				total++
			}
		}
	}
	if total < 100 {
		t.Errorf("found %d records from %v on, want at least 100", total, mid)
	}
}

// TestRealKafkaSCRAM: the service connects through a SASL_SSL listener with
// SCRAM credentials, and with wrong ones fails with a message that says
// what to fix. It needs the real broker's second listener.
func TestRealKafkaSCRAM(t *testing.T) {
	addr := os.Getenv("KAFKA_SASL_BROKERS")
	if addr == "" {
		t.Skip("KAFKA_SASL_BROKERS is not set: run scripts/kafka.sh start and source .cache/kafka/env (CI does)")
	}
	t.Logf("against %s, SASL_SSL at %s", kafkaName(), addr)
	sasl := testBroker(t) // the plaintext listener, for set-up
	kc := sasl
	kc.Brokers = strings.Split(addr, ",")
	kc.TLS = kafkaio.TLSConfig{Enable: true, CAFile: os.Getenv("KAFKA_TLS_CA")}
	kc.SASL = kafkaio.SASLConfig{Mechanism: os.Getenv("KAFKA_SASL_MECHANISM"), Username: os.Getenv("KAFKA_SASL_USER"), Password: os.Getenv("KAFKA_SASL_PASSWORD")}
	if kc.SASL.Mechanism == "" {
		kc.SASL.Mechanism = kafkaio.SASLScram512
	}
	cfg := testConfig(t, kc)
	createInput(t, sasl, cfg.InputTopic, 2)
	lines := generatedLines(t, 40_000)
	produce(t, sasl, cfg.InputTopic, lines)
	consumeAll(t, cfg, len(lines))
	if got := len(lastPerVideoRecords(readTopic(t, sasl, cfg.ScoresTopic))); got == 0 {
		t.Fatal("no scores written through SASL_SSL")
	}

	wrong := kc
	wrong.SASL.Password = "not-the-password"
	err := kafkaio.Ping(context.Background(), wrong)
	if err == nil || !strings.Contains(err.Error(), "--sasl") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
}

// TestRealKafkaKcat: an independent client, kcat (librdkafka), produces
// likes that the service scores, and reads the scores back.
func TestRealKafkaKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs it: apt-get install kcat)")
	}
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	createInput(t, kc, cfg.InputTopic, 4)
	now := time.Now().Add(-time.Minute).UnixMilli()
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, "kv%d|{\"video_id\":\"kv%d\",\"user_id\":\"ku%d\",\"ts\":%d}\n", i%5, i%5, i, now+int64(i))
	}
	prod := exec.Command(kcat, "-b", kc.Brokers[0], "-t", cfg.InputTopic, "-P", "-K", "|")
	prod.Stdin = strings.NewReader(in.String())
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v: %s", err, out)
	}
	consumeAll(t, cfg, 50)
	out, err := exec.Command(kcat, "-b", kc.Brokers[0], "-t", cfg.ScoresTopic, "-C", "-e", "-q", "-f", "%k\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	last := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			last[k] = v
		}
	}
	for i := range 5 {
		if !strings.Contains(last[fmt.Sprintf("kv%d", i)], `"likes":10,`) {
			t.Errorf("kv%d: %s", i, last[fmt.Sprintf("kv%d", i)])
		}
	}
}

// TestRealKafkaBrokerRestart: the broker goes away in the middle of
// processing (stopped, 20 s, started again on its data): the service keeps
// running, reports not ready while the broker is away, resumes by itself,
// and ends with the state of an uninterrupted run.
func TestRealKafkaBrokerRestart(t *testing.T) {
	if os.Getenv("KAFKA_BROKERS") == "" {
		t.Skip("needs the real broker of scripts/kafka.sh (KAFKA_BROKERS); CI runs it")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "kafka.sh")
	kafkaSh := func(cmd string) {
		t.Helper()
		if out, err := exec.Command(script, cmd).CombinedOutput(); err != nil {
			t.Fatalf("kafka.sh %s: %v\n%s", cmd, err, out)
		}
	}
	kc := testBroker(t)
	t.Logf("against %s", kafkaName())
	cfg := testConfig(t, kc)
	const n = 4
	createInput(t, kc, cfg.InputTopic, n)
	lines := generatedLines(t, 60_000)
	half := len(lines) / 2
	produce(t, kc, cfg.InputTopic, lines[:half])

	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "the first half taken", time.Minute, func() bool { return svc.EventsIn.Load() == int64(half) })
	kafkaSh("pause")
	paused := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			kafkaSh("resume") // leave the broker running for the other tests
		}
	})
	waitFor(t, "not ready while the broker is away", 30*time.Second, func() bool { ok, _ := svc.Ready(); return !ok })
	_, why := svc.Ready()
	t.Logf("not ready %v after the broker stopped, with %d of %d records taken: %s",
		time.Since(paused).Round(time.Millisecond), svc.EventsIn.Load(), len(lines), why)
	time.Sleep(20*time.Second - time.Since(paused))
	kafkaSh("resume")
	resumed = true
	waitFor(t, "the broker to answer", 30*time.Second, func() bool { return kafkaio.Ping(context.Background(), kc) == nil })
	produce(t, kc, cfg.InputTopic, lines[half:])
	waitFor(t, "ready again", time.Minute, func() bool { ok, _ := svc.Ready(); return ok })
	t.Logf("ready again %v after the broker stopped", time.Since(paused).Round(time.Millisecond))
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(len(lines)) })
	waitFor(t, "the service to go quiet", time.Minute, svc.Quiet)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The service went idle while the broker was away and flushed its
	// held-back scores then, so it emitted more records than the backfill:
	// every video's last record equals the backfill's but for seq.
	wantScores, _ := backfill(t, cfg.Engine, lines, n)
	got, want := lastPerVideoRecords(readTopic(t, kc, cfg.ScoresTopic)), lastPerVideo(wantScores)
	if len(got) != len(want) {
		t.Fatalf("%d videos, backfill %d", len(got), len(want))
	}
	for id, w := range want {
		if withoutSeq(got[id]) != withoutSeq(w) {
			t.Fatalf("video %s:\n live:     %s\n backfill: %s", id, got[id], w)
		}
	}
}

var seqField = regexp.MustCompile(`"seq":\d+,`)

func withoutSeq(record string) string { return seqField.ReplaceAllString(record, "") }
