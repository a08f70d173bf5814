package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/viralityhq/virality/service"
)

// The demo's view gets its marks from the service.
var _ viewDampedSource = (*service.Service)(nil)

// dampedView is a fakeView that knows which videos' likes were damped as
// bought, as service.Service does.
type dampedView struct {
	*fakeView
	share map[string]float64
}

func (d *dampedView) DampedShare(video string) (float64, int64, bool) {
	s, ok := d.share[video]
	return s, 100, ok
}

// The view explains its columns in one line and marks the videos whose
// likes of the last hour were damped as bought, with the share, from 10%
// as on the page.
func TestViewDampedMarks(t *testing.T) {
	src := &dampedView{fakeView: newFakeView(), share: map[string]float64{
		"vc": 0.374, "vd": 0.099, "vBR1": 0.5, "v12": 0,
	}}
	var out bytes.Buffer
	(&viewState{tty: true}).draw(&out, src, testStats)
	frame := out.String()
	t.Logf("frame:\n%s", frame)
	for _, want := range []string{
		"Trending at 06:00:10Z (event time), global top 10\n" + viewLegend + "\n",
		"  3  vc                       34.00  " + strings.Repeat("█", 26) + " ⚑37% bought\n",
		"  4  vd                       31.00  " + strings.Repeat("█", 23) + "\n",
		"  1  v12                      40.00  " + strings.Repeat("█", 30) + "\n",
		"  1 vBR1          25.00 ⚑   1 vDE1           5.00     1 vGB1          10.00\n",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	if n := strings.Count(viewLegend, "\n"); n != 1 || len([]rune(viewLegend)) > 110 {
		t.Errorf("legend %q: want one line of at most 110 characters", viewLegend)
	}

	out.Reset()
	(&viewState{}).draw(&out, src, testStats)
	if want := "trending @06:00:10Z: v12(40.0) a-very-long-video-identifier-0001(37.0) vc(34.0 ⚑37%) vd(31.0) ve(28.0) |"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("summary\n%s\nwant it to start with\n%s", out.String(), want)
	}
}
