// Command handloop is the reference of issue 9: the twenty-line program a
// data engineer writes before reaching for a stream processor. It reads a
// likes JSON-lines file, decodes each line with encoding/json and keeps one
// like per (user, video) in a Go map: no persistence, no windows, no
// scores, no trending. `virality backfill` is meant to beat it on the same
// file (bench/handloop.sh times both in one run).
//
//	go run ./bench/handloop likes.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type like struct {
	EventID   string `json:"event_id"`
	VideoID   string `json:"video_id"`
	UserID    string `json:"user_id"`
	CreatorID string `json:"creator_id"`
	Action    string `json:"action"`
	TS        string `json:"ts"`
	Region    string `json:"region"`
}

type pairKey struct{ user, video string }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: handloop LIKES.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	start := time.Now()
	likes := map[pairKey]like{}
	n, bad := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		n++
		var l like
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			bad++
			continue
		}
		k := pairKey{l.UserID, l.VideoID}
		if _, ok := likes[k]; !ok && l.Action == "like" {
			likes[k] = l
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	el := time.Since(start)
	fmt.Printf("handloop: %d records (%d bad), %d pairs in %v, %.0f rec/s\n",
		n, bad, len(likes), el.Round(time.Millisecond), float64(n)/el.Seconds())
}
