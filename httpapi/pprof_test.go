package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestProfiles: Go's profiles are served under /debug/pprof/, as an
// operator's `go tool pprof http://HOST/debug/pprof/heap` expects.
func TestProfiles(t *testing.T) {
	h := newHandler(newFake(), nil)
	if r := get(t, h, http.MethodGet, "/debug/pprof/"); r.status != http.StatusOK || !strings.Contains(r.body, "heap") {
		t.Fatalf("/debug/pprof/: %d %.200s", r.status, r.body)
	}
	if r := get(t, h, http.MethodGet, "/debug/pprof/heap?debug=1"); r.status != http.StatusOK || !strings.Contains(r.body, "heap profile") {
		t.Fatalf("/debug/pprof/heap: %d %.200s", r.status, r.body)
	}
}
