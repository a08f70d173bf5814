// Package event defines the like event and decodes it from the JSON record
// values of the likes topic.
//
// # Format
//
// A record value is exactly one JSON object:
//
//	{"event_id":"e1","video_id":"v42","user_id":"u7","creator_id":"c3",
//	 "action":"like","ts":"2026-11-26T06:00:00.123Z","region":"US"}
//
// video_id and user_id are required, non-empty, valid UTF-8 and at most
// [MaxIDLen] bytes. event_id and creator_id share those limits but may be
// absent, as may region (at most [MaxRegionLen] bytes). action is "like"
// (the default) or "unlike". ts is RFC 3339 or integer epoch milliseconds,
// given as a JSON number or a string of digits; without it the Kafka record
// timestamp is used. A JSON null is the same as an absent field. Unknown
// fields are validated as JSON and otherwise ignored, keys match exactly
// (unlike encoding/json, which folds case), and the last of duplicate keys
// wins. A record that breaks a rule is rejected with an [*Error] whose
// [Reason] becomes the dead-letter reason.
//
// # Design
//
// [Decode] is on the hot path of the processor, so it is a hand-written,
// single-pass scanner over the input bytes: no reflection and no
// encoding/json. The pass validates the whole document and remembers only
// where the last value of each known field lies. The checks then run in a
// fixed order so that a record with several problems always gets the same
// reason.
//
// A successful decode allocates exactly once. The string fields, already
// unescaped and bounded by the length limits, are copied into one buffer on
// the stack, converted into a single string, and the Event fields are
// slices of it. A consequence is that retaining any one field retains the
// few dozen bytes of all of them; use strings.Clone for a field that
// outlives its event by much. Timestamps of the shape producers actually
// send ("2006-01-02T15:04:05.000Z", with or without the fraction) are
// converted by hand; other RFC 3339 forms fall back to time.Parse.
package event
