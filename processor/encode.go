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
	if out, ok := appendFixed10(b, f); ok {
		return out
	}
	return strconv.AppendFloat(b, f, 'g', 10, 64)
}

// pow10 are the powers of ten from 1e-4 to 1e10, as float64 (the
// negative ones rounded); exact10 those a float64 holds exactly.
var (
	pow10   = [...]float64{1e-4, 1e-3, 1e-2, 1e-1, 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}
	exact10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13}
)

// appendFixed10 appends what strconv.AppendFloat(b, f, 'g', 10, 64) does
// for the values that print without an exponent (1e-4 <= |f| < 1e10),
// with one multiplication and integer digits: scores, rates and counts
// are formatted six times for each score record, and strconv's exact
// algorithm took 4% of a backfill's CPU (bench/RESULTS.md). The product
// of |f| and a power of ten a float64 holds exactly is below 1e10, so
// its one rounding moves it by at most 2^-20: only a product within that
// of a half could round the tenth digit the other way than the exact
// value does. ok is false, and b unchanged, for a value outside the range
// or a product within 1e-5 of a half; the caller formats those with
// strconv. TestAppendFloat compares the two on millions of values.
func appendFixed10(b []byte, f float64) ([]byte, bool) {
	a := math.Abs(f)
	if !(a >= pow10[0] && a < pow10[len(pow10)-1]) { // NaN too
		return b, false
	}
	e := 0 // a is in [10^(e-4), 10^(e-3)), as far as pow10 tells
	for a >= pow10[e+1] {
		e++
	}
	e -= 4
	d := float64(a * exact10[9-e]) // [1e9, 1e10), rounded once (the conversion keeps it from a fused multiply-add below)
	n := math.Floor(d)
	frac := d - n
	if math.Abs(frac-0.5) < 1e-5 {
		return b, false
	}
	if frac > 0.5 {
		n++
	}
	if n == 1e10 { // rounded up to the next power of ten
		n, e = 1e9, e+1
	}
	if n < 1e9 || e > 9 {
		return b, false
	}
	// n's digits, two at a time: with strconv.AppendUint this function
	// took 0.87 CPU s of the hand loop's backfill, against 0.52.
	var digits [10]byte
	u := uint64(n)
	for i := len(digits) - 2; i >= 0; i -= 2 {
		q := u / 100
		r := (u - q*100) * 2
		digits[i], digits[i+1] = smallDigits[r], smallDigits[r+1]
		u = q
	}
	nd := len(digits)
	for digits[nd-1] == '0' {
		nd--
	}
	// As strconv's %f of the digits, with the decimals they need: dp
	// digits before the point.
	var out [24]byte
	o := 0
	if f < 0 {
		out[o] = '-'
		o++
	}
	dp := e + 1
	if dp > 0 {
		o += copy(out[o:], digits[:min(nd, dp)])
		for i := nd; i < dp; i++ {
			out[o] = '0'
			o++
		}
	} else {
		out[o] = '0'
		o++
	}
	if nd > dp {
		out[o] = '.'
		o++
		for i := dp; i < 0; i++ {
			out[o] = '0'
			o++
		}
		o += copy(out[o:], digits[max(dp, 0):nd])
	}
	return append(b, out[:o]...), true
}

// smallDigits are the numbers 00 to 99, two digits each.
const smallDigits = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"
