package processor

import (
	"bytes"
	"strings"
	"testing"

	"github.com/viralityhq/virality/event"
)

// TestForwarded: Forwarded counts, for each partition of the by-user and
// the repartition topics, the records the coordinator wrote to it, as the
// records' forwarding headers name them.
func TestForwarded(t *testing.T) {
	out := newTestOutputs().outputs()
	byUser, repart := &memSink{}, &memSink{}
	out.ByUser, out.Repartition = byUser, repart
	c, err := NewCoordinator(DefaultConfig(), openMemStore(t), out, perSource(4, 1))
	if err != nil {
		t.Fatal(err)
	}
	r := &routed{ev: event.Event{VideoID: "v", UserID: "u", TS: 1000}, src: 1, srcMax: 1000}
	for _, w := range []struct {
		byUser bool
		part   int32
		value  []byte // nil: a progress marker
	}{
		{true, 2, []byte("like")}, {true, 2, nil}, {true, 0, []byte("like")},
		{false, 1, []byte("like")}, {false, 1, []byte("like")}, {false, 3, nil},
	} {
		sink := c.out.Repartition
		if w.byUser {
			sink = c.out.ByUser
		}
		if err := c.forward(sink, w.part, w.value, 0, r, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []struct {
		byUser bool
		sink   *memSink
	}{{true, byUser}, {false, repart}} {
		want := map[int32]int64{}
		for _, m := range topic.sink.msgs {
			p, ok := ForwardPartition(m.Headers[0].Value)
			if !ok {
				t.Fatalf("a forwarded record without its header: %+v", m)
			}
			want[p]++
		}
		for p := range int32(5) { // 4: no such partition
			if got := c.Forwarded(topic.byUser, p); got != want[p] {
				t.Errorf("Forwarded(byUser %v, partition %d) = %d, the sink has %d", topic.byUser, p, got, want[p])
			}
		}
	}
}

// TestForwardVersions: a forwarded record's header says how its value
// holds the event. Version 5 (written now) holds it in event.AppendBinary's
// encoding; version 4 (written by earlier versions, still read so that an
// upgraded instance takes over the internal topics as they are) holds it
// as JSON, whose missing ts is the header's record time. Other versions
// are refused.
func TestForwardVersions(t *testing.T) {
	ev := event.Event{EventID: "e1", VideoID: "v", UserID: "u", CreatorID: "c", Region: "US", TS: 1_795_672_800_123}
	header := func(version byte, recTime int64) *Record {
		h := appendForward(nil, &forward{part: 1, src: 2, off: 3, srcMax: 4, recTime: recTime, weight: 5})
		h[0] = version
		return &Record{Headers: []Header{{Key: HeaderForward, Value: h}}}
	}
	for _, tc := range []struct {
		name    string
		version byte
		recTime int64
		value   []byte
	}{
		{"binary", forwardVersion, 0, event.AppendBinary(nil, &ev)},
		{"JSON", forwardVersionJSON, 0, event.AppendJSON(nil, &ev)},
		{"JSON without ts", forwardVersionJSON, ev.TS, []byte(`{"event_id":"e1","video_id":"v","user_id":"u","creator_id":"c","region":"US"}`)},
	} {
		f, err := parseForward(header(tc.version, tc.recTime))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if f.part != 1 || f.src != 2 || f.off != 3 || f.srcMax != 4 || f.weight != 5 {
			t.Fatalf("%s: header read as %+v", tc.name, f)
		}
		var got event.Event
		if err := f.decodeEvent(tc.value, &got); err != nil || got != ev {
			t.Fatalf("%s: event %+v, %v; want %+v", tc.name, got, err, ev)
		}
	}
	// The other way round, neither decodes.
	var got event.Event
	if f, err := parseForward(header(forwardVersion, 0)); err != nil || f.decodeEvent(event.AppendJSON(nil, &ev), &got) == nil {
		t.Fatalf("JSON under version %d: %v, decoded %+v", forwardVersion, err, got)
	}
	if f, err := parseForward(header(forwardVersionJSON, 0)); err != nil || f.decodeEvent(event.AppendBinary(nil, &ev), &got) == nil {
		t.Fatalf("binary under version %d: %v, decoded %+v", forwardVersionJSON, err, got)
	}
	for _, v := range []byte{3, forwardVersion + 1} {
		if _, err := parseForward(header(v, 0)); err == nil {
			t.Fatalf("version %d read", v)
		}
	}
}

// TestForwardFlags: a forwarded record's header keeps which of marker,
// idle, report and wake it is; one without the wake flag (as earlier
// versions wrote them all) reads as no wake.
func TestForwardFlags(t *testing.T) {
	for i := range 16 {
		want := forward{part: 1, src: 2, marker: i&1 != 0, idle: i&2 != 0, report: i&4 != 0, wake: i&8 != 0}
		got, err := decodeForward(appendForward(nil, &want))
		if err != nil || got != want {
			t.Fatalf("%+v read as %+v, %v", want, got, err)
		}
	}
}

// fitSink is a memSink that takes only values of at most limit bytes, as
// a topic takes records up to its max.message.bytes.
type fitSink struct {
	memSink
	limit int
}

func (s *fitSink) Fits(m *Message) bool { return len(m.Value) <= s.limit }

// TestByUserTooLarge: an event too large for the by-user topic is
// dead-lettered as too_large, with its record whole; the others are
// forwarded as events, not as their records (an input field the event
// does not use is not carried).
func TestByUserTooLarge(t *testing.T) {
	out := newTestOutputs()
	o := out.outputs()
	byUser := &fitSink{limit: 40}
	o.ByUser, o.Repartition = byUser, &memSink{}
	c, err := NewCoordinator(DefaultConfig(), openMemStore(t), o, perSource(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(0); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("v", event.MaxIDLen)
	recs := []Record{
		{Value: []byte(`{"video_id":"v1","user_id":"u1","ts":1795672800000,"pad":"` + strings.Repeat("x", 1000) + `"}`)},
		{Value: []byte(`{"video_id":"` + long + `","user_id":"u2","ts":1795672801000}`)},
	}
	feedSources(t, c, recs, 1, func(ev *event.Event) string { return ev.UserID }, func(int) int { return 2 }, nil)
	var events []event.Event
	for _, m := range byUser.msgs {
		f, err := parseForward(&Record{Headers: m.Headers})
		if err != nil {
			t.Fatal(err)
		}
		if f.marker {
			continue
		}
		var ev event.Event
		if err := f.decodeEvent(m.Value, &ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if len(events) != 1 || events[0].VideoID != "v1" {
		t.Fatalf("forwarded %+v, want the like of v1 alone", events)
	}
	dead := out.dead.msgs
	if len(dead) != 1 || !bytes.Equal(dead[0].Value, recs[1].Value) || headerOf(dead[0], HeaderReason) != ReasonTooLarge {
		t.Fatalf("dead letters %d, want the record of the long video id whole, as %s", len(dead), ReasonTooLarge)
	}
}

func headerOf(m Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
