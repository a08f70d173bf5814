package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/processor"
)

// LikesReader is implemented by a Backend that can read a video's recent
// likes from its state (service.Service does). The series endpoints and
// the page's sparklines, charts and damped marks need it; without it they
// answer 501.
type LikesReader interface {
	// RecentLikes calls fn with the like time (epoch ms) and account
	// weight (1 for a normal account, down to 1/1024 for likes damped as
	// bought) of each standing like of the video in the last 24 h of its
	// event time, oldest first, and returns the video's latest event time;
	// ok is false if the backend does not hold the video.
	RecentLikes(ctx context.Context, videoID string, fn func(ts int64, weight float64)) (clock int64, ok bool, err error)
}

// The series: the last hour of a video's likes, minute by minute.
const (
	SeriesStepMS = 60_000 // one point a minute
	SeriesPoints = 60     // the last hour

	halfLife5mMS = 300_000   // of rate_5m (velocity)
	halfLife1hMS = 3_600_000 // of rate_1h
)

// Series is the last hour of a video's likes, computed from its state when
// asked: nothing is kept between requests, so memory does not grow with
// the videos looked at, and the hour is complete from the first request.
// A request costs one read of the video's state and a pass over its
// standing likes of the last 24 h.
type Series struct {
	VideoID string
	// End is the event time (epoch ms) the series ends at: the latest
	// trending tick, or the video's latest event time if later.
	End int64
	// Points are SeriesPoints minutes ending at End, oldest first.
	Points [SeriesPoints]SeriesPoint
	// Likes1h, Weighted1h: the standing likes of the hour and the sum of
	// their account weights; DampedShare is 1 - Weighted1h/Likes1h.
	Likes1h     int64
	Weighted1h  float64
	Likes5m     int64
	Weighted5m  float64
	DampedShare float64
	// DampedShare5m is the same share over the last 5 minutes, the likes
	// the trending score counts.
	DampedShare5m float64
}

// SeriesPoint is one minute (T-60s, T] of a series.
type SeriesPoint struct {
	T       int64   // end of the minute, epoch ms (event time)
	Likes   int64   // standing likes with like time in the minute
	Counted float64 // the same likes weighted by account weight: what the score counts
	Rate5m  float64 // decayed like rate at T, half-life 5 min, likes per minute (velocity)
	Rate1h  float64 // decayed like rate at T, half-life 1 h, likes per minute
}

// readSeries computes the series of a video ending at the later of tick
// and the video's latest event time.
func readSeries(ctx context.Context, lr LikesReader, id string, tick int64) (*Series, bool, error) {
	var times []int64
	var weights []float64
	clock, ok, err := lr.RecentLikes(ctx, id, func(ts int64, w float64) {
		times = append(times, ts)
		weights = append(weights, w)
	})
	if err != nil || !ok {
		return nil, ok, err
	}
	s := &Series{VideoID: id, End: max(clock, tick)}
	start := s.End - SeriesPoints*SeriesStepMS
	// The decayed rates at each minute's end are swept forward: the sum
	// at T is the sum at the previous T, decayed, plus the likes since.
	var sum5m, sum1h float64
	prev := int64(math.MinInt64)
	j := 0
	for k := range s.Points {
		p := &s.Points[k]
		p.T = start + int64(k+1)*SeriesStepMS
		if prev != math.MinInt64 {
			sum5m *= math.Exp2(-float64(p.T-prev) / halfLife5mMS)
			sum1h *= math.Exp2(-float64(p.T-prev) / halfLife1hMS)
		}
		for ; j < len(times) && times[j] <= p.T; j++ {
			age := float64(p.T - times[j])
			sum5m += math.Exp2(-age / halfLife5mMS)
			sum1h += math.Exp2(-age / halfLife1hMS)
			if times[j] > p.T-SeriesStepMS {
				p.Likes++
				p.Counted += weights[j]
			}
		}
		prev = p.T
		p.Rate5m = sum5m * math.Ln2 * 60_000 / halfLife5mMS
		p.Rate1h = sum1h * math.Ln2 * 60_000 / halfLife1hMS
	}
	for i, ts := range times {
		if ts > start && ts <= s.End {
			s.Likes1h++
			s.Weighted1h += weights[i]
		}
		if ts > s.End-5*60_000 && ts <= s.End {
			s.Likes5m++
			s.Weighted5m += weights[i]
		}
	}
	s.DampedShare = dampedShare(s.Likes1h, s.Weighted1h)
	s.DampedShare5m = dampedShare(s.Likes5m, s.Weighted5m)
	return s, true, nil
}

func dampedShare(likes int64, weighted float64) float64 {
	if likes == 0 {
		return 0
	}
	return max(0, 1-weighted/float64(likes))
}

// seriesUnits documents the fields of a series answer in the answer.
const seriesUnits = `{"t":"end of the minute (t-60s, t], epoch milliseconds, event time",` +
	`"likes":"standing likes with like time in the minute (likes per minute)",` +
	`"counted":"the same likes weighted by their account's weight (1 = normal account; likes damped as bought count less): what the score counts, likes per minute",` +
	`"rate_5m":"decayed like rate at t, half-life 5 min, likes per minute (the velocity)",` +
	`"rate_1h":"decayed like rate at t, half-life 1 h, likes per minute",` +
	`"damped_share_1h":"share of the last hour's likes that account damping discounted as bought, 0 to 1"}`

// appendSeries appends the JSON of /v1/videos/{id}/series.
func appendSeries(b []byte, s *Series, record []byte) []byte {
	b = append(b, `{"video_id":`...)
	b = event.AppendString(b, s.VideoID)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, s.End, 10)
	b = append(b, `,"step_ms":`...)
	b = strconv.AppendInt(b, SeriesStepMS, 10)
	b = appendDamping(b, s)
	b = append(b, `,"units":`...)
	b = append(b, seriesUnits...)
	if len(record) > 0 {
		b = append(b, `,"record":`...)
		b = append(b, record...)
	}
	b = append(b, `,"points":[`...)
	for i := range s.Points {
		p := &s.Points[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"t":`...)
		b = strconv.AppendInt(b, p.T, 10)
		b = append(b, `,"likes":`...)
		b = strconv.AppendInt(b, p.Likes, 10)
		b = append(b, `,"counted":`...)
		b = appendNum(b, p.Counted)
		b = append(b, `,"rate_5m":`...)
		b = appendNum(b, p.Rate5m)
		b = append(b, `,"rate_1h":`...)
		b = appendNum(b, p.Rate1h)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendDamping(b []byte, s *Series) []byte {
	b = append(b, `,"likes_1h":`...)
	b = strconv.AppendInt(b, s.Likes1h, 10)
	b = append(b, `,"counted_1h":`...)
	b = appendNum(b, s.Weighted1h)
	b = append(b, `,"damped_share_1h":`...)
	b = appendNum(b, s.DampedShare)
	b = append(b, `,"damped_share_5m":`...)
	return appendNum(b, s.DampedShare5m)
}

// appendNum writes f with 4 decimals at most: series values are for
// drawing, and short.
func appendNum(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, math.Round(f*1e4)/1e4, 'f', -1, 64)
}

// MaxSeriesK is the largest k of /v1/trending/series: each video costs a
// read of its state.
const MaxSeriesK = 100

func (h *handler) globalTick() int64 {
	if s, ok := h.b.Trending(processor.GlobalRegion); ok {
		return s.Tick
	}
	return math.MinInt64
}

func (h *handler) videoSeries(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("video_id")
	if h.lr == nil {
		writeError(w, http.StatusNotImplemented, "this server's backend keeps no like times, so it has no series")
		return
	}
	s, ok, err := readSeries(r.Context(), h.lr, id, h.globalTick())
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("read the likes of video %q: %v", id, err))
		return
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no likes of video %q in the state this instance holds", id))
		return
	}
	rec, ok, err := h.b.Score(r.Context(), id)
	if err != nil || !ok {
		rec = nil
	}
	writeJSON(w, http.StatusOK, append(appendSeries(nil, s, rec), '\n'))
}

// trendingSeries answers the top k of a region's list, each video with its
// standing likes and damping fields (from its score record), its damped
// share and its velocity (rate_5m, likes per minute) at the end of each of
// the last 60 minutes: what the page's list shows.
func (h *handler) trendingSeries(w http.ResponseWriter, r *http.Request) {
	tick, top, ok := h.topK(w, r, MaxSeriesK)
	if !ok {
		return
	}
	gtick := h.globalTick()
	b := []byte(`{"ts":`)
	b = strconv.AppendInt(b, tick, 10)
	b = append(b, `,"region":`...)
	b = event.AppendString(b, top.Region)
	b = append(b, `,"step_ms":`...)
	b = strconv.AppendInt(b, SeriesStepMS, 10)
	b = append(b, `,"units":{"score":"the model's score (trending: standard deviations of the last 5 minutes' counted likes above the video's own baseline)","likes":"standing likes, all time","velocity":"rate_5m at the end of each of the last 60 minutes, oldest first, likes per minute","damped_share_1h":"share of the last hour's likes discounted as bought, 0 to 1","damping":"the score record's likes_1h, damped_likes_5m, damped_likes_1h (likes) and damped_reason: the page marks a video when damped_likes_1h/likes_1h is 10% or more"}`...)
	b = append(b, `,"videos":[`...)
	for i, v := range top.Videos {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"video_id":`...)
		b = event.AppendString(b, v.Video)
		b = append(b, `,"score":`...)
		b = appendNum(b, v.Score)
		rec, hasRec := readRecord(r.Context(), h.b, v.Video)
		b = append(b, `,"likes":`...)
		if hasRec && rec.Likes != nil {
			b = strconv.AppendInt(b, *rec.Likes, 10)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"damping":`...)
		if hasRec {
			b = appendRecordDamping(b, &rec.Damping)
		} else {
			b = append(b, "null"...)
		}
		var s *Series
		if h.lr != nil {
			var err error
			var held bool
			s, held, err = readSeries(r.Context(), h.lr, v.Video, gtick)
			if err != nil {
				writeError(w, http.StatusInternalServerError, fmt.Sprintf("read the likes of video %q: %v", v.Video, err))
				return
			}
			if !held {
				s = nil
			}
		}
		if s == nil {
			b = append(b, `,"end":null,"velocity":null}`...)
			continue
		}
		b = append(b, `,"end":`...)
		b = strconv.AppendInt(b, s.End, 10)
		b = appendDamping(b, s)
		b = append(b, `,"velocity":[`...)
		for j := range s.Points {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendNum(b, s.Points[j].Rate5m)
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// listedRecord is what the list reads of a video's score record.
type listedRecord struct {
	Likes *int64 `json:"likes"`
	processor.Damping
}

// readRecord reads a video's score record, as the backend answers it.
func readRecord(ctx context.Context, b Backend, id string) (listedRecord, bool) {
	var r listedRecord
	rec, ok, err := b.Score(ctx, id)
	if err != nil || !ok || json.Unmarshal(rec, &r) != nil {
		return listedRecord{}, false
	}
	return r, true
}

// appendRecordDamping appends the damping fields of a score record, as
// the record has them.
func appendRecordDamping(b []byte, d *processor.Damping) []byte {
	b = append(b, `{"likes_1h":`...)
	b = strconv.AppendInt(b, d.Likes1h, 10)
	b = append(b, `,"damped_likes_5m":`...)
	b = strconv.AppendInt(b, d.Damped5m, 10)
	b = append(b, `,"damped_likes_1h":`...)
	b = strconv.AppendInt(b, d.Damped1h, 10)
	b = append(b, `,"damped_reason":`...)
	b = event.AppendString(b, d.Reason)
	return append(b, '}')
}
