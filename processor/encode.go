package processor

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/scoring"
)

// appendScore appends a video-scores record (SPEC section 5).
func appendScore(b []byte, videoID string, seq int64, model string, score float64, in *scoring.Input) []byte {
	b = append(b, `{"video_id":`...)
	b = event.AppendString(b, videoID)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, in.TS, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"model":`...)
	b = event.AppendString(b, model)
	b = append(b, `,"score":`...)
	b = appendFloat(b, score)
	b = append(b, `,"likes":`...)
	b = strconv.AppendInt(b, in.Likes, 10)
	b = append(b, `,"unique_likers":`...)
	b = strconv.AppendInt(b, in.UniqueLikers, 10)
	b = append(b, `,"unlikes":`...)
	b = strconv.AppendInt(b, in.UniqueLikers-in.Likes, 10)
	b = append(b, `,"likes_1m":`...)
	b = strconv.AppendInt(b, in.Windows[scoring.W1m], 10)
	b = append(b, `,"likes_5m":`...)
	b = strconv.AppendInt(b, in.Windows[scoring.W5m], 10)
	b = append(b, `,"likes_1h":`...)
	b = strconv.AppendInt(b, in.Windows[scoring.W1h], 10)
	b = append(b, `,"likes_24h":`...)
	b = strconv.AppendInt(b, in.Windows[scoring.W24h], 10)
	b = append(b, `,"rate_5m":`...)
	b = appendFloat(b, in.Rates[scoring.H5m])
	b = append(b, `,"rate_1h":`...)
	b = appendFloat(b, in.Rates[scoring.H1h])
	b = append(b, `,"rate_24h":`...)
	b = appendFloat(b, in.Rates[scoring.H24h])
	b = append(b, `,"velocity":`...)
	b = appendFloat(b, in.Velocity())
	b = append(b, `,"acceleration":`...)
	b = appendFloat(b, in.Acceleration())
	b = append(b, `,"damped_likes_5m":`...)
	b = strconv.AppendInt(b, in.DampedLikes(scoring.W5m), 10)
	b = append(b, `,"damped_likes_1h":`...)
	b = strconv.AppendInt(b, in.DampedLikes(scoring.W1h), 10)
	b = append(b, `,"damped_reason":"`...)
	b = in.Damping[scoring.W1h].AppendNames(b)
	return append(b, `"}`...)
}

// Damping is what a score record says of a video's damped likes: the
// fields a ranker reads to see why a video was demoted.
type Damping struct {
	Likes1h  int64  `json:"likes_1h"`
	Damped5m int64  `json:"damped_likes_5m"`
	Damped1h int64  `json:"damped_likes_1h"`
	Reason   string `json:"damped_reason"`
}

// Share is the share of the last hour's likes that damping took away,
// damped_likes_1h / likes_1h, from 0 to 1.
func (d Damping) Share() float64 {
	if d.Likes1h <= 0 {
		return 0
	}
	return min(float64(d.Damped1h)/float64(d.Likes1h), 1)
}

// ScoreDamping reads the damping fields of a score record.
func ScoreDamping(rec []byte) (Damping, error) {
	var d Damping
	if err := json.Unmarshal(rec, &d); err != nil {
		return Damping{}, fmt.Errorf("processor: read the damping of a score record: %w", err)
	}
	return d, nil
}

// AppendList appends the trending record of one region at a tick (SPEC
// section 5), as the trending topic and the HTTP interface carry it.
func AppendList(b []byte, tick int64, l *List) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, tick, 10)
	b = append(b, `,"region":`...)
	b = event.AppendString(b, l.Region)
	b = append(b, `,"videos":[`...)
	for i, r := range l.Videos {
		if i > 0 {
			b = append(b, ',')
		}
		if r.encoded != nil {
			b = append(b, r.encoded...)
		} else {
			b = appendRanked(b, r.Video, r.Score)
		}
	}
	return append(b, "]}"...)
}

// appendRanked appends one entry of a trending list.
func appendRanked(b []byte, video string, score float64) []byte {
	b = append(b, `{"video_id":`...)
	b = event.AppendString(b, video)
	b = append(b, `,"score":`...)
	b = appendFloat(b, score)
	return append(b, '}')
}

// appendFloat writes f with 10 significant digits: enough for any ranking,
// short, and the same bytes for the same value.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	if f == 0 {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, f, 'g', 10, 64)
}
