package scoring_test

import (
	"fmt"

	"github.com/viralityhq/virality/scoring"
)

func ExampleLookup() {
	m, err := scoring.Lookup(scoring.DefaultModel)
	if err != nil {
		panic(err)
	}
	// A video first liked a minute ago, with three likes since.
	ts := int64(1_793_491_260_000)
	in := scoring.Input{TS: ts, FirstLike: ts - 60_000, Likes: 3, UniqueLikers: 3}
	in.Windows[scoring.W5m], in.Weighted[scoring.W5m] = 3, 3*scoring.WeightOne
	in.Windows[scoring.W24h], in.Weighted[scoring.W24h] = 3, 3*scoring.WeightOne
	fmt.Printf("%s: %.2f\n", m.Name(), m.Score(&in))
	// Output: trending: 2.79
}
