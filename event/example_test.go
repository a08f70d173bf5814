package event_test

import (
	"errors"
	"fmt"

	"github.com/viralityhq/virality/event"
)

func ExampleDecode() {
	var ev event.Event
	value := []byte(`{"event_id":"e1","video_id":"v42","user_id":"u7","creator_id":"c3","action":"like","ts":"2026-11-26T06:00:00.123Z","region":"US"}`)
	if err := event.Decode(value, 0, &ev); err != nil {
		panic(err)
	}
	fmt.Printf("%s liked %s at %d\n", ev.UserID, ev.VideoID, ev.TS)

	// Without "ts", the Kafka record timestamp is the event time.
	err := event.Decode([]byte(`{"video_id":"v42","user_id":"u8","action":"unlike"}`), 1795672801000, &ev)
	fmt.Println(ev.UserID, ev.Action, ev.TS, err)

	// A rejected record carries the dead-letter reason.
	err = event.Decode([]byte(`{"video_id":"v42"}`), 0, &ev)
	var e *event.Error
	if errors.As(err, &e) {
		fmt.Println(e.Reason)
	}
	fmt.Println(err)

	fmt.Printf("%s\n", event.AppendJSON(nil, &event.Event{VideoID: "v1", UserID: "u1", Action: event.Unlike, TS: 1795672800123}))
	// Output:
	// u7 liked v42 at 1795672800123
	// u8 unlike 1795672801000 <nil>
	// missing_user_id
	// missing_user_id: user_id is absent
	// {"video_id":"v1","user_id":"u1","action":"unlike","ts":"2026-11-26T06:00:00.123Z"}
}
