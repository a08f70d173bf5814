package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/viralityhq/virality/processor"
)

// viewSource gives the view what to show.
type viewSource interface {
	Trending(region string) (processor.Snapshot, bool)
	Regions() []string
}

// viewDampedSource is implemented by a source that has the videos' score
// records (service.Service does): what a record says of the video's likes
// damped as bought.
type viewDampedSource interface {
	Damping(video string) (processor.Damping, bool)
}

// viewDampedMark is the damped share of the hour's likes from which a video
// is marked, as on the HTTP page.
const viewDampedMark = 0.10

// viewDamped returns a video's mark, "⚑37%" when its score record says
// that damping took away 37% of its likes of the last hour
// (damped_likes_1h / likes_1h), and why (damped_reason, "account_rate");
// or "" and "".
func viewDamped(src viewSource, video string) (mark, reason string) {
	d, ok := src.(viewDampedSource)
	if !ok {
		return "", ""
	}
	dm, ok := d.Damping(video)
	if !ok || dm.Share() < viewDampedMark {
		return "", ""
	}
	return fmt.Sprintf("⚑%.0f%%", 100*dm.Share()), dm.Reason
}

// viewLegend explains the columns in one line.
const viewLegend = "score: σ above own baseline, last 5 min · bar: vs #1 · ⚑N% why: likes damped as bought, last hour\n"

// viewStats are the figures of the view's header.
type viewStats struct {
	Broker, HTTPAddr                          string
	EventsIn, Applied, DeadLetters, ScoresOut int64
	Lag                                       int64
	EventsPerSec                              float64
	Watch                                     string // what to watch for (the demo's planted bursts), if anything
}

// Layout of the terminal view.
const (
	viewTop        = 10 // videos of the global list
	viewRegions    = 6  // regions shown, the hottest ones
	viewRegionTop  = 3  // videos per region
	viewColumns    = 3  // regions side by side
	viewBarWidth   = 30
	viewVideoWidth = 20
	viewColumn     = 26 // width of a region's column
	viewLineTop    = 5  // videos on a line of the one-line summary
)

// runView shows the trending lists on w every interval until ctx is done.
// On a terminal (tty) it redraws the screen in place; otherwise, as when the
// output goes to a file in CI, it prints one summary line per new snapshot.
// stats may be nil.
func runView(ctx context.Context, w io.Writer, src viewSource, stats func() viewStats, every time.Duration, tty bool) {
	if stats == nil {
		stats = func() viewStats { return viewStats{} }
	}
	v := &viewState{tty: tty, lastTick: math.MinInt64}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		v.draw(w, src, stats())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// viewState keeps what one refresh needs from the previous.
type viewState struct {
	tty      bool
	lastTick int64 // of the last summary line
	buf      []byte
}

// draw writes one refresh in a single Write, so a frame never shows half
// drawn.
func (v *viewState) draw(w io.Writer, src viewSource, st viewStats) {
	snap, ok := src.Trending(processor.GlobalRegion)
	var global processor.List
	if ok && len(snap.Lists) > 0 {
		global = snap.Lists[0]
	}
	if v.tty {
		v.buf = appendViewFrame(v.buf[:0], src, st, snap.Tick, global, ok)
	} else {
		if !ok || snap.Tick == v.lastTick {
			return
		}
		v.lastTick = snap.Tick
		v.buf = appendViewSummary(v.buf[:0], src, st, snap.Tick, global)
	}
	w.Write(v.buf)
}

// appendViewFrame appends a full screen: the header, the global top list with
// bars, and the top of the hottest regions side by side.
func appendViewFrame(b []byte, src viewSource, st viewStats, tick int64, global processor.List, ok bool) []byte {
	b = append(b, "\x1b[H\x1b[2J"...) // cursor home, clear screen
	b = append(b, "virality"...)
	if st.Broker != "" {
		b = append(b, "   broker "...)
		b = append(b, st.Broker...)
	}
	if st.HTTPAddr != "" {
		b = append(b, "   "...)
		b = append(b, viewURL(st.HTTPAddr)...)
	}
	b = fmt.Appendf(b, "\nevents in %s (%s/s)   lag %s   dead letters %s   scores out %s\n\n",
		viewGrouped(st.EventsIn), viewGrouped(int64(math.Round(st.EventsPerSec))),
		viewGrouped(st.Lag), viewGrouped(st.DeadLetters), viewGrouped(st.ScoresOut))
	if st.Watch != "" {
		b = fmt.Appendf(b, "watch: %s\n\n", st.Watch)
	}
	if !ok {
		b = append(b, "waiting for the first trending snapshot (one every tick of event time)...\n"...)
		return b
	}
	b = fmt.Appendf(b, "Trending at %s (event time), global top %d\n", viewClock(tick), viewTop)
	b = append(b, viewLegend+"\n"...)
	videos := global.Videos[:min(viewTop, len(global.Videos))]
	if len(videos) == 0 {
		b = append(b, "  no video is trending\n"...)
	}
	for i, r := range videos {
		b = fmt.Appendf(b, "%3d  %s  %8.2f  %s", i+1, viewPad(r.Video, viewVideoWidth), r.Score,
			viewBar(r.Score, videos[0].Score, viewBarWidth))
		if m, why := viewDamped(src, r.Video); m != "" {
			b = append(b, " "+m+" bought"...)
			if why != "" {
				b = append(b, ": "+why...)
			}
		}
		b = append(b, '\n')
	}

	regions := viewHottest(src, viewRegions)
	for row := 0; row < len(regions); row += viewColumns {
		b = append(b, '\n')
		cols := regions[row:min(row+viewColumns, len(regions))]
		for _, l := range cols {
			b = append(b, viewPad(" "+l.Region, viewColumn)...)
		}
		b = viewTrimRight(b)
		for i := range viewRegionTop {
			b = append(b, '\n')
			for _, l := range cols {
				if i < len(l.Videos) {
					mark := "   "
					if m, _ := viewDamped(src, l.Videos[i].Video); m != "" {
						mark = " ⚑ "
					}
					b = fmt.Appendf(b, "%3d %s %6.2f%s", i+1, viewPad(l.Videos[i].Video, 12), l.Videos[i].Score, mark)
				} else {
					b = append(b, strings.Repeat(" ", viewColumn)...)
				}
			}
			b = viewTrimRight(b)
		}
		b = append(b, '\n')
	}
	return append(b, "\nCtrl-C to stop.\n"...)
}

// appendViewSummary appends one line: the snapshot's time, its top videos
// (with their damped marks) and the counters.
func appendViewSummary(b []byte, src viewSource, st viewStats, tick int64, global processor.List) []byte {
	b = append(b, "trending @"...)
	b = append(b, viewClock(tick)...)
	b = append(b, ':')
	if len(global.Videos) == 0 {
		b = append(b, " (none)"...)
	}
	for _, r := range global.Videos[:min(viewLineTop, len(global.Videos))] {
		b = fmt.Appendf(b, " %s(%.1f", r.Video, r.Score)
		if m, why := viewDamped(src, r.Video); m != "" {
			b = append(b, " "+m...)
			if why != "" {
				b = append(b, " "+why...)
			}
		}
		b = append(b, ')')
	}
	b = fmt.Appendf(b, " | in %d (%.0f/s) lag %d dead %d out %d",
		st.EventsIn, st.EventsPerSec, st.Lag, st.DeadLetters, st.ScoresOut)
	if st.Watch != "" {
		b = fmt.Appendf(b, " | watch: %s", st.Watch)
	}
	return append(b, '\n')
}

// viewHottest returns the lists of up to n regions whose top video scores
// highest, in the order of their names so that columns move little.
func viewHottest(src viewSource, n int) []processor.List {
	var lists []processor.List
	for _, region := range src.Regions() {
		if region == processor.GlobalRegion {
			continue
		}
		s, ok := src.Trending(region)
		if !ok || len(s.Lists) == 0 || len(s.Lists[0].Videos) == 0 {
			continue
		}
		lists = append(lists, s.Lists[0])
	}
	slices.SortFunc(lists, func(a, b processor.List) int {
		return cmp.Or(cmp.Compare(b.Videos[0].Score, a.Videos[0].Score), strings.Compare(a.Region, b.Region))
	})
	lists = lists[:min(n, len(lists))]
	slices.SortFunc(lists, func(a, b processor.List) int { return strings.Compare(a.Region, b.Region) })
	return lists
}

// viewClock formats an event time in epoch ms as a UTC clock, "06:00:10Z".
func viewClock(ms int64) string { return time.UnixMilli(ms).UTC().Format("15:04:05Z") }

// viewURL turns a listen address into the URL of the page.
func viewURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	if strings.HasPrefix(addr, ":") {
		addr = "localhost" + addr
	}
	return "http://" + addr + "/"
}

// viewBar is a run of blocks proportional to score/top, at least one for a
// positive score.
func viewBar(score, top float64, width int) string {
	if score <= 0 || top <= 0 {
		return ""
	}
	n := int(math.Round(score / top * float64(width)))
	return strings.Repeat("█", min(max(n, 1), width))
}

// viewPad cuts s to width runes, marking a cut with "…", and pads it with
// spaces.
func viewPad(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n > width {
		r := []rune(s)
		return string(r[:width-1]) + "…"
	}
	return s + strings.Repeat(" ", width-n)
}

func viewTrimRight(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// viewGrouped formats n with thousands separators: 1234567 is "1,234,567".
func viewGrouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// isTerminal reports whether f is a terminal, where the view can redraw in
// place.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	// /dev/null is a character device too, but no one is watching it.
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}
