package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/viralityhq/virality/processor"
)

// CreatorsReader is a Backend that also answers for creators (the live
// service on the instance that holds partition 0, which keeps their
// state): /v1/creators/{creator_id} and /v1/creators/rising.
type CreatorsReader interface {
	// Creator returns a creator's current record (one JSON object, as on
	// the creator-scores topic).
	Creator(ctx context.Context, id string) (record []byte, ok bool, err error)
	// RisingCreators returns the last rising-creators list of a region
	// ("global" or a region code) and its tick.
	RisingCreators(region string) (l processor.CreatorList, tick int64, ok bool)
}

// registerCreators adds the creator routes to mux; without a
// CreatorsReader they answer 404. A creator named "rising" is not
// reachable by /v1/creators/{creator_id}.
func registerCreators(mux *http.ServeMux, b Backend) {
	cr, _ := b.(CreatorsReader)
	mux.HandleFunc("GET /v1/creators/rising", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		region := q.Get("region")
		if region == "" {
			region = processor.GlobalRegion
		}
		k := DefaultK
		if v, ok := q["k"]; ok {
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > MaxK {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("k must be a whole number from 1 to %d, got %q", MaxK, v[0]))
				return
			}
			k = n
		}
		var l processor.CreatorList
		var tick int64
		ok := false
		if cr != nil {
			l, tick, ok = cr.RisingCreators(region)
		}
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no rising-creators list for region %q here yet (the instance that holds partition 0 has them)", region))
			return
		}
		l.Creators = l.Creators[:min(k, len(l.Creators))]
		writeJSON(w, http.StatusOK, append(processor.AppendCreatorList(nil, tick, &l), '\n'))
	})
	mux.HandleFunc("GET /v1/creators/{creator_id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("creator_id")
		var rec []byte
		ok := false
		var err error
		if cr != nil {
			rec, ok, err = cr.Creator(r.Context(), id)
		}
		switch {
		case err != nil:
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("look up creator %q: %v", id, err))
		case !ok:
			writeError(w, http.StatusNotFound, fmt.Sprintf("no record for creator %q here yet (the instance that holds partition 0 has them)", id))
		default:
			writeJSON(w, http.StatusOK, append(rec[:len(rec):len(rec)], '\n'))
		}
	})
}
