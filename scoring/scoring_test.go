package scoring

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDecayOrderIndependentAndExactUndo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	likes := make([]int64, 500)
	for i := range likes {
		likes[i] = 1_793_491_200_000 + rng.Int64N(48*3_600_000)
	}
	for h, hl := range HalfLifeMS {
		var a, b []DecaySum
		for _, t := range likes {
			a = DecayAdd(a, t, hl, false)
		}
		perm := rng.Perm(len(likes))
		for _, i := range perm {
			b = DecayAdd(b, likes[i], hl, false)
		}
		if len(a) != len(b) {
			t.Fatalf("half-life %d: %d epochs vs %d", h, len(a), len(b))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("half-life %d: epoch %d differs: %v vs %v", h, i, a[i], b[i])
			}
		}
		// Removing every like, in yet another order, leaves nothing.
		for _, i := range rng.Perm(len(likes)) {
			a = DecayAdd(a, likes[i], hl, true)
		}
		if len(a) != 0 {
			t.Fatalf("half-life %d: %v left after removing every like", h, a)
		}
	}
}

func TestDecayRateOfSteadyStream(t *testing.T) {
	// Ten likes a minute for many half-lives reads as ten a minute.
	for h, hl := range HalfLifeMS {
		var sums []DecaySum
		start := int64(1_793_491_200_000)
		end := start + 30*hl
		for ts := start; ts < end; ts += 6_000 {
			sums = DecayAdd(sums, ts, hl, false)
			sums = DecayPrune(sums, ts, hl)
		}
		if r := DecayRate(sums, end, hl); math.Abs(r-10) > 0.1 {
			t.Errorf("half-life %d: rate %v, want about 10", h, r)
		}
	}
}

func TestDecayHalves(t *testing.T) {
	hl := HalfLifeMS[H5m]
	sums := DecayAdd(nil, 0, hl, false)
	r0, r1 := DecayRate(sums, 0, hl), DecayRate(sums, hl, hl)
	if math.Abs(r1/r0-0.5) > 1e-9 {
		t.Fatalf("after one half-life the rate is %v of what it was", r1/r0)
	}
}

func TestAccountWeight(t *testing.T) {
	const c0 = 60
	for _, tc := range []struct {
		name     string
		recent   int64
		min, max int64
	}{
		{"quiet", 0, WeightOne, WeightOne},
		{"at the threshold", c0, WeightOne, WeightOne},
		{"5% over halves", c0 * 105 / 100, WeightOne / 2, WeightOne / 2},
		{"half again is a thousandth", c0 * 3 / 2, 1, 1},
		{"a farm", 20 * c0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := AccountWeight(tc.recent, c0); w < tc.min || w > tc.max {
				t.Errorf("AccountWeight(%d) = %d, want in [%d, %d]", tc.recent, w, tc.min, tc.max)
			}
		})
	}
	prev := AccountWeight(0, c0)
	for c := int64(1); c < 200; c++ {
		w := AccountWeight(c, c0)
		if w > prev || w < 1 {
			t.Fatalf("weight not falling or below 1 at %d: %d after %d", c, w, prev)
		}
		prev = w
	}
}

func input(ts, first int64, recent, day int64) *Input {
	in := &Input{TS: ts, FirstLike: first, Likes: day, UniqueLikers: day}
	in.Windows[W5m], in.Weighted[W5m] = recent, recent*WeightOne
	in.Windows[W24h], in.Weighted[W24h] = day, day*WeightOne
	return in
}

func TestTrendingModel(t *testing.T) {
	m, err := Lookup("trending")
	if err != nil {
		t.Fatal(err)
	}
	const min = 60_000
	now := int64(1_793_491_200_000) + 48*60*min
	for _, tc := range []struct {
		name string
		in   *Input
		want func(float64) bool
	}{
		{"nothing recent is not surprising", input(now, now-600*min, 0, 100), func(s float64) bool { return s == 0 }},
		{"three likes on a new video are shrunk", input(now, now-min, 3, 3), func(s float64) bool { return s > 2.5 && s < 3.2 }},
		{"a steady video is explained by its baseline", input(now, now-1440*min, 24, 7000), func(s float64) bool { return s < 1 }},
		{"a burst on a quiet video is very surprising", input(now, now-1440*min, 200, 300), func(s float64) bool { return s > 50 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s := m.Score(tc.in); !tc.want(s) {
				t.Errorf("score %v", s)
			}
		})
	}
	// More recent likes never score lower.
	prev := -1.0
	for n := int64(0); n < 100; n++ {
		s := m.Score(input(now, now-120*min, n, 100+n))
		if s < prev {
			t.Fatalf("score fell from %v to %v at %d recent likes", prev, s, n)
		}
		prev = s
	}
}

func TestBaselines(t *testing.T) {
	const h = 3_600_000
	in := &Input{TS: 10 * h, FirstLike: 8 * h, Likes: 101}
	if got, want := (HN{}).Score(in), 100/math.Pow(4, 1.8); math.Abs(got-want) > 1e-12 {
		t.Errorf("hn = %v, want %v", got, want)
	}
	if got, want := (RedditHot{}).Score(in), 2.0043213737826426+(float64(8*h)/1000-1134028003)/45000; math.Abs(got-want) > 1e-9 {
		t.Errorf("reddit-hot = %v, want %v", got, want)
	}
	if _, err := Lookup("nope"); err == nil {
		t.Error("Lookup of an unknown model succeeded")
	}
}

// DampedLikes is the likes a window lost to damping, rounded up: 0 exactly
// when every like counted fully, never more than the window's likes.
func TestDampedLikes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		likes    int64
		weighted int64
		want     int64
	}{
		{"no likes", 0, 0, 0},
		{"all normal", 40, 40 * WeightOne, 0},
		{"one like at half weight", 3, 2*WeightOne + WeightOne/2, 1},
		{"a sliver lost shows as a like", 10, 10*WeightOne - 1, 1},
		{"exactly two lost", 5, 3 * WeightOne, 2},
		{"all at the floor", 40, 40, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{}
			in.Windows[W5m], in.Weighted[W5m] = tc.likes, tc.weighted
			if got := in.DampedLikes(W5m); got != tc.want {
				t.Errorf("DampedLikes = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDampingNames(t *testing.T) {
	for _, tc := range []struct {
		d    Damping
		want string
	}{
		{0, ""},
		{DampedAccountRate, "account_rate"},
		{DampedAccountRate | 1<<7, "account_rate"}, // bits without a signal name nothing
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("Damping(%d) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
