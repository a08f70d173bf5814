package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/viralityhq/virality/event"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viralityhq/virality/metrics"
	"github.com/viralityhq/virality/processor"
)

// fakeBackend serves fixed records and snapshots.
type fakeBackend struct {
	scores   map[string]string
	scoreErr error
	lists    map[string][]processor.Ranked
	tick     int64
	regions  []string
	ready    bool
	why      string
}

func (f *fakeBackend) Score(ctx context.Context, id string) ([]byte, bool, error) {
	if f.scoreErr != nil {
		return nil, false, f.scoreErr
	}
	rec, ok := f.scores[id]
	return []byte(rec), ok, nil
}

func (f *fakeBackend) Trending(region string) (processor.Snapshot, bool) {
	l, ok := f.lists[region]
	if !ok {
		return processor.Snapshot{}, false
	}
	return processor.Snapshot{Tick: f.tick, Lists: []processor.List{{Region: region, Videos: l}}}, true
}

func (f *fakeBackend) Regions() []string { return f.regions }

func (f *fakeBackend) Ready() (bool, string) { return f.ready, f.why }

const v12Record = `{"video_id":"v12","ts":1790000010000,"seq":7,"model":"default","score":31.2,"likes":40,"unique_likers":41,"unlikes":1,"likes_1m":3,"likes_5m":12,"likes_1h":40,"likes_24h":40,"rate_5m":2.5,"rate_1h":0.7,"rate_24h":0.03,"velocity":1.8,"acceleration":0.2,"damped_likes_5m":6,"damped_likes_1h":10,"damped_reason":"account_rate"}`

func newFake() *fakeBackend {
	return &fakeBackend{
		scores: map[string]string{"v12": v12Record, "a/b": `{"video_id":"a/b"}`},
		lists: map[string][]processor.Ranked{
			"global": {{Video: "v12", Score: 31.2}, {Video: "v7", Score: 20.123456789012}, {Video: "v3", Score: 1e-7}},
			"US":     {{Video: "v7", Score: 20}},
			"BR":     {},
		},
		tick:    1790000010000,
		regions: []string{"global", "BR", "US"},
		ready:   true,
	}
}

type response struct {
	status      int
	contentType string
	body        string
}

func get(t *testing.T, h http.Handler, method, target string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return response{rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()}
}

func TestRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "virality_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)

	const js = "application/json"
	for _, tc := range []struct {
		name, method, target string
		backend              func(*fakeBackend)
		status               int
		contentType          string
		body                 string // exact, unless empty
		contains             string
	}{
		{name: "video", target: "/v1/videos/v12", status: 200, contentType: js, body: v12Record + "\n"},
		{name: "video with escaped slash", target: "/v1/videos/a%2Fb", status: 200, contentType: js, body: `{"video_id":"a/b"}` + "\n"},
		{name: "video unknown", target: "/v1/videos/x", status: 404, contentType: js,
			body: `{"error":"no score for video \"x\" yet"}` + "\n"},
		{name: "video backend error", target: "/v1/videos/v12", status: 500, contentType: js,
			backend: func(f *fakeBackend) { f.scoreErr = errors.New("store: closed") },
			body:    `{"error":"look up video \"v12\": store: closed"}` + "\n"},
		{name: "video without id", target: "/v1/videos/", status: 404},

		{name: "trending default", target: "/v1/trending", status: 200, contentType: js,
			body: `{"ts":1790000010000,"region":"global","videos":[{"video_id":"v12","score":31.2},{"video_id":"v7","score":20.12345679},{"video_id":"v3","score":1e-07}]}` + "\n"},
		{name: "trending k truncates", target: "/v1/trending?region=global&k=2", status: 200, contentType: js,
			body: `{"ts":1790000010000,"region":"global","videos":[{"video_id":"v12","score":31.2},{"video_id":"v7","score":20.12345679}]}` + "\n"},
		{name: "trending k max", target: "/v1/trending?k=10000", status: 200, contentType: js, contains: `"v3"`},
		{name: "trending region", target: "/v1/trending?region=US&k=20", status: 200, contentType: js,
			body: `{"ts":1790000010000,"region":"US","videos":[{"video_id":"v7","score":20}]}` + "\n"},
		{name: "trending empty list", target: "/v1/trending?region=BR", status: 200, contentType: js,
			body: `{"ts":1790000010000,"region":"BR","videos":[]}` + "\n"},
		{name: "trending unknown region", target: "/v1/trending?region=FR", status: 404, contentType: js,
			body: `{"error":"no trending list for region \"FR\" yet; /v1/regions lists the regions that have one"}` + "\n"},
		{name: "trending before first snapshot", target: "/v1/trending", status: 404, contentType: js,
			backend: func(f *fakeBackend) { f.lists = nil }, contains: `no trending list for region \"global\" yet`},
		{name: "trending k zero", target: "/v1/trending?k=0", status: 400, contentType: js,
			body: `{"error":"k must be a whole number from 1 to 10000, got \"0\""}` + "\n"},
		{name: "trending k too big", target: "/v1/trending?k=10001", status: 400, contentType: js, contains: "from 1 to 10000"},
		{name: "trending k not a number", target: "/v1/trending?k=ten", status: 400, contentType: js, contains: `got \"ten\"`},
		{name: "trending k empty", target: "/v1/trending?k=", status: 400, contentType: js, contains: `got \"\"`},

		{name: "regions", target: "/v1/regions", status: 200, contentType: js, body: `["global","BR","US"]` + "\n"},
		{name: "regions none yet", target: "/v1/regions", status: 200, contentType: js,
			backend: func(f *fakeBackend) { f.regions = nil }, body: "[]\n"},

		{name: "healthz", target: "/healthz", status: 200, body: "ok\n"},
		{name: "healthz when not ready", target: "/healthz", status: 200, body: "ok\n",
			backend: func(f *fakeBackend) { f.ready, f.why = false, "restoring partition 3" }},
		{name: "readyz", target: "/readyz", status: 200, body: "ready\n"},
		{name: "readyz not ready", target: "/readyz", status: 503, body: "not ready: restoring partition 3\n",
			backend: func(f *fakeBackend) { f.ready, f.why = false, "restoring partition 3" }},

		{name: "metrics", target: "/metrics", status: 200, contains: "virality_test_total 3"},
		{name: "page", target: "/", status: 200, contentType: "text/html; charset=utf-8", contains: "<title>"},
		{name: "head", method: "HEAD", target: "/healthz", status: 200},
		{name: "unknown path", target: "/v2/nothing", status: 404},
		{name: "wrong method", method: "POST", target: "/v1/regions", status: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			if tc.backend != nil {
				tc.backend(f)
			}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			r := get(t, New("127.0.0.1:0", f, reg).Handler(), method, tc.target)
			if r.status != tc.status {
				t.Errorf("status %d, want %d (body %q)", r.status, tc.status, r.body)
			}
			if tc.contentType != "" && r.contentType != tc.contentType {
				t.Errorf("Content-Type %q, want %q", r.contentType, tc.contentType)
			}
			if tc.body != "" && r.body != tc.body {
				t.Errorf("body\n%s\nwant\n%s", r.body, tc.body)
			}
			if !strings.Contains(r.body, tc.contains) {
				t.Errorf("body %q does not contain %q", r.body, tc.contains)
			}
			if tc.contentType == js && !json.Valid([]byte(r.body)) {
				t.Errorf("body is not valid JSON: %q", r.body)
			}
		})
	}
}

func TestServiceMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.SetReady(true)
	m.AddIn(2, 5)
	r := get(t, New("127.0.0.1:0", newFake(), reg).Handler(), "GET", "/metrics")
	for _, want := range []string{"virality_ready 1", `virality_events_in_total{partition="2"} 5`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNoMetricsWithoutRegistry(t *testing.T) {
	r := get(t, New("127.0.0.1:0", newFake(), nil).Handler(), "GET", "/metrics")
	if r.status != 404 {
		t.Errorf("GET /metrics with no registry: status %d, want 404", r.status)
	}
}

// The page is self-contained: its script and style come from this server
// (embedded), its data from the JSON API, nothing from elsewhere.
func TestPage(t *testing.T) {
	h := New("127.0.0.1:0", newFake(), nil).Handler()
	r := get(t, h, "GET", "/")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q, want default-src 'self'", csp)
	}
	js := get(t, h, "GET", "/static/page.js")
	css := get(t, h, "GET", "/static/page.css")
	if js.status != 200 || !strings.Contains(js.contentType, "javascript") {
		t.Errorf("/static/page.js: %d %s", js.status, js.contentType)
	}
	if css.status != 200 || !strings.HasPrefix(css.contentType, "text/css") {
		t.Errorf("/static/page.css: %d %s", css.status, css.contentType)
	}
	for _, want := range []string{`src="/static/page.js"`, `href="/static/page.css"`, `id="region"`, `id="legend"`, "standard deviations"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page does not contain %q", want)
		}
	}
	for _, want := range []string{
		"/v1/trending/series?region=", "/v1/regions", "/v1/videos/", "/series", "/readyz",
		"setInterval", "likes_5m", "velocity", "damped_share_1h", "URLSearchParams", "history.pushState",
	} {
		if !strings.Contains(js.body, want) {
			t.Errorf("page.js does not contain %q", want)
		}
	}
	for name, body := range map[string]string{"page": r.body, "page.js": js.body, "page.css": css.body} {
		// The one URL allowed is the SVG namespace, a name, not a fetch.
		body = strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, "")
		for _, external := range []string{"http://", "https://", "//cdn", "@import", `src="//`, `href="//`} {
			if strings.Contains(body, external) {
				t.Errorf("%s contains %q: it must load nothing from elsewhere", name, external)
			}
		}
	}
	if r := get(t, h, "GET", "/static/nothing.js"); r.status != 404 {
		t.Errorf("/static/nothing.js: %d", r.status)
	}
}

// Values from the data must not become markup: the page sets text only.
func TestPageSetsTextOnly(t *testing.T) {
	h := New("127.0.0.1:0", newFake(), nil).Handler()
	for _, path := range []string{"/", "/static/page.js"} {
		r := get(t, h, "GET", path)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
			if strings.Contains(r.body, bad) {
				t.Errorf("%s uses %s; use textContent for values from the API", path, bad)
			}
		}
	}
}

func TestJSONStrings(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v12", `"v12"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"tab\tnl\n\x01", `"tab\tnl\n\u0001"`},
		{"héllo", `"héllo"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := string(event.AppendString(nil, tc.in))
			if got != tc.want {
				t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Errorf("not valid JSON: %v", err)
			}
		})
	}
}

func TestStartShutdown(t *testing.T) {
	s := New("127.0.0.1:0", newFake(), prometheus.NewRegistry())
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}

	resp, err := http.Get("http://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr.String() + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

func TestStartAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(ln.Addr().String(), newFake(), nil)
	_, err = s.Start()
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Start on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("error %q should name the address and say it is in use", err)
	}
}

func TestShutdownNotStarted(t *testing.T) {
	if err := New("127.0.0.1:0", newFake(), nil).Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a server never started: %v", err)
	}
}
