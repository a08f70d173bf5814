package gen

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// adversaryConfig is six hours with every adversary: a rate farm at a
// chosen rate, a farm spread over every region, and lockstep crews.
func adversaryConfig() Config {
	c := testConfig()
	c.Events = 300_000
	c.FarmAccounts = 300
	c.FarmRate = 0.5
	c.SpreadCampaigns, c.SpreadAccounts = 3, 300
	c.CrewCampaigns, c.CrewAccounts = 8, 400
	return c
}

var adversaryOnce = sync.OnceValue(func() decoded {
	lines, truth, err := decodeAll(adversaryConfig())
	return decoded{lines, truth, err}
})

func adversarySample(t *testing.T) ([]line, []Truth) {
	t.Helper()
	s := adversaryOnce()
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.lines, s.truth
}

// account says which population a user id belongs to in adversaryConfig.
func account(c Config, id string) string {
	n, _ := strconv.Atoi(id[1:])
	switch {
	case id[0] == 'f' && n < c.FarmAccounts:
		return "farm"
	case id[0] == 'f':
		return "spread"
	case n >= c.Users:
		return "crew"
	}
	return "human"
}

// TestAdversaryTruth: every planted item of every kind is in the truth
// with the likes, accounts and times of its lines, liked by the accounts
// of its kind.
func TestAdversaryTruth(t *testing.T) {
	lines, truth := adversarySample(t)
	c := adversaryConfig()
	type agg struct {
		likes      int
		users      map[string]bool
		from       map[string]bool // populations that liked
		start, end int64
	}
	got := map[string]*agg{}
	for i, l := range lines {
		if !l.ok {
			t.Fatalf("line %d is not a well-formed event: %s", i, l.raw)
		}
		v := *l.e.VideoID
		if len(v) < 2 || v[1] < 'a' {
			continue
		}
		a := got[v]
		if a == nil {
			a = &agg{users: map[string]bool{}, from: map[string]bool{}, start: math.MaxInt64, end: math.MinInt64}
			got[v] = a
		}
		if *l.e.Action != "like" {
			t.Fatalf("line %d: a planted video is unliked: %s", i, l.raw)
		}
		a.likes++
		a.users[*l.e.UserID] = true
		a.from[account(c, *l.e.UserID)] = true
		a.start, a.end = min(a.start, l.ts), max(a.end, l.ts)
	}
	kinds := map[string]int{}
	for _, tr := range truth {
		kinds[tr.Kind]++
		a := got[tr.VideoID]
		if a == nil {
			t.Errorf("%s %s: no likes in the output", tr.Kind, tr.VideoID)
			continue
		}
		if a.likes != tr.Likes || len(a.users) != tr.Accounts || a.start != tr.Start || a.end != tr.End {
			t.Errorf("%s: output has %d likes from %d accounts in [%d, %d]; truth %+v", tr.VideoID, a.likes, len(a.users), a.start, a.end, tr)
		}
		want := map[string]struct{ prefix, from string }{
			KindBurst:          {"vb", "human"},
			KindCampaign:       {"vc", "farm"},
			KindSpreadCampaign: {"vs", "spread"},
			KindCrewCampaign:   {"vl", "crew"},
		}[tr.Kind]
		if !strings.HasPrefix(tr.VideoID, want.prefix) || len(a.from) != 1 || !a.from[want.from] {
			t.Errorf("%s %s: liked by %v, want a %s video liked by %s accounts only", tr.Kind, tr.VideoID, a.from, want.prefix, want.from)
		}
		if isCampaign(tr.Kind) {
			span := time.Duration(tr.End-tr.Start) * time.Millisecond
			if tr.Peak != tr.Start || span > 10*time.Minute+c.Jitter || tr.Accounts != tr.Likes {
				t.Errorf("%s truth %+v (%s long): want one like an account, from its first minute, within 10m", tr.Kind, tr, span)
			}
		}
	}
	if len(got) != len(truth) {
		t.Errorf("output has %d planted videos, truth %d", len(got), len(truth))
	}
	for kind, n := range map[string]int{KindBurst: c.Bursts, KindCampaign: c.Campaigns, KindSpreadCampaign: c.SpreadCampaigns, KindCrewCampaign: c.CrewCampaigns} {
		if kinds[kind] != n {
			t.Errorf("%d %s in the truth, want %d", kinds[kind], kind, n)
		}
	}
}

// TestAdversariesDeterministic: a seed gives the same lines, truth and
// crews every time, another seed others; turning the adversaries on leaves
// the bursts and rate-farm campaigns as they were.
func TestAdversariesDeterministic(t *testing.T) {
	c := adversaryConfig()
	c.Events = 250_000
	run := func(c Config) ([]byte, *Generator) {
		t.Helper()
		g, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteTruth(&b, g.Truth()); err != nil {
			t.Fatal(err)
		}
		for _, cr := range g.Crews() {
			b.WriteString(strings.Join(cr.Accounts, ",") + " " + strings.Join(cr.Videos, ",") + "\n")
		}
		var line []byte
		for {
			var ok bool
			if line, _, ok = g.Next(line[:0]); !ok {
				return b.Bytes(), g
			}
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	a, ga := run(c)
	if b, _ := run(c); !bytes.Equal(a, b) {
		t.Fatal("the same config gave different output")
	}
	c2 := c
	c2.Seed++
	if b, _ := run(c2); bytes.Equal(a, b) {
		t.Fatal("different seeds gave the same output")
	}
	off := c
	off.SpreadCampaigns, off.SpreadAccounts, off.CrewCampaigns, off.CrewAccounts = 0, 0, 0, 0
	_, g0 := run(off)
	var with []Truth
	for _, tr := range ga.Truth() {
		if tr.Kind == KindBurst || tr.Kind == KindCampaign {
			with = append(with, tr)
		}
	}
	if !slices.Equal(with, g0.Truth()) {
		t.Errorf("bursts and campaigns differ with the adversaries on:\n%+v\n%+v", with, g0.Truth())
	}
}

// TestCrewsReuseAccounts: crews are disjoint groups of 20-60 crew
// accounts; each crew campaign is liked by most of the accounts of 3-6
// crews, each crew within a few minutes; and a crew serves campaign after
// campaign with the same accounts.
func TestCrewsReuseAccounts(t *testing.T) {
	lines, truth := adversarySample(t)
	c := adversaryConfig()
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	crews := g.Crews()
	crewOf := map[string]int{}
	for i, cr := range crews {
		if len(cr.Accounts) < crewSizeMin || len(cr.Accounts) > crewSizeMax {
			t.Errorf("crew %d has %d accounts, want %d-%d", i, len(cr.Accounts), crewSizeMin, crewSizeMax)
		}
		for _, u := range cr.Accounts {
			if _, dup := crewOf[u]; dup || account(c, u) != "crew" {
				t.Fatalf("crew %d: account %s is in another crew or not a crew account", i, u)
			}
			crewOf[u] = i
		}
	}
	if len(crewOf) != c.CrewAccounts {
		t.Fatalf("crews hold %d accounts, want all %d", len(crewOf), c.CrewAccounts)
	}

	// likers[video][crew] = like times of that crew's accounts.
	likers := map[string]map[int][]int64{}
	for _, l := range lines {
		v := *l.e.VideoID
		if !strings.HasPrefix(v, "vl") {
			continue
		}
		if likers[v] == nil {
			likers[v] = map[int][]int64{}
		}
		i := crewOf[*l.e.UserID]
		likers[v][i] = append(likers[v][i], l.ts)
	}
	served := make([][]string, len(crews))
	for _, tr := range truth {
		if tr.Kind != KindCrewCampaign {
			continue
		}
		by := likers[tr.VideoID]
		if len(by) < crewsPerCampaignMin || len(by) > crewsPerCampaignMax {
			t.Errorf("%s: liked by %d crews, want %d-%d", tr.VideoID, len(by), crewsPerCampaignMin, crewsPerCampaignMax)
		}
		for i, ts := range by {
			served[i] = append(served[i], tr.VideoID)
			slices.Sort(ts)
			if len(ts) < len(crews[i].Accounts)*7/10 {
				t.Errorf("%s: %d of crew %d's %d accounts liked it, want most", tr.VideoID, len(ts), i, len(crews[i].Accounts))
			}
			if d := time.Duration(ts[len(ts)-1]-ts[0]) * time.Millisecond; d > time.Duration(crewWindowMax*float64(time.Minute))+c.Jitter {
				t.Errorf("%s: crew %d's likes span %v, want within %v minutes", tr.VideoID, i, d, crewWindowMax)
			}
		}
	}
	reused := 0
	for i, cr := range crews {
		slices.Sort(served[i])
		if !slices.Equal(served[i], slices.Sorted(slices.Values(cr.Videos))) {
			t.Errorf("crew %d liked campaigns %v, Crews says %v", i, served[i], cr.Videos)
		}
		if len(cr.Videos) < 2 {
			continue
		}
		reused++
		// The same accounts again: most of the crew liked both of any two
		// of its campaigns.
		both := 0
		for _, u := range cr.Accounts {
			n := 0
			for _, v := range cr.Videos[:2] {
				for _, l := range lines {
					if *l.e.VideoID == v && *l.e.UserID == u {
						n++
						break
					}
				}
			}
			if n == 2 {
				both++
			}
		}
		if both < len(cr.Accounts)/2 {
			t.Errorf("crew %d: %d of %d accounts liked both %v", i, both, len(cr.Accounts), cr.Videos[:2])
		}
	}
	if reused < len(crews)*3/4 {
		t.Errorf("%d of %d crews served more than one campaign, want most", reused, len(crews))
	}
}

// TestAdversaryRates: lockstep crew accounts like at human rates, over
// the run and in any hour, while the rate farm likes at the rate asked.
func TestAdversaryRates(t *testing.T) {
	lines, _ := adversarySample(t)
	c := adversaryConfig()
	total := map[string]int{}
	hourly := map[string]int{}
	for _, l := range lines {
		if *l.e.Action != "like" {
			continue
		}
		u := *l.e.UserID
		total[u]++
		hourly[u+" "+strconv.FormatInt((l.ts-c.Start.UnixMilli())/3_600_000, 10)]++
	}
	counts := map[string][]int{}
	for u, n := range total {
		counts[account(c, u)] = append(counts[account(c, u)], n)
	}
	peak := map[string]int{}
	for k, n := range hourly {
		a := account(c, k[:strings.IndexByte(k, ' ')])
		peak[a] = max(peak[a], n)
	}
	for _, s := range counts {
		slices.Sort(s)
	}
	perMin := func(s []int, q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / c.Duration.Minutes() }
	humans, crews, farm := counts["human"], counts["crew"], counts["farm"]
	t.Logf("likes/min: humans median %.4f max %.4f, most in an hour %d; crews median %.4f max %.4f, most in an hour %d; farm median %.4f (asked %v); human ceiling %.4f",
		perMin(humans, 0.5), perMin(humans, 1), peak["human"], perMin(crews, 0.5), perMin(crews, 1), peak["crew"], perMin(farm, 0.5), c.FarmRate, c.HumanCeiling()/60)
	if len(crews) != c.CrewAccounts {
		t.Errorf("%d crew accounts liked, want all %d", len(crews), c.CrewAccounts)
	}
	if perMin(crews, 1) > perMin(humans, 1) || peak["crew"] > peak["human"] {
		t.Errorf("crew accounts like faster than any human: %.4f/min at most over the run and %d in an hour, against %.4f and %d",
			perMin(crews, 1), peak["crew"], perMin(humans, 1), peak["human"])
	}
	if perMin(crews, 0.5) > c.HumanCeiling()/60 {
		t.Errorf("crew accounts like %.4f/min (median), above the human ceiling %.4f", perMin(crews, 0.5), c.HumanCeiling()/60)
	}
	if perMin(crews, 0.5) < perMin(humans, 0.5) {
		t.Errorf("crew accounts are quieter than most people (median %.4f/min against %.4f): they should look like active people", perMin(crews, 0.5), perMin(humans, 0.5))
	}
	if m := perMin(farm, 0.5); m < 0.85*c.FarmRate || m > 1.2*c.FarmRate {
		t.Errorf("rate-farm accounts like %.4f/min (median), want about %v", m, c.FarmRate)
	}
}

// TestSpreadRegions: a spread campaign's likes come from every region,
// none of them dominant; a rate-farm campaign's from one or two.
func TestSpreadRegions(t *testing.T) {
	lines, truth := adversarySample(t)
	regionsOf := map[string]map[string]int{}
	for _, l := range lines {
		v := *l.e.VideoID
		if strings.HasPrefix(v, "vs") || strings.HasPrefix(v, "vc") {
			if regionsOf[v] == nil {
				regionsOf[v] = map[string]int{}
			}
			regionsOf[v][*l.e.Region]++
		}
	}
	for _, tr := range truth {
		rs := regionsOf[tr.VideoID]
		most := 0
		for _, n := range rs {
			most = max(most, n)
		}
		switch tr.Kind {
		case KindSpreadCampaign:
			if len(rs) != len(regions) || float64(most) > 0.25*float64(tr.Likes) {
				t.Errorf("%s: likes by region %v, want all %d regions, none above a quarter", tr.VideoID, rs, len(regions))
			}
		case KindCampaign:
			if len(rs) > 2 {
				t.Errorf("%s: likes by region %v, want the rate farm's one or two", tr.VideoID, rs)
			}
		}
	}
}

// TestAdversaryPlants: spread and crew campaigns planted at chosen times
// start there and are named after the random ones.
func TestAdversaryPlants(t *testing.T) {
	c := adversaryConfig()
	c.Events = 250_000
	c.Plants = []Plant{
		{Kind: KindCrewCampaign, At: 2 * time.Hour},
		{Kind: KindSpreadCampaign, At: 3 * time.Hour},
	}
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	byVideo := map[string]Truth{}
	for _, tr := range g.Truth() {
		byVideo[tr.VideoID] = tr
	}
	start := c.Start.UnixMilli()
	for i, video := range []string{"vl" + strconv.Itoa(c.CrewCampaigns), "vs" + strconv.Itoa(c.SpreadCampaigns)} {
		tr, ok := byVideo[video]
		at := start + c.Plants[i].At.Milliseconds()
		if !ok || tr.Kind != c.Plants[i].Kind || tr.Start < at-c.Jitter.Milliseconds() || tr.Start > at+time.Minute.Milliseconds() {
			t.Errorf("plant %d: want %s %s from %v, truth %+v", i, c.Plants[i].Kind, video, c.Plants[i].At, tr)
		}
	}
}

func TestAdversaryValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"adversaries", func(*Config) {}, ""},
		{"negative farm rate", func(c *Config) { c.FarmRate = -1 }, "farm rate must be in"},
		{"NaN farm rate", func(c *Config) { c.FarmRate = math.NaN() }, "farm rate must be in"},
		{"farm too fast for the events", func(c *Config) { c.FarmRate = 5 }, "more than half of"},
		{"spread campaigns without a spread farm", func(c *Config) { c.SpreadAccounts = 100 }, "spread campaigns need at least 300 spread accounts"},
		{"crew campaigns without crews", func(c *Config) { c.CrewAccounts = 10 }, "crew campaigns need at least 20 crew accounts"},
		{"negative crew campaigns", func(c *Config) { c.CrewCampaigns = -1 }, "crew campaigns must be >= 0"},
		{"negative spread accounts", func(c *Config) { c.SpreadAccounts = -1 }, "spread and crew accounts must be >= 0"},
		{"too many accounts", func(c *Config) { c.CrewAccounts = idMax }, "at most"},
		{"planted crew campaign with a rate", func(c *Config) { c.Plants = []Plant{{Kind: KindCrewCampaign, At: time.Hour, Rate: 3}} }, "a campaign has no rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := adversaryConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
