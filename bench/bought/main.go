// Command bought measures what bought likes do to the trending lists
// (issue 8). It generates a stream with organic viral bursts and
// bought-like campaigns of three kinds (package gen): a rate farm of 400
// accounts liking about once a minute, a farm of 400 accounts spread over
// every region, and lockstep crews of 600 accounts liking at human rates.
// It runs the processor in process with its default configuration over
// each number of partitions of state asked for (the input split by video,
// as `virality backfill --partitions N` and a live topic of N partitions
// split it), takes the global top 20 of each 1-minute tick, and prints a
// table: organic bursts listed, the median delay from a burst's start to
// its first listing, and the campaigns of each kind listed at any tick;
// then the same for the hn and reddit-hot models and for the likes of the
// last 15 minutes.
//
// The six engine runs (three models, two settings) cost 370-500 CPU
// seconds at the default size, about 4-5 minutes on two idle cores (an
// estimate from runs on a shared machine, bench/RESULTS.md);
// -baselines=false runs the default model only.
//
//	go run ./bench/bought                        # 1.3M likes over 6 h, 1 and 8 partitions
//	go run ./bench/bought -events 300000 -hours 2 -bursts 6 -campaigns 6 -partitions 8
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

const (
	topK   = 20
	tickMS = 60_000
	// A burst counts as found when listed from its start to an hour after
	// its last like; a campaign as listed from its start to 30 minutes
	// after its last like (as processor's TestModelsOnGroundTruth).
	burstAfterMS    = 60 * 60_000
	campaignAfterMS = 30 * 60_000
	recentWindowMS  = 15 * 60_000
)

// kinds are the campaign kinds, in the order of the table's columns.
var kinds = []struct{ kind, column string }{
	{gen.KindCampaign, "rate-farm campaigns listed"},
	{gen.KindSpreadCampaign, "spread-farm campaigns listed"},
	{gen.KindCrewCampaign, "crew campaigns listed"},
}

func main() {
	events := flag.Int("events", 1_300_000, "likes to generate")
	hours := flag.Float64("hours", 6, "event-time span of the stream, hours")
	parts := flag.String("partitions", "1,8", "comma-separated numbers of partitions of state to run")
	seed := flag.Int64("seed", 1, "generator seed")
	bursts := flag.Int("bursts", 20, "organic bursts")
	campaigns := flag.Int("campaigns", 20, "campaigns of each kind")
	baselines := flag.Bool("baselines", true, "also rank with hn, reddit-hot and likes in the last 15 minutes")
	parallel := flag.Int("parallel", runtime.GOMAXPROCS(0), "engine runs at once, each applying its partitions on one goroutine (outputs are the same\nfor any number of workers)")
	threshold := flag.Int("account-threshold", 0, "account threshold, likes an hour (0: the engine's default)")
	flag.Parse()
	accountThreshold = *threshold
	var partitions []int
	for _, s := range strings.Split(*parts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(os.Stderr, "bought: -partitions %q: want numbers from 1 to 64, such as 1,8\n", *parts)
			os.Exit(2)
		}
		partitions = append(partitions, n)
	}
	cfg := workload(*events, time.Duration(*hours*float64(time.Hour)), *seed, *bursts, *campaigns)
	if *parallel < 1 {
		fmt.Fprintf(os.Stderr, "bought: -parallel %d: want at least 1\n", *parallel)
		os.Exit(2)
	}
	if err := run(context.Background(), os.Stdout, cfg, partitions, *parallel, *baselines); err != nil {
		fmt.Fprintln(os.Stderr, "bought:", err)
		os.Exit(1)
	}
}

// workload is the generated stream: the adversaries beside the
// default background.
// accountThreshold overrides the engine's account threshold when above 0.
var accountThreshold int

func workload(events int, span time.Duration, seed int64, bursts, campaigns int) gen.Config {
	c := gen.DefaultConfig()
	c.Seed = seed
	c.Events = events
	c.Duration = span
	c.Bursts = bursts
	c.Campaigns, c.FarmAccounts, c.FarmRate = campaigns, 400, 1
	c.SpreadCampaigns, c.SpreadAccounts = campaigns, 400
	c.CrewCampaigns, c.CrewAccounts = campaigns, 600
	return c
}

func run(ctx context.Context, w io.Writer, cfg gen.Config, partitions []int, parallel int, baselines bool) error {
	began := time.Now()
	g, err := gen.New(cfg)
	if err != nil {
		return err
	}
	var recs []processor.Record
	for {
		line, _, ok := g.Next(nil)
		if !ok {
			break
		}
		recs = append(recs, processor.Record{Value: line, Topic: "gen", Offset: int64(len(recs))})
	}
	truth := g.Truth()
	def := processor.DefaultConfig()
	fmt.Fprintf(w, "%d likes over %v (seed %d), generated in %v: %d organic bursts; %d campaigns of each kind: a rate farm of %d accounts at about %v like/min, a farm of %d accounts spread over every region, %d accounts at human rates in %d lockstep crews\n",
		len(recs), cfg.Duration, cfg.Seed, time.Since(began).Round(time.Millisecond), cfg.Bursts, cfg.Campaigns,
		cfg.FarmAccounts, cfg.FarmRate, cfg.SpreadAccounts, cfg.CrewAccounts, len(g.Crews()))
	threshold := "following the traffic"
	switch {
	case accountThreshold > 0:
		threshold = fmt.Sprintf("%d likes/h (-account-threshold)", accountThreshold)
	case def.AccountThreshold > 0:
		threshold = fmt.Sprintf("%d likes/h", def.AccountThreshold)
	}
	fmt.Fprintf(w, "global top %d at 1-minute ticks; engine: default configuration (model %s, account threshold %s); human ceiling of the generator %.1f likes/h\n\n",
		topK, def.Model, threshold, cfg.HumanCeiling())

	// Every (partitions, model) setting is a run of its own; parallel of
	// them run at once, each on one goroutine.
	type setting struct {
		partitions int
		model      string
		lists      map[int64][]string
		err        error
	}
	models := []string{def.Model}
	if baselines {
		models = append(models, "hn", "reddit-hot")
	}
	var settings []*setting
	for _, p := range partitions {
		for _, m := range models {
			settings = append(settings, &setting{partitions: p, model: m})
		}
	}
	now := cfg.Start.Add(cfg.Duration).UnixMilli()
	engines := time.Now()
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, s := range settings {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			var st processor.Stats
			s.lists, st, s.err = runEngine(ctx, recs, s.model, s.partitions, now)
			if s.err != nil {
				return
			}
			d := time.Since(t0)
			fmt.Fprintf(os.Stderr, "bought: %d partition%s, model %s: %d records in %v (%.0f records/s), %d dead letters\n",
				s.partitions, plural(s.partitions), s.model, st.Records, d.Round(time.Millisecond), float64(st.Records)/d.Seconds(), st.DeadLetters)
		}()
	}
	wg.Wait()
	engineTime := time.Since(engines)

	header := "| setting | bursts listed | median delay |"
	rule := "|---|---|---|"
	for _, k := range kinds {
		header += " " + k.column + " |"
		rule += "---|"
	}
	rows := []string{header, rule}
	for _, s := range settings {
		if s.err != nil {
			return fmt.Errorf("%d partitions, model %s: %w", s.partitions, s.model, s.err)
		}
		name := fmt.Sprintf("%d partition%s, %s", s.partitions, plural(s.partitions), s.model)
		if s.model == def.Model {
			name += " (default)"
		}
		rows = append(rows, row(name, detect(s.lists, truth)))
	}
	if baselines {
		rows = append(rows, row("likes in the last 15 min (any partitioning)", detect(recentLikes(recs), truth)))
	}
	fmt.Fprintln(w, strings.Join(rows, "\n"))
	fmt.Fprintf(w, "\n%d engine runs, %d at once, in %v; %v in all\n", len(settings), parallel, engineTime.Round(time.Second), time.Since(began).Round(time.Second))
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// runEngine runs recs through a fresh engine of the default configuration
// with model over partitions partitions of state, as `virality backfill
// --partitions N` does, and returns the global top list of each tick.
func runEngine(ctx context.Context, recs []processor.Record, model string, partitions int, now int64) (lists map[int64][]string, st processor.Stats, err error) {
	dir, err := os.MkdirTemp("", "virality-bought-")
	if err != nil {
		return nil, st, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		return nil, st, fmt.Errorf("open state %s: %w", dir, err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()

	cfg := processor.DefaultConfig()
	cfg.Model = model
	cfg.Now = now
	if accountThreshold > 0 {
		cfg.AccountThreshold = accountThreshold
	}
	top := &topSink{lists: map[int64][]string{}}
	out := processor.Outputs{Scores: jsonl.Discard, Trending: top, DeadLetters: jsonl.Discard}
	eng, err := processor.NewCoordinator(cfg, db, out, processor.Topology{
		Partitions: partitions, Partitioner: videoPartition, Stream: true, Workers: 1, Expect: partitions,
	})
	if err != nil {
		return nil, st, err
	}
	for p := range partitions {
		if _, err := eng.Open(int32(p)); err != nil {
			return nil, st, err
		}
	}
	if err := processor.Run(ctx, eng, &records{recs: recs}, processor.RunOptions{Decoders: 1}); err != nil {
		return nil, st, err
	}
	return top.lists, eng.Stats(), nil
}

// videoPartition is backfill's: Kafka's default partitioner on the video
// id, as for a topic keyed by video.
func videoPartition(video string, n int) int32 {
	return int32(kafkaio.PartitionOf([]byte(video), n))
}

// records is the generated stream as a processor.Source.
type records struct {
	recs []processor.Record
	pos  int
}

func (s *records) Next(_ context.Context, buf []processor.Record) ([]processor.Record, error) {
	buf = buf[:0]
	if s.pos >= len(s.recs) {
		return buf, io.EOF
	}
	end := min(s.pos+4096, len(s.recs))
	buf = append(buf, s.recs[s.pos:end]...)
	s.pos = end
	return buf, nil
}

// topSink keeps the first topK videos of each global trending list.
type topSink struct{ lists map[int64][]string }

func (s *topSink) Write(m *processor.Message) error {
	var r struct {
		TS     int64  `json:"ts"`
		Region string `json:"region"`
		Videos []struct {
			VideoID string `json:"video_id"`
		} `json:"videos"`
	}
	if err := json.Unmarshal(m.Value, &r); err != nil {
		return fmt.Errorf("trending record: %w", err)
	}
	if r.Region != processor.GlobalRegion {
		return nil
	}
	ids := make([]string, 0, topK)
	for _, v := range r.Videos[:min(topK, len(r.Videos))] {
		ids = append(ids, v.VideoID)
	}
	s.lists[r.TS] = ids
	return nil
}

func (s *topSink) Flush(context.Context) error { return nil }

// recentLikes ranks videos by their likes of the last 15 minutes, the
// naive trending list, at each 1-minute tick.
func recentLikes(recs []processor.Record) map[int64][]string {
	type like struct {
		video string
		ts    int64
	}
	var likes []like
	var ev event.Event
	for _, r := range recs {
		if event.Decode(r.Value, 0, &ev) != nil || ev.Action != event.Like {
			continue
		}
		likes = append(likes, like{ev.VideoID, ev.TS})
	}
	slices.SortStableFunc(likes, func(a, b like) int { return int(a.ts - b.ts) })
	lists := map[int64][]string{}
	if len(likes) == 0 {
		return lists
	}
	counts := map[string]int{}
	lo, hi := 0, 0
	for T := (likes[0].ts/tickMS + 1) * tickMS; T <= likes[len(likes)-1].ts; T += tickMS {
		for ; hi < len(likes) && likes[hi].ts < T; hi++ {
			counts[likes[hi].video]++
		}
		for ; lo < hi && likes[lo].ts <= T-recentWindowMS; lo++ {
			if counts[likes[lo].video]--; counts[likes[lo].video] == 0 {
				delete(counts, likes[lo].video)
			}
		}
		ids := make([]string, 0, len(counts))
		for id := range counts {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b string) int {
			if counts[a] != counts[b] {
				return counts[b] - counts[a]
			}
			return strings.Compare(a, b)
		})
		lists[T] = ids[:min(topK, len(ids))]
	}
	return lists
}

// detection is a ranking's record against the ground truth.
type detection struct {
	bursts, burstsFound int
	delays              []time.Duration // sorted
	campaigns, listed   map[string]int  // by kind
}

// detect scores lists, the top list of each tick, against the truth.
func detect(lists map[int64][]string, truth []gen.Truth) detection {
	ticks := make([]int64, 0, len(lists))
	for T := range lists {
		ticks = append(ticks, T)
	}
	slices.Sort(ticks)
	d := detection{campaigns: map[string]int{}, listed: map[string]int{}}
	firstListed := func(video string, from, to int64) (int64, bool) {
		i, _ := slices.BinarySearch(ticks, from)
		for ; i < len(ticks) && ticks[i] <= to; i++ {
			if slices.Contains(lists[ticks[i]], video) {
				return ticks[i], true
			}
		}
		return 0, false
	}
	for _, tr := range truth {
		switch tr.Kind {
		case gen.KindBurst:
			d.bursts++
			if T, ok := firstListed(tr.VideoID, tr.Start, tr.End+burstAfterMS); ok {
				d.burstsFound++
				d.delays = append(d.delays, time.Duration(T-tr.Start)*time.Millisecond)
			}
		case gen.KindCampaign, gen.KindSpreadCampaign, gen.KindCrewCampaign:
			d.campaigns[tr.Kind]++
			if _, ok := firstListed(tr.VideoID, tr.Start, tr.End+campaignAfterMS); ok {
				d.listed[tr.Kind]++
			}
		}
	}
	slices.Sort(d.delays)
	return d
}

// row is one line of the table.
func row(name string, d detection) string {
	delay := "never"
	if len(d.delays) > 0 {
		delay = fmt.Sprintf("%.1f min", d.delays[len(d.delays)/2].Minutes())
	}
	s := fmt.Sprintf("| %s | %d/%d | %s |", name, d.burstsFound, d.bursts, delay)
	for _, k := range kinds {
		s += fmt.Sprintf(" %d/%d |", d.listed[k.kind], d.campaigns[k.kind])
	}
	return s
}
