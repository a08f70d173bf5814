package event

import "strconv"

// Action is what a user did to a video.
type Action uint8

const (
	// Like is the default when "action" is absent or null.
	Like Action = iota
	Unlike
)

// String returns the action as it appears in JSON.
func (a Action) String() string {
	switch a {
	case Like:
		return "like"
	case Unlike:
		return "unlike"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Event is one decoded like or unlike.
type Event struct {
	EventID, VideoID, UserID, CreatorID, Region string
	Action                                      Action
	TS                                          int64 // event time, milliseconds since the Unix epoch (UTC)
}

// Reason names why a record cannot be used; it is the dead-letter reason.
type Reason string

// The reasons. When a record has several problems, Decode reports the first
// in this order: bad_json (the whole document must parse), bad_field,
// invalid_utf8 or field_too_long, missing_video_id, missing_user_id,
// bad_action, then bad_ts or missing_ts.
const (
	ReasonBadJSON      Reason = "bad_json"         // not one valid JSON object (syntax, trailing garbage, not an object, empty)
	ReasonBadField     Reason = "bad_field"        // a known field has the wrong JSON type (e.g. video_id is a number)
	ReasonMissingVideo Reason = "missing_video_id" // absent, null or ""
	ReasonMissingUser  Reason = "missing_user_id"
	ReasonTooLong      Reason = "field_too_long" // video_id/user_id/event_id/creator_id > MaxIDLen bytes, region > MaxRegionLen
	ReasonInvalidUTF8  Reason = "invalid_utf8"   // a known string field is not valid UTF-8 after unescaping
	ReasonBadAction    Reason = "bad_action"     // action not "like"/"unlike"
	ReasonBadTS        Reason = "bad_ts"         // ts not RFC 3339 nor an integer of epoch ms, or out of range (before 1970 or after year 9999)
	ReasonMissingTS    Reason = "missing_ts"     // no ts field (or null) and no record timestamp (recordTS <= 0)
	ReasonFuture       Reason = "future"         // set by the processor, not the decoder
	ReasonLate         Reason = "late"           // set by the processor, not the decoder
)

// Limits on the length of string fields after unescaping, in bytes.
const (
	MaxIDLen     = 128 // video_id, user_id, event_id and creator_id
	MaxRegionLen = 16
)

// Error is a rejected record: the reason and a short human detail
// (e.g. `video_id is 200 bytes, more than 128`).
type Error struct {
	Reason Reason
	Detail string
}

// Error returns "<reason>: <detail>".
func (e *Error) Error() string {
	return string(e.Reason) + ": " + e.Detail
}
