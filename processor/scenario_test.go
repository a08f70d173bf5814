package processor

import (
	"context"

	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestScenarios runs the semantics scenarios in ../testdata/scenarios: input
// records in a compact form, then the records the engine emits.
//
//	run [every-change] [lateness=D] [skew=D] [now=TIME] [tick=D] [topk=N]
//	    [horizon=D] [threshold=F] [interval=D] [model=M] [accounts=N]
//	    [show=scores,trending,dead,final]
//
// accounts is the account threshold (likes an hour). A score line shows
// damped=5M/1H reason="..." (damped_likes_5m, damped_likes_1h,
// damped_reason) when some of the video's likes were damped.
//
// "final" is the last score record of each video at the end of the input,
// which always equals the video's state.
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "../testdata/scenarios", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "run" {
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			cfg := DefaultConfig()
			cfg.TrendingEvery = 1 // scenarios show every tick unless they say
			show := map[string]bool{"scores": true, "trending": true, "dead": true, "final": true}
			for _, arg := range d.CmdArgs {
				val := ""
				if len(arg.Vals) > 0 {
					val = arg.Vals[0]
				}
				dur := func() time.Duration {
					v, err := time.ParseDuration(val)
					if err != nil {
						d.Fatalf(t, "%s: %v", arg.Key, err)
					}
					return v
				}
				switch arg.Key {
				case "every-change":
					cfg.EmitEveryChange = true
				case "lateness":
					cfg.Lateness = dur()
				case "skew":
					cfg.FutureSkew = dur()
				case "now":
					ts, err := parseClock(val)
					if err != nil {
						d.Fatalf(t, "now: %v", err)
					}
					cfg.Now = ts
				case "tick":
					cfg.Tick = dur()
				case "trending-every":
					n, err := strconv.Atoi(val)
					if err != nil {
						d.Fatalf(t, "trending-every: %v", err)
					}
					cfg.TrendingEvery = n
				case "horizon":
					cfg.TrendingHorizon = dur()
				case "topk":
					n, _ := strconv.Atoi(val)
					cfg.TopK = n
				case "threshold":
					f, _ := strconv.ParseFloat(val, 64)
					cfg.EmitThreshold = f
				case "interval":
					cfg.EmitInterval = dur()
				case "model":
					cfg.Model = val
				case "accounts":
					n, err := strconv.Atoi(val)
					if err != nil {
						d.Fatalf(t, "accounts: %v", err)
					}
					cfg.AccountThreshold = n
				case "min-likers":
					n, err := strconv.Atoi(val)
					if err != nil {
						d.Fatalf(t, "min-likers: %v", err)
					}
					cfg.TrendingMinLikers = n
				case "min-age":
					cfg.TrendingMinAge = dur()
				case "show":
					show = map[string]bool{}
					for _, v := range arg.Vals {
						for _, part := range strings.Split(v, ",") {
							show[part] = true
						}
					}
				default:
					d.Fatalf(t, "unknown argument %q", arg.Key)
				}
			}
			recs, err := parseInput(d.Input)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			out := runRecords(t, cfg, recs)
			var b strings.Builder
			if show["scores"] {
				for _, m := range out.scores.msgs {
					fmt.Fprintln(&b, scoreLine(m.Value))
				}
			}
			if show["trending"] {
				for _, m := range out.trending.msgs {
					fmt.Fprintln(&b, trendingLine(m.Value))
				}
			}
			if show["dead"] {
				for _, m := range out.dead.msgs {
					fmt.Fprintln(&b, deadLine(m))
				}
			}
			if show["final"] {
				last := lastScores(out.scores.msgs)
				for _, id := range sortedKeys(last) {
					fmt.Fprintln(&b, "final", strings.TrimPrefix(scoreLine(last[id]), "score "))
				}
			}
			return b.String()
		})
	})
}

// TestDeadLetterInvalidUTF8 covers the reason a scenario file cannot hold:
// raw bytes that are not UTF-8. The record keeps its original bytes and
// its source position in the dead letters.
func TestDeadLetterInvalidUTF8(t *testing.T) {
	value := []byte("{\"video_id\":\"v\xff1\",\"user_id\":\"u1\",\"ts\":1793491200000}")
	rec := Record{Value: value, Topic: "likes", Partition: 3, Offset: 0}
	out := newTestOutputs()
	g := openGroup(t, DefaultConfig(), openMemStore(t), out)
	b := &Batch{}
	b.Fill([]Record{rec}, 0)
	b.Decode()
	if err := g.TakeInput(context.Background(), 0, b); err != nil {
		t.Fatal(err)
	}
	if len(out.dead.msgs) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(out.dead.msgs))
	}
	m := out.dead.msgs[0]
	if got := deadLine(m); got != "dead invalid_utf8 offset=0" {
		t.Errorf("got %q", got)
	}
	if string(m.Value) != string(value) {
		t.Errorf("dead letter value %q, want the original %q", m.Value, value)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	if h[HeaderTopic] != "likes" || h[HeaderPartition] != "3" || h[HeaderError] == "" {
		t.Errorf("headers %v", h)
	}
}
