package httpapi

import (
	"github.com/viralityhq/virality/event"
)

// Trending lists are written by processor.AppendList, byte for byte as on
// the trending topic, so that the API and the topic agree.

// appendStrings appends a JSON array of strings.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = event.AppendString(b, s)
	}
	return append(b, ']')
}

// appendError appends {"error":msg}.
func appendError(b []byte, msg string) []byte {
	b = append(b, `{"error":`...)
	b = event.AppendString(b, msg)
	return append(b, '}')
}
