// Package httpapi is the live HTTP interface of the service: the current
// score of a video and the current trending lists as JSON, Prometheus
// metrics, health and readiness probes, and a small page showing them.
//
// Routes:
//
//	GET /v1/videos/{video_id}          the video's current score record
//	GET /v1/videos/{video_id}/series   the last hour of its likes, per minute
//	GET /v1/trending?region=global&k=20 the current trending list of a region
//	GET /v1/trending/series?region=global&k=20
//	                                   the list with likes, damping and velocity sparklines
//	GET /v1/regions                    the regions that have a list
//	GET /metrics                       Prometheus exposition of the registry
//	GET /healthz                       200 while the process is up
//	GET /readyz                        200 when ready, else 503 and why
//	GET /                              the page (and /static/: its script and style)
package httpapi

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/viralityhq/virality/processor"
)

// Backend is what the server shows: the service's current state.
type Backend interface {
	// Score returns the current score record of a video (one JSON object,
	// as on the video-scores topic).
	Score(ctx context.Context, videoID string) (record []byte, ok bool, err error)
	// Trending returns the current snapshot of a region ("global" or a
	// region code), with exactly one List, for that region; ok is false if
	// there is none yet.
	Trending(region string) (s processor.Snapshot, ok bool)
	// Regions lists the regions that have a current snapshot, "global"
	// first, then sorted.
	Regions() []string
	// Ready reports whether the service is ready (assignments loaded,
	// broker reachable) and, if not, why.
	Ready() (ok bool, why string)
}

// Limits of the k parameter of /v1/trending.
const (
	DefaultK = 20
	MaxK     = 10000
)

// Timeouts of the http.Server: a slow or stuck client cannot hold a
// connection for long, and a scrape of /metrics has time to finish.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

var (
	// ErrStarted is returned by Start on a server already started.
	ErrStarted = errors.New("httpapi: server already started")

	//go:embed page.html
	page []byte

	// The page's script and style, served under /static/: no CDN, no
	// build step.
	//go:embed static
	staticFiles embed.FS
)

// Server serves the routes of the package.
type Server struct {
	addr    string
	handler http.Handler
	srv     *http.Server

	mu      sync.Mutex
	started bool
	served  chan error // the error Serve returned; closed after it
}

// New returns a server for addr (like "127.0.0.1:8080"; port 0 picks a
// free port) showing b, with reg served on /metrics. A nil reg leaves
// /metrics out.
func New(addr string, b Backend, reg *prometheus.Registry) *Server {
	s := &Server{addr: addr, handler: newHandler(b, reg)}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return s
}

// Handler returns the handler of every route, for tests and for mounting
// elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the server's address and serves in a goroutine until
// Shutdown. It returns the address listened on, which tells the port when
// the address asked for port 0.
func (s *Server) Start() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, ErrStarted
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("httpapi: listen on %s: the address is in use by another process; stop it or choose another address: %w", s.addr, err)
		}
		return nil, fmt.Errorf("httpapi: listen on %s: %w", s.addr, err)
	}
	s.started = true
	s.served = make(chan error, 1)
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.served <- err
		close(s.served)
	}()
	return ln.Addr(), nil
}

// Shutdown stops the server: it stops listening, waits for the requests in
// flight until ctx is done, and returns the error serving ended with, if
// any. It does nothing on a server not started.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started, served := s.started, s.served
	s.mu.Unlock()
	if !started {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("httpapi: shutdown: %w", err)
		// Connections still open past ctx are cut.
		err = errors.Join(err, s.srv.Close())
	}
	return errors.Join(err, <-served)
}

// handler serves the routes from a Backend.
type handler struct {
	b  Backend
	lr LikesReader // nil if b is not one
}

func newHandler(b Backend, reg *prometheus.Registry) http.Handler {
	h := &handler{b: b}
	h.lr, _ = b.(LikesReader)
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded directory is there
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/videos/{video_id}", h.video)
	mux.HandleFunc("GET /v1/videos/{video_id}/series", h.videoSeries)
	mux.HandleFunc("GET /v1/trending", h.trending)
	mux.HandleFunc("GET /v1/trending/series", h.trendingSeries)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	mux.HandleFunc("GET /v1/regions", h.regions)
	registerCreators(mux, b) // creators.go
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /{$}", h.page)
	// Go's profiles (heap, CPU, goroutines), as Prometheus serves them:
	// what an operator needs to see where memory or time goes.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			Registry:          reg, // counts its own errors there
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
		}))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

func (h *handler) video(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("video_id")
	rec, ok, err := h.b.Score(r.Context(), id)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("look up video %q: %v", id, err))
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no score for video %q yet", id))
	default:
		writeJSON(w, http.StatusOK, append(rec[:len(rec):len(rec)], '\n'))
	}
}

func (h *handler) trending(w http.ResponseWriter, r *http.Request) {
	tick, top, ok := h.topK(w, r, MaxK)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, append(processor.AppendList(nil, tick, &top), '\n'))
}

// topK answers the region and k parameters of r with the top k of the
// region's current list; if it cannot, it writes the error and ok is false.
func (h *handler) topK(w http.ResponseWriter, r *http.Request, maxK int) (tick int64, top processor.List, ok bool) {
	q := r.URL.Query()
	region := q.Get("region")
	if region == "" {
		region = processor.GlobalRegion
	}
	k := min(DefaultK, maxK)
	if v, ok := q["k"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > maxK {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("k must be a whole number from 1 to %d, got %q", maxK, v[0]))
			return 0, top, false
		}
		k = n
	}
	s, ok := h.b.Trending(region)
	var l *processor.List
	if ok {
		for i := range s.Lists {
			if s.Lists[i].Region == region {
				l = &s.Lists[i]
				break
			}
		}
	}
	if l == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no trending list for region %q yet; /v1/regions lists the regions that have one", region))
		return 0, top, false
	}
	top = *l
	top.Videos = top.Videos[:min(k, len(top.Videos))]
	return s.Tick, top, true
}

func (h *handler) regions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, append(appendStrings(nil, h.b.Regions()), '\n'))
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if ok, why := h.b.Ready(); !ok {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+why+"\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Write(page)
}

// pageCSP keeps the page to this server: its own script and style, data
// from its own API, nothing from elsewhere.
const pageCSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// staticHandler serves the page's files, revalidated on each load so that
// a new binary's page is never mixed with an old script.
func staticHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store") // live values
	w.WriteHeader(status)
	w.Write(body)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, append(appendError(nil, msg), '\n'))
}

func writeText(w http.ResponseWriter, status int, body string) {
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body))
}
