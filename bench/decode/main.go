// Command decode is the ceiling for B1: it reads a JSON-lines file with the
// same source as backfill and decodes every line, doing nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/processor"
)

func main() {
	src, err := jsonl.OpenSource(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	var recs []processor.Record
	var ev event.Event
	n, bad := 0, 0
	for {
		recs, err = src.Next(context.Background(), recs)
		for i := range recs {
			if event.Decode(recs[i].Value, 0, &ev) != nil {
				bad++
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	el := time.Since(start)
	fmt.Printf("decode: %d records (%d bad) in %v, %.0f rec/s\n", n, bad, el.Round(time.Millisecond), float64(n)/el.Seconds())
}
