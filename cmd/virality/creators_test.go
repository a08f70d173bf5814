package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/viralityhq/virality/kafkaio"
)

// TestCreatorsBackfill: a backfill's creator score records and rising
// lists are byte-identical for --partitions 1, 4 and 8, and every line
// validates against its schema in docs/schemas (which rejects a record
// with a field missing or of another JSON type).
func TestCreatorsBackfill(t *testing.T) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	schemas := map[string]*jsonschema.Schema{}
	for _, name := range []string{"creator-score", "rising-creators"} {
		s, err := c.Compile(filepath.Join(schemaDir, name+".schema.json"))
		if err != nil {
			t.Fatalf("%s schema: %v", name, err)
		}
		schemas[name] = s
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "60000", "--videos", "3000", "--users", "100000", "--duration", "3h",
		"--bursts", "2", "--campaigns", "1", "--farm-accounts", "300", "--rising-creators", "2",
		"--late-share", "0.01", "--bad-share", "0.01", "--out", in)
	var first [2][][]byte
	for i, n := range []int{1, 4, 8} {
		cr, ri := filepath.Join(dir, fmt.Sprintf("creators-%d.jsonl", n)), filepath.Join(dir, fmt.Sprintf("rising-%d.jsonl", n))
		runCommand(t, "backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
			"--partitions", fmt.Sprint(n), "--out", filepath.Join(dir, "scores.jsonl"),
			"--creators-out", cr, "--rising-creators-out", ri)
		got := [2][][]byte{readLines(t, cr), readLines(t, ri)}
		if i == 0 {
			first = got
			continue
		}
		for k, name := range []string{"creator records", "rising lists"} {
			if len(got[k]) != len(first[k]) {
				t.Fatalf("%d partitions: %d %s, 1 partition: %d", n, len(got[k]), name, len(first[k]))
			}
			for j := range got[k] {
				if !bytes.Equal(got[k][j], first[k][j]) {
					t.Fatalf("%d partitions, %s line %d:\n%s\n1 partition:\n%s", n, name, j+1, got[k][j], first[k][j])
				}
			}
		}
	}
	for k, name := range []string{"creator-score", "rising-creators"} {
		lines := first[k]
		if len(lines) < 100 {
			t.Fatalf("%s: %d lines; too few to check", name, len(lines))
		}
		seen := map[string]bool{}
		for i, line := range lines {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
			if err != nil {
				t.Fatalf("%s line %d is not JSON: %v\n%s", name, i+1, err, line)
			}
			if err := schemas[name].Validate(v); err != nil {
				t.Fatalf("%s line %d does not validate: %v\n%s", name, i+1, err, line)
			}
			rec := v.(map[string]any)
			if sh := shape(rec); !seen[sh] {
				seen[sh] = true
				checkStrict(t, schemas[name], name, rec, rec)
			}
		}
	}
	t.Logf("%d creator records, %d rising lists, identical for 1, 4 and 8 partitions", len(first[0]), len(first[1]))
}

// TestCreatorsReplay: a replay of a whole topic ends with the same record
// for every creator as a backfill of the same partitions.
func TestCreatorsReplay(t *testing.T) {
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	topic := fmt.Sprintf("likes-creators-replay-%d", time.Now().UnixNano())
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "60000", "--videos", "3000", "--users", "100000", "--duration", "3h",
		"--bursts", "2", "--campaigns", "1", "--farm-accounts", "300", "--rising-creators", "2", "--out", in)
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: 4}}); err != nil {
		t.Fatal(err)
	}
	runCommand(t, "produce", "--brokers", brokers, "--topic", topic, "--in", in)
	runCommand(t, "replay", "--brokers", brokers, "--input-topic", topic, "--from", "2026-10-31T00:00:00Z", "--to", "2100-01-01T00:00:00Z",
		"--out", filepath.Join(dir, "r-scores.jsonl"), "--dead-letter-out", filepath.Join(dir, "r-dlq.jsonl"),
		"--creators-out", filepath.Join(dir, "r-creators.jsonl"), "--rising-creators-out", filepath.Join(dir, "r-rising.jsonl"))
	runCommand(t, "backfill", "--in", in, "--partitions", "4", "--progress", "0", "--now", time.Now().UTC().Format(time.RFC3339),
		"--out", filepath.Join(dir, "b-scores.jsonl"), "--dead-letter-out", filepath.Join(dir, "b-dlq.jsonl"),
		"--creators-out", filepath.Join(dir, "b-creators.jsonl"))
	last := func(path string) map[string]string {
		m := map[string]string{}
		for _, line := range readLines(t, path) {
			var r struct {
				ID string `json:"creator_id"`
			}
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			m[r.ID] = string(line)
		}
		return m
	}
	got, want := last(filepath.Join(dir, "r-creators.jsonl")), last(filepath.Join(dir, "b-creators.jsonl"))
	if len(got) != len(want) || len(want) == 0 || got["cr0"] == "" {
		t.Fatalf("%d creators replayed, %d backfilled (cr0: %q)", len(got), len(want), got["cr0"])
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("creator %s:\n replay:   %s\n backfill: %s", id, got[id], w)
		}
	}
	if n := len(readLines(t, filepath.Join(dir, "r-rising.jsonl"))); n < 100 {
		t.Fatalf("%d rising lists replayed", n)
	}
}
