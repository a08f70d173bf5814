package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/viralityhq/virality/metrics"
)

// schemaDir holds the JSON Schemas of the output records, relative to this
// package.
const schemaDir = "../../docs/schemas"

// TestOutputSchemas: every line that a backfill writes (scores, trending
// lists, dead letters) validates against its schema in docs/schemas, and
// each schema rejects a record with a field missing or of the wrong JSON
// type, so that the schemas and the encoders cannot drift apart.
func TestOutputSchemas(t *testing.T) {
	schemas := map[string]*jsonschema.Schema{}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	for _, name := range []string{"score", "trending", "dead-letter"} {
		s, err := c.Compile(filepath.Join(schemaDir, name+".schema.json"))
		if err != nil {
			t.Fatalf("%s schema: %v", name, err)
		}
		schemas[name] = s
	}

	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "40000", "--videos", "2000", "--users", "100000", "--duration", "2h",
		"--bursts", "2", "--campaigns", "1", "--farm-accounts", "300",
		"--late-share", "0.01", "--bad-share", "0.01", "--out", in)
	// Malformed lines for every reason the decoder and the processor give
	// (late ones come from the generator), one not valid UTF-8.
	f, err := os.OpenFile(in, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`{"video_id":"v1","user_id":"u1","ts":1793491200000`, // bad_json
		`[1,2]`, // bad_json
		`{"video_id":17,"user_id":"u1","ts":1793491200000}`,                         // bad_field
		`{"user_id":"u1","ts":1793491200000}`,                                       // missing_video_id
		`{"video_id":"v1","user_id":"","ts":1793491200000}`,                         // missing_user_id
		`{"video_id":"` + strings.Repeat("v", 129) + `","user_id":"u1","ts":1}`,     // field_too_long
		"{\"video_id\":\"v1\",\"user_id\":\"u\xff\xfe\",\"ts\":1793491200000}",      // invalid_utf8
		`{"video_id":"v1","user_id":"u1","action":"share","ts":1793491200000}`,      // bad_action
		`{"video_id":"v1","user_id":"u1","ts":"yesterday"}`,                         // bad_ts
		`{"video_id":"v1","user_id":"u1"}`,                                          // missing_ts
		`{"video_id":"v1","user_id":"u1","ts":"2030-01-01T00:00:00Z","x":"\u00e9"}`, // future
	} {
		if _, err := f.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	out := map[string]string{
		"score":       filepath.Join(dir, "scores.jsonl"),
		"trending":    filepath.Join(dir, "trending.jsonl"),
		"dead-letter": filepath.Join(dir, "dlq.jsonl"),
	}
	runCommand(t, "backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
		"--state-dir", filepath.Join(dir, "state"),
		"--out", out["score"], "--trending-out", out["trending"], "--dead-letter-out", out["dead-letter"])

	reasons := map[string]int{}
	base64Values := 0
	for _, name := range slices.Sorted(maps.Keys(out)) {
		lines := readLines(t, out[name])
		if len(lines) < 5 {
			t.Fatalf("%s: %d lines; the backfill wrote too little to check", out[name], len(lines))
		}
		failures := 0
		for i, line := range lines {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
			if err != nil {
				t.Fatalf("%s line %d is not JSON: %v\n%s", name, i+1, err, line)
			}
			if err := schemas[name].Validate(v); err != nil {
				if failures++; failures <= 5 {
					t.Errorf("%s line %d does not validate: %v\n%s", name, i+1, err, line)
				}
				continue
			}
			if name == "dead-letter" {
				m := v.(map[string]any)
				reasons[m["reason"].(string)]++
				if _, ok := m["value_base64"]; ok {
					base64Values++
				}
			}
		}
		if failures > 0 {
			t.Errorf("%s: %d of %d lines do not validate", name, failures, len(lines))
		}
		// The schema is strict: in the first record of each shape (the
		// dead letters with value and with value_base64), each field taken
		// away or given another JSON type makes the record invalid.
		seen := map[string]bool{}
		for _, line := range lines {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
			if err != nil {
				t.Fatal(err)
			}
			rec := v.(map[string]any)
			if sh := shape(rec); !seen[sh] {
				seen[sh] = true
				checkStrict(t, schemas[name], name, rec, rec)
			}
		}
	}
	for _, r := range metrics.Reasons {
		if reasons[string(r)] == 0 {
			t.Errorf("no dead letter with reason %s checked (got %v)", r, reasons)
		}
	}
	if base64Values == 0 {
		t.Error("no dead letter with value_base64 checked")
	}
}

// checkStrict checks that root validates and that every mutant of it
// with one field of obj (root, or an object inside it) removed or replaced
// by a value of another JSON type does not; it recurses into the first
// element of arrays of objects.
func checkStrict(t *testing.T, s *jsonschema.Schema, name string, root, obj map[string]any) {
	t.Helper()
	if err := s.Validate(root); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
		delete(obj, k)
		if s.Validate(root) == nil {
			t.Errorf("%s schema accepts a record without %q", name, k)
		}
		obj[k] = otherType(v)
		if s.Validate(root) == nil {
			t.Errorf("%s schema accepts %q as %#v (was %#v)", name, k, obj[k], v)
		}
		obj[k] = v
		if arr, ok := v.([]any); ok && len(arr) > 0 {
			if elem, ok := arr[0].(map[string]any); ok {
				checkStrict(t, s, name+"."+k+"[0]", root, elem)
			}
		}
	}
}

// shape names the fields of rec, and which of its arrays are empty.
func shape(rec map[string]any) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		b.WriteString(k)
		if arr, ok := rec[k].([]any); ok && len(arr) == 0 {
			b.WriteString("[]")
		}
		b.WriteByte(',')
	}
	return b.String()
}

// otherType returns a value of a JSON type other than v's.
func otherType(v any) any {
	switch v.(type) {
	case string:
		return json.Number("1")
	case nil:
		return true
	default:
		return "1"
	}
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
