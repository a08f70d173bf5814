package gen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRisingCreators: planted rising creators have their own creator ids
// and videos, their truth counts their likes, and the rest of the output
// draws the same bursts and campaigns as without them.
func TestRisingCreators(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Events = 100_000
	cfg.Videos = 5_000
	cfg.Users = 30_000
	cfg.Duration = 4 * time.Hour
	cfg.Bursts, cfg.Campaigns, cfg.FarmAccounts = 3, 3, 300
	cfg.RisingCreators = 3
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	likes := map[string]int{}
	var buf []byte
	for {
		line, _, ok := g.Next(buf[:0])
		if !ok {
			break
		}
		var e struct {
			Video   string `json:"video_id"`
			Creator string `json:"creator_id"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			continue
		}
		isVideo, isCreator := strings.HasPrefix(e.Video, "vr"), strings.HasPrefix(e.Creator, "cr")
		if isVideo != isCreator {
			t.Fatalf("video %s of creator %s", e.Video, e.Creator)
		}
		if isCreator {
			if !strings.HasPrefix(e.Video, "vr"+e.Creator[2:]+"-") {
				t.Fatalf("video %s of creator %s", e.Video, e.Creator)
			}
			likes[e.Creator]++
		}
	}
	n := 0
	for _, tr := range g.Truth() {
		if tr.Kind != KindRisingCreator {
			continue
		}
		n++
		if tr.Likes < 300 || likes[tr.CreatorID] != tr.Likes || tr.Start >= tr.Peak || tr.Peak >= tr.End || tr.VideoID != "" {
			t.Errorf("truth %+v: %d likes in the output", tr, likes[tr.CreatorID])
		}
	}
	if n != cfg.RisingCreators {
		t.Fatalf("%d rising creators in the truth, want %d", n, cfg.RisingCreators)
	}

	// Bursts and campaigns are the same as without rising creators.
	cfg.RisingCreators = 0
	g0, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	for _, tr := range g0.Truth() {
		json.NewEncoder(&a).Encode(tr)
	}
	for _, tr := range g.Truth() {
		if tr.Kind != KindRisingCreator {
			json.NewEncoder(&b).Encode(tr)
		}
	}
	if a.String() != b.String() {
		t.Errorf("bursts and campaigns differ with rising creators:\n%s\n%s", a.String(), b.String())
	}
}
