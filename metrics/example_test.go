package metrics_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"virality/metrics"
)

func ExampleNew() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	// At the end of each batch of partition 3:
	m.AddIn(3, 500)
	m.AddApplied(3, 497)
	m.AddDead("malformed", 3)
	m.AddEmitted(metrics.KindScore, 310)
	m.SetLag(3, 0)
	m.ObserveCommit(4 * time.Millisecond)

	n, _ := testutil.GatherAndCount(reg, "virality_events_in_total", "virality_dead_letters_total")
	fmt.Println(n, "series")
	// Output: 2 series
}
