package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenAdversaries: the adversaries' flags reach the generator, their
// campaigns are in the ground truth by kind, and a setting that cannot
// work is refused with the flag's name.
func TestGenAdversaries(t *testing.T) {
	dir := t.TempDir()
	out, truthOut := filepath.Join(dir, "likes.jsonl"), filepath.Join(dir, "truth.jsonl")
	base := []string{"--events", "250000", "--videos", "20000", "--users", "100000", "--duration", "6h",
		"--bursts", "1", "--campaigns", "1", "--farm-accounts", "300", "--farm-rate", "0.5",
		"--spread-campaigns", "2", "--spread-accounts", "300", "--crew-campaigns", "3", "--crew-accounts", "400"}
	if err := runGen(context.Background(), append(base, "--out", out, "--truth-out", truthOut)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(truthOut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]int{}
	videos := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var tr struct {
			Kind    string `json:"kind"`
			VideoID string `json:"video_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
			t.Fatal(err)
		}
		kinds[tr.Kind]++
		videos[tr.VideoID] = tr.Kind
	}
	want := map[string]int{"burst": 1, "campaign": 1, "spread_campaign": 2, "crew_campaign": 3}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("truth has %d of kind %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	if videos["vs1"] != "spread_campaign" || videos["vl2"] != "crew_campaign" {
		t.Errorf("truth videos %v: want vs0.. for spread campaigns and vl0.. for crew campaigns", videos)
	}
	likes, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Crew accounts are named as people, after the users.
	if !strings.Contains(string(likes), `"video_id":"vl0","user_id":"u1`) {
		t.Error("no like of vl0 by a crew account (u100000..)")
	}

	err = runGen(context.Background(), append(base, "--crew-accounts", "10", "--out", out))
	if err == nil || !strings.Contains(err.Error(), "crew campaigns need at least 20 crew accounts") || strings.HasPrefix(err.Error(), "gen: ") {
		t.Errorf("10 crew accounts: %v, want a usage error naming crew accounts", err)
	}
}
