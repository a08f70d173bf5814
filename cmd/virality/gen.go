package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"virality/gen"
)

func init() {
	register("gen", "generate realistic like events (JSON lines) with a ground-truth file", runGen)
}

func runGen(ctx context.Context, args []string) error {
	d := gen.DefaultConfig()
	fs := newFlagSet("gen", "gen [--out FILE] [--truth-out FILE] [flags]")
	out := fs.String("out", "-", "events file (JSON lines); - is standard output, a .gz name is gzipped")
	truthOut := fs.String("truth-out", "", "file for the ground truth: one JSON line per planted burst or campaign (none if empty; .gz is gzipped)")
	seed := fs.Int64("seed", d.Seed, "random seed; the same flags and seed give byte-identical output")
	events := fs.Int("events", d.Events, "lines to write, malformed ones included")
	videos := fs.Int("videos", d.Videos, "background video catalogue size (v0..)")
	users := fs.Int("users", d.Users, "normal users (u0..)")
	start := fs.String("start", d.Start.Format(time.RFC3339), "event time of the first event, RFC 3339")
	duration := fs.Duration("duration", d.Duration, "event-time span of the run")
	unlikeShare := fs.Float64("unlike-share", d.UnlikeShare, "share of events that unlike an earlier like of the same user")
	repeatShare := fs.Float64("repeat-share", d.RepeatShare, "share of events that repeat a like the user already gave")
	strayShare := fs.Float64("stray-unlike-share", d.StrayUnlikeShare, "share of events that unlike a like never given")
	bursts := fs.Int("bursts", d.Bursts, "organic viral bursts (videos vb0..)")
	campaigns := fs.Int("campaigns", d.Campaigns, "bought-like campaigns (videos vc0..)")
	farmAccounts := fs.Int("farm-accounts", d.FarmAccounts, "accounts in the like-farm pool (f0..)")
	jitter := fs.Duration("jitter", d.Jitter, "each event's ts is moved back by up to this much, so lines arrive slightly out of order")
	lateShare := fs.Float64("late-share", d.LateShare, "share of events 10-30 min late (beyond a 5 min allowed lateness)")
	badShare := fs.Float64("bad-share", d.BadShare, "share of malformed lines (broken JSON, missing or oversized ids, unknown action, bad or future ts)")
	// TODO(kafka): --topic and --rate (events/s, paced by event time) will
	// publish to a Kafka topic instead of --out; a later change adds them.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: gen takes only flags (see --help)", fs.Arg(0))
	}
	st, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return usagef("--start %q: want an RFC 3339 time such as 2026-11-01T00:00:00Z", *start)
	}
	cfg := gen.Config{
		Seed: *seed, Events: *events, Videos: *videos, Users: *users,
		Start: st.UTC(), Duration: *duration,
		UnlikeShare: *unlikeShare, RepeatShare: *repeatShare, StrayUnlikeShare: *strayShare,
		Bursts: *bursts, Campaigns: *campaigns, FarmAccounts: *farmAccounts,
		Jitter: *jitter, LateShare: *lateShare, BadShare: *badShare,
	}
	if err := cfg.Validate(); err != nil {
		// Validate names settings as words ("farm accounts"); they are
		// the flags of the same names.
		return usagef("%s", strings.TrimPrefix(err.Error(), "gen: "))
	}

	began := time.Now()
	g, err := gen.New(cfg)
	if err != nil {
		return err
	}
	n, err := genWriteEvents(ctx, *out, g)
	if err != nil {
		return err
	}
	if *truthOut != "" {
		err := genWriteFile(*truthOut, func(w io.Writer) error { return gen.WriteTruth(w, g.Truth()) })
		if err != nil {
			return fmt.Errorf("write truth: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "gen: wrote %d events (%d bursts, %d campaigns) in %.2fs\n",
		n, cfg.Bursts, cfg.Campaigns, time.Since(began).Seconds())
	return nil
}

// genWriteEvents writes every line of g to path, stopping early when ctx is
// done.
func genWriteEvents(ctx context.Context, path string, g *gen.Generator) (int64, error) {
	var n int64
	err := genWriteFile(path, func(w io.Writer) error {
		buf := make([]byte, 0, 512)
		for {
			var ok bool
			if buf, _, ok = g.Next(buf[:0]); !ok {
				return nil
			}
			buf = append(buf, '\n')
			if _, err := w.Write(buf); err != nil {
				return err
			}
			if n++; n%(1<<16) == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("write events to %s: %w", path, err)
	}
	return n, nil
}

// genWriteFile opens path ("-" is standard output; a .gz name is gzipped),
// gives write a buffered writer, and flushes and closes everything.
func genWriteFile(path string, write func(io.Writer) error) (err error) {
	var f io.WriteCloser = genStdout{os.Stdout}
	if path != "-" {
		file, err := os.Create(path)
		if err != nil {
			return err
		}
		f = file
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	var zw *gzip.Writer
	var w io.Writer = f
	if strings.HasSuffix(path, ".gz") {
		zw, _ = gzip.NewWriterLevel(f, gzip.BestSpeed) // a valid level: no error
		w = zw
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

type genStdout struct{ io.Writer }

func (genStdout) Close() error { return nil }
