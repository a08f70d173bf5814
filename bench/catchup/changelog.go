package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// kindSize is what the changelog holds of one kind of state.
type kindSize struct {
	kind           string
	records, bytes int64 // keys and values
}

// stateKind names the kind of state a changelog record changes: the kind
// byte of a partition's store key ('P', the partition's 4 bytes, the
// kind), with " deleted" for a tombstone, and "other" for keys of
// another shape.
func stateKind(key, value []byte) string {
	k := "other"
	if len(key) > 5 && key[0] == 'P' {
		k = string(key[5:6])
	}
	if value == nil {
		k += " deleted"
	}
	return k
}

// changelogSizes reads a changelog topic whole and returns its records and
// bytes by kind of state, the largest first.
func changelogSizes(ctx context.Context, kc kafkaio.Config, topic string, partitions int) ([]kindSize, error) {
	by := map[string]*kindSize{}
	for p := range partitions {
		if err := countPartition(ctx, kc, topic, p, by); err != nil {
			return nil, err
		}
	}
	var out []kindSize
	for _, s := range by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].bytes > out[j].bytes || out[i].bytes == out[j].bytes && out[i].kind < out[j].kind
	})
	return out, nil
}

// countPartition adds partition p of the changelog topic, read whole, to by.
func countPartition(ctx context.Context, kc kafkaio.Config, topic string, p int, by map[string]*kindSize) error {
	first, end, err := kafkaio.FirstLastOffsets(ctx, kc, topic, p)
	if err != nil {
		return err
	}
	src, err := kafkaio.NewPartitionSource(kc, topic, p, first)
	if err != nil {
		return err
	}
	defer src.Close()
	src.MaxBytes = 4 << 20
	var recs []processor.Record
	for src.Offset() < end {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		recs, err = src.Next(fctx, recs)
		cancel()
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
		for _, r := range recs {
			k := stateKind(r.Key, r.Value)
			s := by[k]
			if s == nil {
				s = &kindSize{kind: k}
				by[k] = s
			}
			s.records++
			s.bytes += int64(len(r.Key) + len(r.Value))
		}
	}
	return nil
}

// printChangelog writes the sizes, and their total per like applied.
func printChangelog(w io.Writer, sizes []kindSize, likes int64) {
	var total int64
	for _, s := range sizes {
		total += s.bytes
	}
	fmt.Fprintf(w, "catchup changelog: %.1f MB, %.0f bytes a like applied\n", float64(total)/1e6, float64(total)/float64(max(likes, 1)))
	for _, s := range sizes {
		fmt.Fprintf(w, "catchup changelog: %-10s %9d records %8.1f MB (%4.1f%%)\n", s.kind, s.records, float64(s.bytes)/1e6, 100*float64(s.bytes)/float64(max(total, 1)))
	}
}
