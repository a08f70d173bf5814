package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// memSink keeps what an engine writes, positioned like a file.
type memSink struct {
	msgs    []Message
	durable int
	flushes int
}

func (s *memSink) Write(m *Message) error {
	s.msgs = append(s.msgs, cloneMessage(m))
	return nil
}

// cloneMessage deep-copies m: a sink's Write may not keep its bytes.
func cloneMessage(m *Message) Message {
	c := Message{Key: append([]byte(nil), m.Key...), Value: append([]byte(nil), m.Value...), Time: m.Time}
	for _, h := range m.Headers {
		c.Headers = append(c.Headers, Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
	}
	return c
}

func (s *memSink) Flush(context.Context) error { s.durable = len(s.msgs); s.flushes++; return nil }
func (s *memSink) Position() int64             { return int64(s.durable) }
func (s *memSink) Restore(pos int64) error {
	if int(pos) > len(s.msgs) {
		return fmt.Errorf("restore to %d beyond %d", pos, len(s.msgs))
	}
	s.msgs = s.msgs[:pos]
	s.durable = int(pos)
	return nil
}

// sliceSource yields fixed records, a few at a time.
type sliceSource struct {
	recs []Record
	pos  int
	step int
}

func (s *sliceSource) Next(_ context.Context, buf []Record) ([]Record, error) {
	buf = buf[:0]
	if s.pos >= len(s.recs) {
		return buf, io.EOF
	}
	step := s.step
	if step == 0 {
		step = 3
	}
	end := min(s.pos+step, len(s.recs))
	buf = append(buf, s.recs[s.pos:end]...)
	s.pos = end
	return buf, nil
}

// testOutputs are the three outputs of one engine in a test.
type testOutputs struct{ scores, trending, dead *memSink }

func newTestOutputs() testOutputs {
	return testOutputs{&memSink{}, &memSink{}, &memSink{}}
}

func (o testOutputs) outputs() Outputs {
	return Outputs{Scores: o.scores, Trending: o.trending, DeadLetters: o.dead}
}

func openMemStore(t testing.TB) *store.DB {
	t.Helper()
	o := store.DefaultOptions()
	o.FS = vfs.NewMem()
	db, err := store.Open("state", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// runRecords runs records through a fresh engine to the end.
func runRecords(t testing.TB, cfg Config, recs []Record) testOutputs {
	t.Helper()
	db := openMemStore(t)
	out := newTestOutputs()
	g := openGroup(t, cfg, db, out)
	if err := Run(context.Background(), g, &sliceSource{recs: recs}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// scenarioEpoch is 00:00:00 in scenario files.
var scenarioEpoch = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// parseClock reads HH:MM:SS[.mmm] after scenarioEpoch, or "+Nd" days
// prefix as in 1d00:00:00.
func parseClock(s string) (int64, error) {
	days := int64(0)
	if i := strings.IndexByte(s, 'd'); i > 0 {
		d, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, err
		}
		days, s = d, s[i+1:]
	}
	frac := int64(0)
	if i := strings.IndexByte(s, '.'); i > 0 {
		f, err := strconv.ParseInt(s[i+1:], 10, 64)
		if err != nil {
			return 0, err
		}
		frac, s = f, s[:i]
	}
	var h, m, sec int64
	if _, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil {
		return 0, fmt.Errorf("bad time %q: %w", s, err)
	}
	return scenarioEpoch + days*86_400_000 + ((h*60+m)*60+sec)*1000 + frac, nil
}

func formatClock(ms int64) string {
	d := ms - scenarioEpoch
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	days := d / 86_400_000
	d %= 86_400_000
	s := fmt.Sprintf("%02d:%02d:%02d", d/3_600_000, d/60_000%60, d/1000%60)
	if d%1000 != 0 {
		s += fmt.Sprintf(".%03d", d%1000)
	}
	if days > 0 {
		s = fmt.Sprintf("%dd%s", days, s)
	}
	return neg + s
}

// parseInput turns scenario lines into records:
//
//	like|unlike VIDEO USER TIME [region=R] [id=E]
//	raw JSON           (a record value as it is)
func parseInput(input string) ([]Record, error) {
	var recs []Record
	for _, line := range strings.Split(input, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var value []byte
		if rest, ok := strings.CutPrefix(line, "raw "); ok {
			value = []byte(rest)
		} else {
			f := strings.Fields(line)
			if len(f) < 4 {
				return nil, fmt.Errorf("want ACTION VIDEO USER TIME: %q", line)
			}
			ts, err := parseClock(f[3])
			if err != nil {
				return nil, err
			}
			ev := event.Event{VideoID: f[1], UserID: f[2], TS: ts}
			switch f[0] {
			case "like":
			case "unlike":
				ev.Action = event.Unlike
			default:
				return nil, fmt.Errorf("unknown action %q", f[0])
			}
			for _, kv := range f[4:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "region":
					ev.Region = v
				case "id":
					ev.EventID = v
				default:
					return nil, fmt.Errorf("unknown attribute %q", kv)
				}
			}
			value = event.AppendJSON(nil, &ev)
		}
		recs = append(recs, Record{Value: value, Topic: "in", Offset: int64(len(recs))})
	}
	return recs, nil
}

// scoreLine is a score record in scenario form.
func scoreLine(value []byte) string {
	var r struct {
		VideoID      string  `json:"video_id"`
		TS           int64   `json:"ts"`
		Seq          int64   `json:"seq"`
		Score        float64 `json:"score"`
		Likes        int64   `json:"likes"`
		UniqueLikers int64   `json:"unique_likers"`
		Unlikes      int64   `json:"unlikes"`
		L1m          int64   `json:"likes_1m"`
		L5m          int64   `json:"likes_5m"`
		L1h          int64   `json:"likes_1h"`
		L24h         int64   `json:"likes_24h"`
		Rate5m       float64 `json:"rate_5m"`
		Damped5m     *int64  `json:"damped_likes_5m"`
		Damped1h     *int64  `json:"damped_likes_1h"`
		Reason       *string `json:"damped_reason"`
	}
	if err := json.Unmarshal(value, &r); err != nil {
		return "bad score record: " + err.Error()
	}
	if r.Damped5m == nil || r.Damped1h == nil || r.Reason == nil {
		return "bad score record: no damped_likes_5m, damped_likes_1h or damped_reason: " + string(value)
	}
	line := fmt.Sprintf("score %s @%s #%d likes=%d uniq=%d unl=%d win=%d/%d/%d/%d rate5m=%.3f score=%.3f",
		r.VideoID, formatClock(r.TS), r.Seq, r.Likes, r.UniqueLikers, r.Unlikes, r.L1m, r.L5m, r.L1h, r.L24h, r.Rate5m, r.Score)
	// Damping is shown only where there is some, so that the scenarios
	// without bought likes read as they did before the fields existed.
	if *r.Damped5m != 0 || *r.Damped1h != 0 || *r.Reason != "" {
		line += fmt.Sprintf(" damped=%d/%d reason=%q", *r.Damped5m, *r.Damped1h, *r.Reason)
	}
	return line
}

func trendingLine(value []byte) string {
	var r struct {
		TS     int64  `json:"ts"`
		Region string `json:"region"`
		Videos []struct {
			VideoID string  `json:"video_id"`
			Score   float64 `json:"score"`
		} `json:"videos"`
	}
	if err := json.Unmarshal(value, &r); err != nil {
		return "bad trending record: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trending @%s %s:", formatClock(r.TS), r.Region)
	for _, v := range r.Videos {
		fmt.Fprintf(&b, " %s=%.3f", v.VideoID, v.Score)
	}
	return b.String()
}

func deadLine(m Message) string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return fmt.Sprintf("dead %s offset=%s", h[HeaderReason], h[HeaderOffset])
}

// lastScores returns the last score record of each video, by video id.
func lastScores(msgs []Message) map[string][]byte {
	last := map[string][]byte{}
	for _, m := range msgs {
		last[string(m.Key)] = m.Value
	}
	return last
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// openGroup opens a coordinator of one partition on one stream.
func openGroup(t testing.TB, cfg Config, db *store.DB, out testOutputs) *Coordinator {
	t.Helper()
	return openCoordinator(t, cfg, db, out, oneSource(1, 1))
}
