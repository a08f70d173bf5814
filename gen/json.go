package gen

import (
	"strconv"
	"strings"
)

// badKind is a way a line can be malformed; badNone is a good line.
type badKind uint8

const (
	badNone badKind = iota
	badBrokenJSON
	badNoVideo
	badNoUser
	badOversizedID
	badAction
	badTSWord
	badTSFuture
	badKinds = iota - 1
)

var (
	// oversized ids are 200 bytes, well over the 128 the input allows.
	oversizedVideo = "v" + strings.Repeat("x", 199)
	oversizedUser  = "u" + strings.Repeat("x", 199)
)

const msPerDay = 24 * 60 * 60 * 1000

// appendEvent appends e as one JSON object (no newline), malformed as bad
// says. Field order is fixed: event_id, video_id, user_id, creator_id,
// action, ts, region.
func (g *Generator) appendEvent(dst []byte, id int64, e *event, bad badKind) []byte {
	begin := len(dst)
	dst = append(dst, `{"event_id":"e`...)
	dst = strconv.AppendInt(dst, id, 10)
	if bad != badNoVideo {
		dst = append(dst, `","video_id":"`...)
		switch {
		case bad == badOversizedID && id%2 == 0:
			dst = append(dst, oversizedVideo...)
		case e.planted:
			dst = append(dst, g.plantedVideos[e.video].name...)
		default:
			dst = append(dst, 'v')
			dst = strconv.AppendInt(dst, int64(e.video), 10)
		}
	}
	if bad != badNoUser {
		dst = append(dst, `","user_id":"`...)
		switch {
		case bad == badOversizedID && id%2 == 1:
			dst = append(dst, oversizedUser...)
		case int(e.user) < g.cfg.Users:
			dst = append(dst, 'u')
			dst = strconv.AppendInt(dst, int64(e.user), 10)
		case e.user >= g.crewBase: // crews are named as people
			dst = append(dst, 'u')
			dst = strconv.AppendInt(dst, int64(g.cfg.Users)+int64(e.user-g.crewBase), 10)
		default:
			dst = append(dst, 'f')
			dst = strconv.AppendInt(dst, int64(int(e.user)-g.cfg.Users), 10)
		}
	}
	dst = append(dst, `","creator_id":"`...)
	if e.planted && g.plantedVideos[e.video].creatorName != "" {
		dst = append(dst, g.plantedVideos[e.video].creatorName...)
	} else if dst = append(dst, 'c'); e.planted {
		dst = strconv.AppendInt(dst, int64(g.plantedVideos[e.video].creator), 10)
	} else {
		dst = strconv.AppendInt(dst, int64(int(e.video)%g.creators), 10)
	}
	switch {
	case bad == badAction:
		dst = append(dst, `","action":"share","ts":"`...)
	case e.unlike:
		dst = append(dst, `","action":"unlike","ts":"`...)
	default:
		dst = append(dst, `","action":"like","ts":"`...)
	}
	if bad == badTSWord {
		dst = append(dst, "yesterday"...)
	} else {
		dst = g.appendTS(dst, e.ts)
	}
	dst = append(dst, `","region":"`...)
	switch {
	case int(e.user) < g.cfg.Users:
		dst = append(dst, regions[g.userRegion[e.user]].name...)
	case e.user >= g.crewBase:
		dst = append(dst, regions[g.crewRegion[e.user-g.crewBase]].name...)
	default:
		dst = append(dst, regions[g.farmRegion[int(e.user)-g.cfg.Users]].name...)
	}
	dst = append(dst, `"}`...)
	if bad == badBrokenJSON {
		// Any strict prefix of a JSON object is invalid: cut it somewhere
		// in its middle, as a producer crashing mid-write would.
		n := len(dst) - begin
		dst = dst[:begin+n/4+int(g.src.Uint64()%uint64(n/2))]
	}
	return dst
}

// appendTS appends ms as RFC 3339 UTC with milliseconds,
// 2026-11-01T06:00:00.123Z. The date part is cached: consecutive events
// almost always share a day.
func (g *Generator) appendTS(dst []byte, ms int64) []byte {
	day := ms / msPerDay
	rem := ms % msPerDay
	if rem < 0 {
		day, rem = day-1, rem+msPerDay
	}
	if day != g.tsDay || len(g.tsDate) == 0 {
		g.tsDay = day
		g.tsDate = appendDate(g.tsDate[:0], day)
	}
	dst = append(dst, g.tsDate...)
	h, m, s, f := rem/3600000, rem/60000%60, rem/1000%60, rem%1000
	return append(dst,
		byte('0'+h/10), byte('0'+h%10), ':',
		byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+s/10), byte('0'+s%10), '.',
		byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10), 'Z')
}

// appendDate appends "YYYY-MM-DDT" for days since 1970-01-01, using
// Howard Hinnant's civil_from_days.
func appendDate(dst []byte, days int64) []byte {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return append(dst,
		byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T')
}

func itoa(i int) string { return strconv.Itoa(i) }
