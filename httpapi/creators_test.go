package httpapi

import (
	"context"
	"testing"

	"github.com/viralityhq/virality/processor"
)

// creatorsBackend is a fake backend that also answers for creators.
type creatorsBackend struct{ *fakeBackend }

func (creatorsBackend) Creator(_ context.Context, id string) ([]byte, bool, error) {
	if id != "c3" {
		return nil, false, nil
	}
	return []byte(`{"creator_id":"c3","momentum":4.2}`), true, nil
}

func (creatorsBackend) RisingCreators(region string) (processor.CreatorList, int64, bool) {
	if region != "global" {
		return processor.CreatorList{}, 0, false
	}
	return processor.CreatorList{Region: region, Creators: []processor.RankedCreator{
		{Creator: "c3", Momentum: 4.2, Likes1h: 164}, {Creator: "c9", Momentum: 2, Likes1h: 30}}}, 1790000010000, true
}

func TestCreatorRoutes(t *testing.T) {
	h := newHandler(creatorsBackend{newFake()}, nil)
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"/v1/creators/c3", 200, `{"creator_id":"c3","momentum":4.2}` + "\n"},
		{"/v1/creators/c4", 404, `{"error":"no record for creator \"c4\" here yet (the instance that holds partition 0 has them)"}` + "\n"},
		{"/v1/creators/rising", 200, `{"ts":1790000010000,"region":"global","creators":[{"creator_id":"c3","momentum":4.2,"likes_1h":164},{"creator_id":"c9","momentum":2,"likes_1h":30}]}` + "\n"},
		{"/v1/creators/rising?region=global&k=1", 200, `{"ts":1790000010000,"region":"global","creators":[{"creator_id":"c3","momentum":4.2,"likes_1h":164}]}` + "\n"},
		{"/v1/creators/rising?region=US", 404, `{"error":"no rising-creators list for region \"US\" here yet (the instance that holds partition 0 has them)"}` + "\n"},
		{"/v1/creators/rising?k=0", 400, `{"error":"k must be a whole number from 1 to 10000, got \"0\""}` + "\n"},
	} {
		r := get(t, h, "GET", tc.target)
		if r.status != tc.status || r.body != tc.body || r.contentType != "application/json" {
			t.Errorf("%s: %d %s %q, want %d %q", tc.target, r.status, r.contentType, r.body, tc.status, tc.body)
		}
	}
	// A backend without creators answers 404.
	if r := get(t, newHandler(newFake(), nil), "GET", "/v1/creators/c3"); r.status != 404 {
		t.Errorf("without creators: %d %q", r.status, r.body)
	}
}
