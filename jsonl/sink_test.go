package jsonl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viralityhq/virality/processor"
)

func openSink(t *testing.T, path string, format Format) *Sink {
	t.Helper()
	s, err := CreateSink(path, format, SinkOptions{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func write(t *testing.T, s processor.Sink, values ...string) {
	t.Helper()
	for _, v := range values {
		if err := s.Write(&processor.Message{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
}

func flush(t *testing.T, s processor.Sink) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSinkLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "scores.jsonl")
	s := openSink(t, p, Lines)
	if err := s.Restore(0); err != nil {
		t.Fatal(err)
	}
	write(t, s, `{"a":1}`, `{"b":2}`)
	if got := s.Position(); got != 0 {
		t.Errorf("Position before Flush = %d, want 0", got)
	}
	flush(t, s)
	want := "{\"a\":1}\n{\"b\":2}\n"
	if got := s.Position(); got != int64(len(want)) {
		t.Errorf("Position after Flush = %d, want %d", got, len(want))
	}
	if got := readString(t, p); got != want {
		t.Errorf("file = %q, want %q", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(&processor.Message{Value: []byte("x")}); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestSinkLargeWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.jsonl")
	s := openSink(t, p, Lines)
	s.Restore(0)
	line := strings.Repeat("z", 1000)
	var want strings.Builder
	for range 5000 { // several buffer flushes
		write(t, s, line)
		want.WriteString(line + "\n")
	}
	huge := strings.Repeat("h", 3*flushSize)
	write(t, s, huge)
	want.WriteString(huge + "\n")
	flush(t, s)
	if got := readString(t, p); got != want.String() {
		t.Errorf("file has %d bytes, want %d", len(got), want.Len())
	}
	if got := s.Position(); got != int64(want.Len()) {
		t.Errorf("Position = %d, want %d", got, want.Len())
	}
}

func TestSinkDeadLetters(t *testing.T) {
	headers := func(reason, errText, topic, part, off string) []processor.Header {
		var hs []processor.Header
		add := func(k, v string) {
			if v != "" {
				hs = append(hs, processor.Header{Key: k, Value: []byte(v)})
			}
		}
		add(processor.HeaderReason, reason)
		add(processor.HeaderError, errText)
		add(processor.HeaderTopic, topic)
		add(processor.HeaderPartition, part)
		add(processor.HeaderOffset, off)
		return hs
	}
	type deadLetter struct {
		Reason      string  `json:"reason"`
		Error       string  `json:"error"`
		Topic       string  `json:"topic"`
		Partition   *int64  `json:"partition"`
		Offset      *int64  `json:"offset"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
	}
	i64 := func(n int64) *int64 { return &n }
	str := func(s string) *string { return &s }
	tests := []struct {
		name  string
		msg   processor.Message
		want  deadLetter
		value []byte // the original bytes, checked against the output
	}{
		{
			name: "bad json",
			msg: processor.Message{Value: []byte(`{"video_id":`),
				Headers: headers("bad_json", "unexpected end of input", "in/a.jsonl", "0", "17")},
			want: deadLetter{Reason: "bad_json", Error: "unexpected end of input", Topic: "in/a.jsonl",
				Partition: i64(0), Offset: i64(17), Value: str(`{"video_id":`)},
		},
		{
			name: "strings that need escaping",
			msg: processor.Message{Value: []byte("{\"v\":\"a\\\"b\"}\t\x01 é \u2028"),
				Headers: headers("missing_field", "field \"user_id\"\n\\ required", "x\"y", "3", "9223372036854775807")},
			want: deadLetter{Reason: "missing_field", Error: "field \"user_id\"\n\\ required", Topic: "x\"y",
				Partition: i64(3), Offset: i64(9223372036854775807), Value: str("{\"v\":\"a\\\"b\"}\t\x01 é \u2028")},
		},
		{
			name:  "invalid UTF-8 is base64",
			msg:   processor.Message{Value: []byte("{\"video_id\":\"\xff\xfe\"}"), Headers: headers("bad_utf8", "bad \xff", "t", "1", "2")},
			want:  deadLetter{Reason: "bad_utf8", Error: "bad \ufffd", Topic: "t", Partition: i64(1), Offset: i64(2)},
			value: []byte("{\"video_id\":\"\xff\xfe\"}"),
		},
		{
			name: "missing headers",
			msg:  processor.Message{Value: []byte("x"), Headers: headers("late", "", "", "", "n/a")},
			want: deadLetter{Reason: "late", Value: str("x")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "dlq.jsonl")
			s := openSink(t, p, DeadLetters)
			s.Restore(0)
			if err := s.Write(&tc.msg); err != nil {
				t.Fatal(err)
			}
			flush(t, s)
			out := readString(t, p)
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("output %q is not one line", out)
			}
			var got deadLetter
			dec := json.NewDecoder(strings.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("decode %q: %v", out, err)
			}
			if tc.value != nil {
				if got.ValueBase64 == nil || got.Value != nil {
					t.Fatalf("want value_base64 only, got %q", out)
				}
				raw, err := base64.StdEncoding.DecodeString(*got.ValueBase64)
				if err != nil || !bytes.Equal(raw, tc.value) {
					t.Errorf("value_base64 decodes to %q, %v; want %q", raw, err, tc.value)
				}
				got.ValueBase64 = nil
			}
			if g, w := mustJSON(t, got), mustJSON(t, tc.want); g != w {
				t.Errorf("got  %s\nwant %s\nline %s", g, w, out)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSinkRestore(t *testing.T) {
	tests := []struct {
		name     string
		existing string // file content before CreateSink
		restore  func(first, second, size int64) int64
		want     string
		wantErr  error
	}{
		{
			name:     "fresh start truncates an existing file",
			existing: "old output\n",
			restore:  func(first, second, size int64) int64 { return 0 },
			want:     "new\n",
		},
		{
			name:    "back to an earlier commit",
			restore: func(first, second, size int64) int64 { return first },
			want:    "a\nb\nnew\n",
		},
		{
			name:    "at the end",
			restore: func(first, second, size int64) int64 { return second },
			want:    "a\nb\nc\nnew\n",
		},
		{
			name:    "beyond the end",
			restore: func(first, second, size int64) int64 { return size + 1 },
			wantErr: ErrOutputChanged,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "out.jsonl")
			if tc.existing != "" {
				os.WriteFile(p, []byte(tc.existing), 0o644)
			}
			s := openSink(t, p, Lines)
			if got := readString(t, p); got != tc.existing {
				t.Fatalf("CreateSink changed the file to %q", got)
			}
			if err := s.Restore(0); err != nil {
				t.Fatal(err)
			}
			write(t, s, "a", "b")
			flush(t, s)
			first := s.Position()
			write(t, s, "c")
			flush(t, s)
			second := s.Position()
			write(t, s, "unflushed")
			s.Close()

			// A restart: a new sink on the same file, cut back to a commit.
			s = openSink(t, p, Lines)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			pos := tc.restore(first, second, fi.Size())
			err = s.Restore(pos)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "state directory") {
					t.Fatalf("Restore(%d) = %v, want %v telling what to do", pos, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Position(); got != pos {
				t.Errorf("Position after Restore(%d) = %d", pos, got)
			}
			write(t, s, "new")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readString(t, p); got != tc.want {
				t.Errorf("file = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSinkNotRestorable(t *testing.T) {
	var b bytes.Buffer
	s := NewSink(&b, "buffer", Lines)
	write(t, s, "a")
	flush(t, s)
	if err := s.Restore(0); err != nil {
		t.Fatalf("Restore on a stream: %v", err)
	}
	write(t, s, "b")
	flush(t, s)
	if got := b.String(); got != "a\nb\n" {
		t.Errorf("stream = %q, want both lines (a stream repeats, never loses)", got)
	}
}

func TestDiscard(t *testing.T) {
	write(t, Discard, "a")
	flush(t, Discard)
	if _, ok := Discard.(processor.Positioned); ok {
		t.Error("Discard has a position")
	}
}
