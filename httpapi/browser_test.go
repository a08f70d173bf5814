package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/httpapi"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
)

// The service is a Backend with like times: the page's series and marks.
var _ interface {
	httpapi.Backend
	httpapi.LikesReader
} = (*service.Service)(nil)

// TestPageInBrowser runs the live pipeline in process (embedded broker,
// generated likes of the last two hours with viral bursts and bought-like
// campaigns, the service, its HTTP server), opens the page in headless
// Chromium and checks what a person would see: the trending list with
// velocity sparklines, the chart of a video and the legend of the score.
// It saves a screenshot in the test's temporary directory, or where
// VIRALITY_SCREENSHOT_OUT says (relative to the module's root:
// VIRALITY_SCREENSHOT_OUT=docs/page.png gives the README's picture).
//
// It needs Debian's chromium package; without it, the test is skipped,
// except in CI (CI=true), where it fails.
func TestPageInBrowser(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed, and CI=true: the page must be checked in a browser (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
	}
	base, lastTS, campaigns := startPipeline(t)

	// The first list, and a video of it with likes in the last hour.
	var top struct {
		TS     int64 `json:"ts"`
		Videos []struct {
			VideoID  string    `json:"video_id"`
			Velocity []float64 `json:"velocity"`
		} `json:"videos"`
	}
	// The service has caught up when the list is of the last tick (10 s).
	waitFor(t, "a trending list of the last likes, with velocities", 90*time.Second, func() bool {
		code, body := httpGet(base + "/v1/trending/series?k=20")
		return code == 200 && json.Unmarshal([]byte(body), &top) == nil && top.TS > lastTS-20_000 &&
			len(top.Videos) >= 5 && top.Videos[0].Velocity != nil
	})
	// The chart shows a viral burst if one is listed (the generator names
	// them vb0, vb1, ...), else the top video.
	video := top.Videos[0].VideoID
	for _, v := range top.Videos {
		if strings.HasPrefix(v.VideoID, "vb") {
			video = v.VideoID
			break
		}
	}
	t.Logf("chart of %s; campaign videos %v", video, campaigns)
	url := base + "/?video=" + video

	// Chromium loads the page and runs its script; the list and the chart
	// come from fetches, so load again until they are in the DOM.
	var dom string
	waitFor(t, "the page rendered with the list, sparklines and the chart", 90*time.Second, func() bool {
		out, err := runChromium(t, chromium, "--dump-dom", url)
		if err != nil {
			t.Logf("chromium: %v", err)
			return false
		}
		dom = out
		return strings.Count(dom, `class="video`) >= 5 && strings.Contains(dom, `id="video-chart"`)
	})
	for _, want := range []struct{ what, re string }{
		{"rows of the trending list", `<tr class="video[^"]*"[^>]*>`},
		{"a sparkline of velocity in the list", `<td class="spark"><svg[^>]*class="sparkline"`},
		{"the chart of the selected video", `<div id="chart"><svg[^>]*id="video-chart"`},
		{"the chart's bars", `<rect `},
		{"the chart of the windows", `<div id="windows"><svg[^>]*id="windows-chart"`},
		{"the chart's y unit", `likes per minute`},
		{"the chart's time axis", `minutes before \d\d:\d\d:\d\dZ \(event time\)`},
		{"the score legend", `how surprising a video's likes of the last 5 minutes are`},
		{"the chart legend", `of the hour's [\d,]+ likes`},
		{"the selected video's record with units", `likes in the last 5 min`},
		{"the record's damping fields", `damped_likes_1h`},
		{"the selected video in the title", `<span id="video-title">` + regexp.QuoteMeta(video) + `</span>`},
		{"the link to this view", `id="permalink" href="/\?video=` + regexp.QuoteMeta(video) + `"`},
	} {
		if n := len(regexp.MustCompile(want.re).FindAllString(dom, -1)); n == 0 {
			t.Errorf("the page lacks %s (%s)", want.what, want.re)
		}
	}
	if strings.Contains(dom, `class="error"`) {
		t.Errorf("the page shows an error: %s", regexp.MustCompile(`class="error">[^<]*`).FindString(dom))
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	t.Logf("%d damped marks in the list", strings.Count(dom, `class="damped"`)-1) // one is the legend's

	// A campaign of bought likes: its record says how many likes of the
	// hour were damped and why, and its panel shows the mark with the
	// reason.
	campaign := ""
	for _, id := range campaigns {
		var rec struct {
			Likes1h  int64  `json:"likes_1h"`
			Damped1h int64  `json:"damped_likes_1h"`
			Reason   string `json:"damped_reason"`
		}
		code, body := httpGet(base + "/v1/videos/" + id)
		if code == 200 && json.Unmarshal([]byte(body), &rec) == nil && rec.Reason == "account_rate" &&
			rec.Damped1h*10 >= rec.Likes1h && rec.Likes1h > 0 {
			campaign = id
			break
		}
	}
	if campaign == "" {
		t.Fatalf("no campaign video of %v has a record with damped_reason account_rate and 10%% or more of its hour damped", campaigns)
	}
	markRe := regexp.MustCompile(`<span class="damped"[^>]*>⚑ \d+% bought: account_rate</span>`)
	waitFor(t, "the panel of campaign "+campaign+" with its mark and reason", 60*time.Second, func() bool {
		out, err := runChromium(t, chromium, "--dump-dom", base+"/?video="+campaign)
		if err != nil {
			t.Logf("chromium: %v", err)
			return false
		}
		return markRe.MatchString(out)
	})

	// The screenshot: of the page a link opens, at a desktop size.
	shot := filepath.Join(t.TempDir(), "page.png")
	if out := os.Getenv("VIRALITY_SCREENSHOT_OUT"); out != "" {
		shot = out
		if !filepath.IsAbs(shot) {
			shot = filepath.Join(moduleRoot(t), shot)
		}
	}
	if _, err := runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars", url); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
}

// findChromium returns the path of Chromium, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// runChromium runs headless Chromium on the args, giving the page 8 s of
// virtual time (its timers and fetches run as fast as they can) and up to
// a minute of real time.
func runChromium(t *testing.T, chromium string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=8000", "--run-all-compositor-stages-before-draw"}, args...)
	cmd := exec.CommandContext(ctx, chromium, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, lastLines(stderr.String(), 5))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// startPipeline starts an embedded broker, publishes two hours of
// generated likes ending now (event time = record time), runs the service
// and its HTTP server on them and returns the server's base URL, the event
// time of the last like and the videos of the bought-like campaigns.
func startPipeline(t *testing.T) (base string, lastTS int64, campaigns []string) {
	t.Helper()
	emb, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	kc := emb.Config()

	cfg := gen.DefaultConfig()
	cfg.Duration = 2 * time.Hour
	cfg.Start = time.Now().Add(-cfg.Duration).UTC().Truncate(time.Millisecond)
	cfg.Events = 120_000
	cfg.Videos = 2_000
	cfg.Users = 20_000
	cfg.Bursts = 6
	cfg.Campaigns = 0
	cfg.FarmAccounts = 300
	// Bought likes in the last half hour, from one pool of farm accounts:
	// the later campaigns come from accounts already far above a person's
	// rate, and are damped.
	for i, ago := range []time.Duration{40, 32, 24, 16, 8} {
		cfg.Plants = append(cfg.Plants, gen.Plant{Kind: gen.KindCampaign, At: cfg.Duration - ago*time.Minute})
		campaigns = append(campaigns, fmt.Sprintf("vc%d", i))
	}
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const partitions = 4
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: "likes", Partitions: partitions}}); err != nil {
		t.Fatal(err)
	}
	p, err := kafkaio.NewProducer(kc, "likes")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ev event.Event
	for {
		line, ts, ok := g.Next(nil)
		if !ok {
			break
		}
		var key []byte
		if event.Decode(line, 0, &ev) == nil {
			key, ts = []byte(ev.VideoID), ev.TS
		}
		lastTS = max(lastTS, ts)
		if err := p.Produce(ctx, key, line, time.UnixMilli(ts)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(p.Flush(ctx), p.Close()); err != nil {
		t.Fatal(err)
	}

	scfg := service.DefaultConfig()
	scfg.Kafka = kc
	scfg.IdleTimeout = 500 * time.Millisecond
	scfg.CommitInterval = 200 * time.Millisecond
	scfg.Workers = 2
	scfg.MinFreeDisk = 0
	scfg.Engine.AccountThreshold = int(math.Ceil(2*cfg.HumanCeiling())) + 2 // as the demo does
	db, err := store.Open(t.TempDir(), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	svc, err := service.New(scfg, db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	srv := httpapi.New("127.0.0.1:0", svc, nil)
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sd, cancelSD := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelSD()
		if err := srv.Shutdown(sd); err != nil {
			t.Error(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return "http://" + addr.String(), lastTS, campaigns
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// moduleRoot is the directory of go.mod above the package's.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}
