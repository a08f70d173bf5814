package gen_test

import (
	"fmt"
	"os"
	"time"

	"github.com/viralityhq/virality/gen"
)

// A minute of plain traffic: three likes.
func Example() {
	c := gen.DefaultConfig()
	c.Events, c.Videos, c.Users = 3, 100, 1000
	c.Duration = time.Minute
	c.Bursts, c.Campaigns, c.FarmAccounts = 0, 0, 0
	if _, err := c.Run(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"event_id":"e0","video_id":"v48","user_id":"u227","creator_id":"c8","action":"like","ts":"2026-11-01T00:00:09.052Z","region":"JP"}
	// {"event_id":"e1","video_id":"v14","user_id":"u525","creator_id":"c4","action":"like","ts":"2026-11-01T00:00:37.071Z","region":"MX"}
	// {"event_id":"e2","video_id":"v17","user_id":"u988","creator_id":"c7","action":"like","ts":"2026-11-01T00:00:48.510Z","region":"GB"}
}

// Two hours with one viral burst and one bought-like campaign: the ground
// truth is known before the first event.
func ExampleGenerator_Truth() {
	c := gen.DefaultConfig()
	c.Events, c.Videos, c.Users, c.FarmAccounts = 20_000, 1000, 20_000, 300
	c.Duration = 2 * time.Hour
	c.Bursts, c.Campaigns = 1, 1
	g, err := gen.New(c)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := gen.WriteTruth(os.Stdout, g.Truth()); err != nil {
		fmt.Println(err)
	}
	line, ts, _ := g.Next(nil)
	fmt.Printf("%s at %d\n", line, ts)
	// Output:
	// {"kind":"burst","video_id":"vb0","start":1793493843769,"peak":1793495686486,"end":1793498397573,"likes":2174,"accounts":2174}
	// {"kind":"campaign","video_id":"vc0","start":1793497212431,"peak":1793497212431,"end":1793497646836,"likes":300,"accounts":300}
	// {"event_id":"e0","video_id":"v488","user_id":"u3652","creator_id":"c88","action":"like","ts":"2026-10-31T23:59:59.293Z","region":"MX"} at 1793491199293
}

// Lockstep crews: accounts that like at human rates, named as people,
// that deliver campaigns together, the same crews again and again.
func ExampleGenerator_Crews() {
	c := gen.DefaultConfig()
	c.Events, c.Videos, c.Users, c.Duration = 200_000, 5000, 50_000, 6*time.Hour
	c.Bursts, c.Campaigns, c.FarmAccounts, c.FarmRate = 0, 0, 100, 0.5
	c.CrewCampaigns, c.CrewAccounts = 4, 150
	g, err := gen.New(c)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, cr := range g.Crews() {
		fmt.Printf("crew %d: %d accounts (%s, ...), campaigns %v\n", i, len(cr.Accounts), cr.Accounts[0], cr.Videos)
	}
	for _, tr := range g.Truth() {
		fmt.Printf("%s %s: %d likes in %v\n", tr.Kind, tr.VideoID, tr.Likes, (time.Duration(tr.End-tr.Start) * time.Millisecond).Round(time.Second))
	}
	// Output:
	// crew 0: 50 accounts (u50002, ...), campaigns [vl0 vl1 vl2 vl3]
	// crew 1: 32 accounts (u50000, ...), campaigns [vl0 vl1 vl2 vl3]
	// crew 2: 45 accounts (u50001, ...), campaigns [vl0 vl1 vl2 vl3]
	// crew 3: 23 accounts (u50008, ...), campaigns [vl1 vl2 vl3]
	// crew_campaign vl2: 136 likes in 6m53s
	// crew_campaign vl3: 137 likes in 6m44s
	// crew_campaign vl1: 129 likes in 4m54s
	// crew_campaign vl0: 116 likes in 7m28s
}
