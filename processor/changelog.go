package processor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/viralityhq/virality/store"
)

// Changelog receives every partition's changes of state at each commit,
// and acknowledges them before the state is committed locally, so that a
// partition's state can be rebuilt elsewhere (the live service's
// compacted changelog topic, one partition per partition of state).
type Changelog interface {
	Sink
	// Ends returns, after a Flush, the end offset of the changelog of
	// each of the given partitions.
	Ends(ctx context.Context, parts []int32) (map[int32]int64, error)
}

// ChangelogReader reads back one partition's changelog.
type ChangelogReader interface {
	// Bounds returns the first and the end offset of the partition's log.
	Bounds(ctx context.Context, part int32) (first, end int64, err error)
	// Open returns the partition's records from offset on.
	Open(ctx context.Context, part int32, offset int64) (Source, error)
}

// Changelog records. Key: the store key. Value: a format byte then the
// store value, or no value (a tombstone) for a deleted key. Headers:
// HeaderTarget (the partition) and HeaderCommit: the commit's random id,
// so that a restore applies the changes of a commit only once it has seen
// the commit's last record, the partition's meta record, and never those
// of a commit that did not finish.
const (
	HeaderTarget = "virality-target-partition"
	HeaderCommit = "virality-commit"
)

// changelogVersion is the first byte of each changelog record's value:
// the records are the store's own keys and values, so it is the store's
// format version (1 until format 4).
const changelogVersion = store.FormatVersion

// TargetPartition reads HeaderTarget: the changelog sink's balancer.
func TargetPartition(v []byte) (int32, bool) {
	n, err := strconv.ParseInt(string(v), 10, 32)
	return int32(n), err == nil && n >= 0
}

func newCommitID() []byte {
	id := make([]byte, 9)
	id[0] = changelogVersion
	_, _ = rand.Read(id[1:])
	return id
}

// logChanges sends a partition's changes of one commit, a logged fork's, to
// the changelog.
func (c *Coordinator) logChanges(part int32, f *store.Writer, commit []byte) error {
	target := strconv.AppendInt(nil, int64(part), 10)
	hdr := []Header{{Key: HeaderTarget, Value: target}, {Key: HeaderCommit, Value: commit}}
	var val []byte
	var m Message // one for all: the sink copies what it is given
	return f.Changes(func(x store.Change) error {
		m = Message{Key: x.Key, Headers: hdr}
		if !x.Delete {
			val = append(append(val[:0], changelogVersion), x.Value...)
			m.Value = val
		}
		return c.changelog.Write(&m)
	})
}

// RestoreStats say what a restore did.
type RestoreStats struct {
	From, End int64 // changelog offsets read
	Records   int64 // changelog records read
	Commits   int64 // complete commits applied
	Wiped     bool  // the local state was dropped first
	Why       string
}

// Restore brings the local state of a partition up to its changelog
// before the partition is opened: it replays what the local state lacks,
// or, when the local state is of other settings, ahead of the changelog
// or older than what the changelog still holds, drops it and replays the
// whole changelog. Only complete commits are applied. progress, if set,
// is called now and then with the records read so far.
func (c *Coordinator) Restore(ctx context.Context, part int32, r ChangelogReader, progress func(read, total int64)) (RestoreStats, error) {
	var st RestoreStats
	_ = c.Land(ctx) // what is in flight lands first; a failure is kept
	p := c.db.Partition(part)
	first, end, err := r.Bounds(ctx, part)
	if err != nil {
		return st, fmt.Errorf("changelog of partition %d: %w", part, err)
	}
	meta, ok, err := p.Meta()
	if err != nil && !errors.Is(err, store.ErrFormat) {
		return st, err
	}
	local, err := p.ChangelogEnd()
	if err != nil {
		return st, err
	}
	switch {
	case err != nil || (ok && meta.Fingerprint != c.fingerprint()):
		st.Wiped, st.Why = true, "local state of other settings or format"
	case !ok && local == 0 && end == 0:
		return st, nil // nothing anywhere: a fresh partition
	case !ok:
		st.Wiped, st.Why = local != 0, "no local state"
	case local > end:
		st.Wiped, st.Why = true, fmt.Sprintf("local state ahead of the changelog (%d > %d)", local, end)
	case local < first:
		st.Wiped, st.Why = true, fmt.Sprintf("local state older than the changelog's start (%d < %d)", local, first)
	case local == end:
		return st, nil // up to date
	default:
		st.Why = "local state behind the changelog"
	}
	st.From, st.End = local, end
	if st.Wiped || !ok {
		if err := p.Wipe(); err != nil {
			return st, err
		}
		st.From = first
	}
	if st.From >= end {
		return st, nil
	}
	src, err := r.Open(ctx, part, st.From)
	if err != nil {
		return st, err
	}
	if cl, ok := src.(io.Closer); ok {
		defer cl.Close()
	}
	var (
		pending []store.Change // changes of the commit being read
		commit  string
		recs    []Record
	)
	for next := st.From; next < end; {
		recs, err = src.Next(ctx, recs[:0])
		if err != nil && !errors.Is(err, io.EOF) {
			return st, fmt.Errorf("read changelog of partition %d at %d: %w", part, next, err)
		}
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= end {
				break
			}
			next = rec.Offset + 1
			st.Records++
			id := ""
			for _, h := range rec.Headers {
				if h.Key == HeaderCommit {
					id = string(h.Value)
				}
			}
			if id != commit {
				pending, commit = pending[:0], id // a commit that never finished is dropped
			}
			ch := store.Change{Key: append([]byte(nil), rec.Key...), Delete: len(rec.Value) == 0}
			if !ch.Delete {
				if len(rec.Value) == 0 || rec.Value[0] != changelogVersion {
					got := -1
					if len(rec.Value) > 0 {
						got = int(rec.Value[0])
					}
					return st, fmt.Errorf("changelog of partition %d at %d: record of format %d, this binary reads format %d: run the binary that wrote it, or start a new --group (the state is rebuilt from the input)",
						part, rec.Offset, got, changelogVersion)
				}
				ch.Value = append([]byte(nil), rec.Value[1:]...)
			}
			pending = append(pending, ch)
			if store.IsMetaKey(ch.Key) && !ch.Delete {
				if err := p.Restore(pending, next); err != nil {
					return st, fmt.Errorf("restore partition %d: %w", part, err)
				}
				st.Commits++
				pending = pending[:0]
			}
		}
		if progress != nil {
			progress(next-st.From, end-st.From)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	return st, nil
}
