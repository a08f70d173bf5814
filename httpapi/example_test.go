package httpapi_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/viralityhq/virality/httpapi"
	"github.com/viralityhq/virality/processor"
)

// oneList is a Backend with one global list.
type oneList struct{}

func (oneList) Score(ctx context.Context, id string) ([]byte, bool, error) { return nil, false, nil }
func (oneList) Regions() []string                                          { return []string{"global"} }
func (oneList) Ready() (bool, string)                                      { return true, "" }
func (oneList) Trending(region string) (processor.Snapshot, bool) {
	if region != processor.GlobalRegion {
		return processor.Snapshot{}, false
	}
	return processor.Snapshot{Tick: 1790000010000, Lists: []processor.List{{
		Region: region,
		Videos: []processor.Ranked{{Video: "v12", Score: 31.2}, {Video: "v7", Score: 20.1}},
	}}}, true
}

func ExampleServer_Handler() {
	h := httpapi.New("127.0.0.1:8080", oneList{}, nil).Handler()
	for _, target := range []string{"/v1/trending?k=1", "/v1/trending?region=JP", "/v1/videos/v1"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 {"ts":1790000010000,"region":"global","videos":[{"video_id":"v12","score":31.2}]}
	// 404 {"error":"no trending list for region \"JP\" yet; /v1/regions lists the regions that have one"}
	// 404 {"error":"no score for video \"v1\" yet"}
}
