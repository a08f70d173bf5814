package metrics_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viralityhq/virality/metrics"
)

func ExampleNew() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	// At the end of each batch of partition 3:
	m.AddIn(3, 500)
	m.AddApplied(3, 497)
	m.AddDead("bad_json", 3)
	m.AddEmitted(metrics.KindScore, 310)
	m.SetLag(3, 0)
	m.ObserveCommit(4 * time.Millisecond)
	watermark := int64(1_790_000_000_000) // epoch ms, as the engine keeps it
	m.SetWatermark(3, watermark)
	m.SetEventTimeLag(3, time.UnixMilli(1_790_000_030_000).Sub(time.UnixMilli(watermark)))

	// Every dead-letter reason has a series from the start, at 0 until used.
	n, _ := testutil.GatherAndCount(reg, "virality_events_in_total", "virality_dead_letters_total")
	fmt.Println(n, "series")
	// Output: 12 series
}
