package jsonl

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viralityhq/virality/processor"
)

// file is one input file of a test case.
type file struct {
	name    string
	content string
	gzip    bool
}

// rec is what a test expects of one record.
type rec struct {
	file   string // base name of Topic
	offset int64
	value  string
}

func writeFile(t testing.TB, dir string, f file) string {
	t.Helper()
	p := filepath.Join(dir, f.name)
	data := []byte(f.content)
	if f.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = b.Bytes()
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads src to its end, checking the batch bound and that the
// records of each call are intact until the next call.
func readAll(t testing.TB, src *Source) []rec {
	t.Helper()
	var out []rec
	var buf []processor.Record
	for {
		var err error
		buf, err = src.Next(context.Background(), buf)
		if len(buf) > maxBatch {
			t.Fatalf("Next returned %d records, more than %d", len(buf), maxBatch)
		}
		for _, r := range buf {
			if r.Partition != 0 || r.Time != 0 {
				t.Fatalf("record %d: partition %d time %d, want 0 0", r.Offset, r.Partition, r.Time)
			}
			out = append(out, rec{filepath.Base(r.Topic), r.Offset, string(r.Value)})
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
	}
}

func TestSource(t *testing.T) {
	long := strings.Repeat("x", 3*blockSize+17)
	var many strings.Builder
	var manyWant []rec
	for i := range 10_000 {
		fmt.Fprintf(&many, `{"n":%d}`+"\n", i)
		manyWant = append(manyWant, rec{"many", int64(i), fmt.Sprintf(`{"n":%d}`, i)})
	}
	tests := []struct {
		name  string
		files []file
		want  []rec
	}{
		{
			name:  "plain",
			files: []file{{name: "a", content: "{\"a\":1}\n{\"a\":2}\n"}},
			want:  []rec{{"a", 0, `{"a":1}`}, {"a", 1, `{"a":2}`}},
		},
		{
			name:  "blank lines are not records",
			files: []file{{name: "a", content: "\n1\n\n  \n\t\r\n2\n \n"}},
			want:  []rec{{"a", 0, "1"}, {"a", 1, "2"}},
		},
		{
			name:  "CRLF",
			files: []file{{name: "a", content: "1\r\n2\r\n3\r"}},
			want:  []rec{{"a", 0, "1"}, {"a", 1, "2"}, {"a", 2, "3"}},
		},
		{
			name:  "final line without newline",
			files: []file{{name: "a", content: "1\n2"}},
			want:  []rec{{"a", 0, "1"}, {"a", 1, "2"}},
		},
		{
			name: "offsets count across files",
			files: []file{
				{name: "a", content: "1\n2"},
				{name: "b", content: "\n3\n"},
				{name: "empty", content: ""},
				{name: "c", content: "4\n"},
			},
			want: []rec{{"a", 0, "1"}, {"a", 1, "2"}, {"b", 2, "3"}, {"c", 3, "4"}},
		},
		{
			name: "gzip detected by content, not name",
			files: []file{
				{name: "a.jsonl", content: "1\n2\n", gzip: true},
				{name: "b.gz", content: "3\n"},
				{name: "c", content: "4", gzip: true},
				{name: "d", content: "", gzip: true},
			},
			want: []rec{{"a.jsonl", 0, "1"}, {"a.jsonl", 1, "2"}, {"b.gz", 2, "3"}, {"c", 3, "4"}},
		},
		{
			name: "line longer than a block",
			files: []file{
				{name: "a", content: "1\n" + long + "\n2\n" + long},
				{name: "b", content: long + "\n3\n", gzip: true},
			},
			want: []rec{{"a", 0, "1"}, {"a", 1, long}, {"a", 2, "2"}, {"a", 3, long}, {"b", 4, long}, {"b", 5, "3"}},
		},
		{
			name:  "more records than one batch",
			files: []file{{name: "many", content: many.String()}},
			want:  manyWant,
		},
		{
			name:  "no files",
			files: nil,
			want:  nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			var size int64
			for _, f := range tc.files {
				p := writeFile(t, dir, f)
				paths = append(paths, p)
				fi, _ := os.Stat(p)
				size += fi.Size()
			}
			src, err := OpenSource(paths)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if got := src.TotalBytes(); got != size {
				t.Errorf("TotalBytes = %d, want %d", got, size)
			}
			got := readAll(t, src)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("record %d = %s %d %.60q, want %s %d %.60q", i,
						got[i].file, got[i].offset, got[i].value, tc.want[i].file, tc.want[i].offset, tc.want[i].value)
				}
			}
			if got := src.Records(); got != int64(len(tc.want)) {
				t.Errorf("Records = %d, want %d", got, len(tc.want))
			}
			if got := src.BytesRead(); got != size {
				t.Errorf("BytesRead = %d, want %d", got, size)
			}
			// EOF is sticky.
			if recs, err := src.Next(context.Background(), nil); err != io.EOF || len(recs) != 0 {
				t.Errorf("Next after EOF = %d records, %v; want 0, EOF", len(recs), err)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestSourceConcatenatedGzip(t *testing.T) {
	var b bytes.Buffer
	for _, part := range []string{"1\n2", "\n3\n"} {
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(part))
		zw.Close()
	}
	p := filepath.Join(t.TempDir(), "a")
	os.WriteFile(p, b.Bytes(), 0o644)
	src, err := OpenSource([]string{p})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := readAll(t, src)
	want := []rec{{"a", 0, "1"}, {"a", 1, "2"}, {"a", 2, "3"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSourceLineOverLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MiB line")
	}
	huge := strings.Repeat("y", MaxLineBytes+blockSize+5)
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    []int // lengths of the records
	}{
		{"followed by lines", "1\n" + huge + "\n2\n", []int{1, MaxLineBytes, 1}},
		{"at end of file", "1\n" + huge, []int{1, MaxLineBytes}},
		{"exactly the limit", huge[:MaxLineBytes] + "\n2\n", []int{MaxLineBytes, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, file{name: "a", content: tc.content})
			src, err := OpenSource([]string{p})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			got := readAll(t, src)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(got), len(tc.want))
			}
			for i, r := range got {
				if len(r.value) != tc.want[i] || r.offset != int64(i) {
					t.Errorf("record %d: offset %d, %d bytes; want offset %d, %d bytes", i, r.offset, len(r.value), i, tc.want[i])
				}
			}
		})
	}
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.jsonl")
	if _, err := OpenSource([]string{missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("OpenSource(missing) = %v, want an error naming %s", err, missing)
	}

	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(bytes.Repeat([]byte("{}\n"), 100_000))
	zw.Close()
	cut := filepath.Join(dir, "cut.gz")
	os.WriteFile(cut, b.Bytes()[:b.Len()/2], 0o644)
	src, err := OpenSource([]string{cut})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var buf []processor.Record
	for {
		buf, err = src.Next(context.Background(), buf)
		if err != nil {
			break
		}
	}
	if err == io.EOF || !strings.Contains(err.Error(), cut) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a truncated gzip file: %v, want an unexpected EOF naming %s", err, cut)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Next(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a canceled context = %v, want context.Canceled", err)
	}
}

func TestSourceTotalBytesUnknown(t *testing.T) {
	p := writeFile(t, t.TempDir(), file{name: "a", content: "1\n"})
	src, err := OpenSource([]string{p, "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := src.TotalBytes(); got != -1 {
		t.Errorf("TotalBytes with standard input = %d, want -1", got)
	}
}

func BenchmarkSource(b *testing.B) {
	dir := b.TempDir()
	var data bytes.Buffer
	for i := 0; data.Len() < 50<<20; i++ {
		fmt.Fprintf(&data, `{"event_id":"e%d","video_id":"v%d","user_id":"u%d","creator_id":"c%d","action":"like","ts":"2026-11-26T06:%02d:%02d.123Z","region":"US"}`+"\n",
			i, i%100_000, i%3_000_000, i%5_000, i/60%60, i%60)
	}
	plain := filepath.Join(dir, "plain.jsonl")
	os.WriteFile(plain, data.Bytes(), 0o644)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(data.Bytes())
	zw.Close()
	gz := filepath.Join(dir, "events.jsonl.gz")
	os.WriteFile(gz, zb.Bytes(), 0o644)

	for _, bc := range []struct{ name, path string }{{"plain", plain}, {"gzip", gz}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(data.Len())) // MB/s of uncompressed JSON lines
			b.ReportAllocs()
			var records int64
			buf := make([]processor.Record, 0, maxBatch)
			for b.Loop() {
				src, err := OpenSource([]string{bc.path})
				if err != nil {
					b.Fatal(err)
				}
				for {
					buf, err = src.Next(context.Background(), buf)
					records += int64(len(buf))
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				src.Close()
			}
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
