package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/processor"
)

// TestBackfillFrom: a backfill of a whole file with --from T1 writes
// exactly the score records and trending lists of event time T1 and later
// that a backfill of the whole file writes, byte for byte and in the same
// order, and the dead letters of the lines from the first line of event
// time T1 on; a backfill of only those lines (no warm-up) does not. With
// --to T2 it writes what a --from T1 backfill of the file cut before its
// first line of event time T2 or later writes, a line with a clock hours
// ahead before that line notwithstanding.
func TestBackfillFrom(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "150000", "--videos", "20000", "--users", "100000", "--duration", "6h",
		"--bursts", "5", "--campaigns", "5", "--farm-accounts", "300", "--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	const now = "2026-11-26T00:00:00Z"
	from := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 1, 4, 30, 0, 0, time.UTC)
	backfill := func(name, in string, extra ...string) map[string][]byte {
		out := filepath.Join(dir, name)
		args := append([]string{"backfill", "--in", in, "--now", now, "--progress", "0",
			"--out", out + "-scores.jsonl", "--trending-out", out + "-trending.jsonl", "--dead-letter-out", out + "-dlq.jsonl"}, extra...)
		runCommand(t, args...)
		res := map[string][]byte{}
		for _, s := range []string{"scores", "trending", "dlq"} {
			b, err := os.ReadFile(out + "-" + s + ".jsonl")
			if err != nil {
				t.Fatal(err)
			}
			res[s] = b
		}
		return res
	}
	full := backfill("full", in)
	ranged := backfill("from", in, "--from", from.Format(time.RFC3339))

	lines := readLines(t, in)
	limit := mustTime(t, now).Add(processor.DefaultConfig().FutureSkew).UnixMilli()
	start := firstAtOrAfter(lines, from.UnixMilli(), limit)
	if start <= 0 || start >= len(lines) {
		t.Fatalf("no line at or after %s in the middle of the input (%d of %d)", from, start, len(lines))
	}
	t1 := from.UnixMilli()
	for _, kind := range []string{"scores", "trending"} {
		want := filterLines(t, full[kind], func(m map[string]json.RawMessage) bool { return jsonInt(t, m["ts"]) >= t1 })
		if len(want) == 0 || !bytes.Equal(ranged[kind], want) {
			t.Fatalf("%s: --from gives %d bytes, the full backfill %d bytes from %s on: not identical",
				kind, len(ranged[kind]), len(want), from)
		}
	}
	wantDead := filterLines(t, full["dlq"], func(m map[string]json.RawMessage) bool { return jsonInt(t, m["offset"]) >= int64(start) })
	if len(wantDead) == 0 || !bytes.Equal(ranged["dlq"], wantDead) {
		t.Fatalf("dead letters: --from gives %d bytes, the full backfill %d bytes from line %d on", len(ranged["dlq"]), len(wantDead), start)
	}

	// Without warm-up the same lines give other records: the test means
	// something.
	cut := filepath.Join(dir, "cut.jsonl")
	writeLines(t, cut, lines[start:])
	backfill("cold", cut, "--from", from.Format(time.RFC3339))
	got, want := lastScoresFile(t, filepath.Join(dir, "cold-scores.jsonl")), lastScoresFile(t, filepath.Join(dir, "from-scores.jsonl"))
	differ := 0
	for id, w := range want {
		if stripSeq(got[id]) != stripSeq(w) {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("a backfill from T1 without warm-up ends with the same records as one with it: the input does not test warm-up")
	}
	t.Logf("%d of %d videos end with other records without warm-up", differ, len(want))

	// --to: the input ends before its first line at or after T2; a line
	// whose clock is hours ahead, before it, ends nothing.
	end := firstAtOrAfter(lines, to.UnixMilli(), limit)
	at := end - 100
	var ev event.Event
	for event.Decode(lines[at], 0, &ev) != nil {
		at--
	}
	var planted map[string]any
	if err := json.Unmarshal(lines[at], &planted); err != nil {
		t.Fatal(err)
	}
	planted["event_id"], planted["ts"] = "ahead", to.Add(2*time.Hour).Format(time.RFC3339)
	ahead, err := json.Marshal(planted)
	if err != nil {
		t.Fatal(err)
	}
	withAhead := slices.Concat(lines[:at], [][]byte{ahead}, lines[at:])
	in2, head := filepath.Join(dir, "ahead.jsonl"), filepath.Join(dir, "head.jsonl")
	writeLines(t, in2, withAhead)
	writeLines(t, head, withAhead[:end+1])
	bounded := backfill("bounded", in2, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	headed := backfill("headed", head, "--from", from.Format(time.RFC3339))
	// Dead letters name their file.
	headed["dlq"] = bytes.ReplaceAll(headed["dlq"], []byte(`"topic":"`+head+`"`), []byte(`"topic":"`+in2+`"`))
	for _, kind := range []string{"scores", "trending", "dlq"} {
		if len(bounded[kind]) == 0 || !bytes.Equal(bounded[kind], headed[kind]) {
			t.Fatalf("%s: --to gives %d bytes, the file cut at line %d %d bytes: not identical", kind, len(bounded[kind]), end+1, len(headed[kind]))
		}
	}
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstAtOrAfter is the index of the first line that decodes to an event
// time at or after ms and not beyond limit (the future check).
func firstAtOrAfter(lines [][]byte, ms, limit int64) int {
	var ev event.Event
	for i, l := range lines {
		if event.Decode(l, 0, &ev) == nil && ev.TS >= ms && ev.TS <= limit {
			return i
		}
	}
	return len(lines)
}

// filterLines keeps the JSON lines keep accepts.
func filterLines(t *testing.T, b []byte, keep func(map[string]json.RawMessage) bool) []byte {
	t.Helper()
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if keep(m) {
			out = append(out, l...)
		}
	}
	return out
}

func jsonInt(t *testing.T, v json.RawMessage) int64 {
	t.Helper()
	var n int64
	if err := json.Unmarshal(v, &n); err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	return n
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// stripSeq removes the seq field of a score record.
func stripSeq(rec string) string {
	i := strings.Index(rec, `,"seq":`)
	if i < 0 {
		return rec
	}
	j := strings.Index(rec[i+1:], ",")
	if j < 0 {
		return rec
	}
	return rec[:i] + rec[i+1+j:]
}
