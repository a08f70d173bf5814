package processor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"

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

// Changelog records. Key: the store key, which names the partition
// (ChangelogPartition: the changelog sink's balancer). Value: a format
// byte then the store value, or no value (a tombstone) for a deleted key.
// Header: HeaderCommit, the commit's random id, so that a restore knows
// the records of one commit from the next's (see Restore). Records
// written before this release also carry the partition in a header of
// their own, which nothing reads.
const HeaderCommit = "virality-commit"

// changelogVersion is the first byte of each changelog record's value:
// the records are the store's own keys and values, so it is the store's
// format version (1 until format 4).
const changelogVersion = store.FormatVersion

// ChangelogPartition returns the partition of state a changelog record's
// key belongs to: the changelog sink's balancer.
func ChangelogPartition(key []byte) (int32, bool) { return store.KeyPartition(key) }

func newCommitID() []byte {
	id := make([]byte, 9)
	id[0] = changelogVersion
	_, _ = rand.Read(id[1:])
	return id
}

// changelogHeaders are the headers of a partition's changelog records of
// one commit.
func changelogHeaders(commit []byte) []Header {
	return []Header{{Key: HeaderCommit, Value: commit}}
}

// changeLog is a commit's changelog records, written to the changelog and
// sent a chunk of logChunkBytes at a time, each acknowledged before the
// next is written, by the commit's flight (or Commit), once its outputs
// are acknowledged. A partition's records are the keys a commit cut short
// had changed there (repairs, see logRepairs), then its changes of the
// commit: the logged forks joined into the commit's batch, read from it
// in place. Written whole into the sink before the flight took off, a
// catch-up's commit held 300,000 records there, a copy of its batch, and
// the sink kept the arrays of the largest between commits: 40-70 MB of a
// heap that sits at its limit under 512 MiB (bench/RESULTS.md).
type changeLog struct {
	hdr   []Header
	parts []logPart
	r     store.ChangeReader // the batch's changes not yet written
	part  int                // parts[part] is being written
	left  int                // of its changes, not yet written; -1: nor its repairs
	// flush sends the chunk written last; set until it is acknowledged.
	flush func(ctx context.Context) error
	chunk int // logChunkBytes, but in tests
	// msg and val are the record being written, reused: a Message made
	// for each escaped to the heap through the sink's interface, 10% of
	// what a catch-up allocated (bench/RESULTS.md).
	msg Message
	val []byte
}

// logPart is one partition's share of a commit's changelog records.
type logPart struct {
	repairs []Message // values with their format byte
	changes int       // of the batch's, in a row
}

// logChunkBytes is how many bytes of records (keys and values) a
// changelog chunk holds, about: a commit's changelog is sent in chunks of
// this size, so that the sink holds at most one.
const logChunkBytes = 4 << 20

func newChangeLog(chunk int) *changeLog {
	return &changeLog{hdr: changelogHeaders(newCommitID()), left: -1, chunk: chunk}
}

// addToLog appends partition part's records to l: its repairs, then the
// changes of its logged forks, joined into the commit's batch next, in
// this order.
func (c *Coordinator) addToLog(l *changeLog, part int32, forks []*store.Writer) error {
	reps, err := c.logRepairs(part)
	if err != nil {
		return err
	}
	n := 0
	for _, f := range forks {
		n += f.Count()
	}
	l.parts = append(l.parts, logPart{repairs: reps, changes: n})
	return nil
}

// send writes the records to log and sends them, a chunk at a time. After
// an error it may be called again: it sends again what was not
// acknowledged, then goes on.
func (l *changeLog) send(ctx context.Context, log Changelog) error {
	for {
		if l.flush != nil {
			if err := l.flush(ctx); err != nil {
				return err
			}
			l.flush = nil
		}
		if l.part == len(l.parts) {
			return nil
		}
		if err := l.fill(log); err != nil {
			return err
		}
		l.flush = log.Flush
		if d, ok := detacherOf(log); ok {
			if l.flush = d.Detach(); l.flush == nil {
				l.flush = func(context.Context) error { return nil }
			}
		}
	}
}

// fill writes the next chunk of records to log.
func (l *changeLog) fill(log Changelog) error {
	size := 0
	for l.part < len(l.parts) && size < l.chunk {
		p := &l.parts[l.part]
		if l.left < 0 {
			for i := range p.repairs {
				p.repairs[i].Headers = l.hdr
				if err := log.Write(&p.repairs[i]); err != nil {
					return err
				}
			}
			p.repairs, l.left = nil, p.changes
		}
		for ; l.left > 0 && size < l.chunk; l.left-- {
			r := l.r // moved on once its change is written
			x, ok, err := r.Next()
			if !ok {
				return cmp.Or(err, errors.New("processor: a commit's batch ends before its changes"))
			}
			l.msg = Message{Key: x.Key, Headers: l.hdr}
			if !x.Delete {
				l.val = append(append(l.val[:0], changelogVersion), x.Value...)
				l.msg.Value = l.val
			}
			if err := log.Write(&l.msg); err != nil {
				return err
			}
			l.r = r
			size += len(x.Key) + len(x.Value)
		}
		if l.left == 0 {
			l.part++
			l.left = -1
		}
	}
	return nil
}

// logRepairs returns the records that go first in a partition's commit:
// each key a commit cut short had changed there (see Restore), as it is
// committed, or a tombstone where it is not. A commit cut short is not
// part of the state, and once its records are followed by these, neither
// a restore nor compaction can take them for it. The commit before has
// landed (a commit starts when nothing is in flight), so the store holds
// what it committed.
func (c *Coordinator) logRepairs(part int32) ([]Message, error) {
	keys := c.repairs[part]
	if len(keys) == 0 {
		return nil, nil
	}
	p := c.db.Partition(part)
	var v []byte
	ms := make([]Message, 0, len(keys))
	for _, k := range keys {
		var ok bool
		var err error
		if v, ok, err = p.Committed(k, v[:0]); err != nil {
			return nil, fmt.Errorf("repair the changelog of partition %d: %w", part, err)
		}
		m := Message{Key: k}
		if ok {
			m.Value = append([]byte{changelogVersion}, v...)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// RestoreStats say what a restore did.
type RestoreStats struct {
	From, End int64 // changelog offsets read
	Records   int64 // changelog records read
	Commits   int64 // complete commits applied (their meta records)
	Dropped   int64 // records of commits cut short, skipped
	Repairs   int   // keys a commit cut short changed after the last complete commit: logged again at the next commit
	Wiped     bool  // the local state was dropped first
	Why       string
}

// restoreChunk is how many changes a restore holds before it writes them
// to the store, of those known to come before a complete commit: the
// changelog, once compacted, holds no commit's last record but the last
// one's, and the changes before it are all of the state.
const restoreChunk = 1 << 16

// lastMeta returns the offset of the last meta record in [from, end) of a
// partition's changelog, the end of its last complete commit, or -1. It
// reads back from the end a window at a time, growing: what follows the
// last complete commit is at most what commits cut short wrote, and most
// often nothing (a changelog ends with a meta record but after a crash).
func lastMeta(ctx context.Context, r ChangelogReader, part int32, from, end int64) (int64, error) {
	for hi, window := end, int64(1024); hi > from; window *= 4 {
		lo := max(from, hi-window)
		last, err := scanMeta(ctx, r, part, lo, hi)
		if err != nil || last >= 0 {
			return last, err
		}
		hi = lo
	}
	return -1, nil
}

// scanMeta returns the offset of the last meta record in [lo, hi), or -1.
func scanMeta(ctx context.Context, r ChangelogReader, part int32, lo, hi int64) (int64, error) {
	src, err := r.Open(ctx, part, lo)
	if err != nil {
		return -1, err
	}
	if cl, ok := src.(io.Closer); ok {
		defer cl.Close()
	}
	last := int64(-1)
	var recs []Record
	for next := lo; next < hi; {
		recs, err = src.Next(ctx, recs[:0])
		if err != nil && !errors.Is(err, io.EOF) {
			return -1, fmt.Errorf("read changelog of partition %d at %d: %w", part, next, err)
		}
		for i := range recs {
			rec := &recs[i]
			next = rec.Offset + 1
			if rec.Offset >= hi {
				break // past the window: compaction left none after next
			}
			if store.IsMetaKey(rec.Key) && len(rec.Value) > 0 {
				last = rec.Offset
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	return last, nil
}

// Restore brings the local state of a partition up to its changelog
// before the partition is opened: it replays what the local state lacks,
// or, when the local state is of other settings, ahead of the changelog
// or older than what the changelog still holds, drops it and replays the
// whole changelog. progress, if set, is called now and then with the
// records read so far.
//
// Only complete commits are applied. A commit's records for a partition
// are in a row, each with the commit's id, its meta record last; the
// changelog is compacted, so of the meta records only the last is sure to
// be there, and of the other records those whose key changed since may be
// gone (the offsets keep their places). So the state is every record up
// to the last meta record, in order, but:
//   - what follows the last meta record is of commits cut short (a crash
//     while their records were sent): skipped, and its keys are logged
//     again, as committed, at the partition's next commit (logRepairs), so
//     that these records are never taken for state later, when records
//     after them are;
//   - records of one commit with no meta record that the next commit's
//     records follow at once (no offset between them, so nothing was
//     compacted) never had one: a commit cut short before such repairs
//     existed, skipped.
//
// A compacted commit whose meta record is gone is applied. Changes are
// written to the store in parts of restoreChunk, and the changelog offset
// with each meta record: a restore cut short is begun again from there.
func (c *Coordinator) Restore(ctx context.Context, part int32, r ChangelogReader, progress func(read, total int64)) (RestoreStats, error) {
	var st RestoreStats
	_ = c.Land(ctx) // what is in flight lands first; a failure is kept
	delete(c.repairs, part)
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
	onto := !st.Wiped && ok
	compacted, err := c.replay(ctx, p, part, r, &st, onto, progress)
	if err != nil || !compacted {
		return st, err
	}
	// Behind, on a part of the changelog compacted since: the tombstones
	// of keys deleted there may be gone (Kafka drops them after
	// delete.retention.ms), and the local state would keep those keys.
	if err := p.Wipe(); err != nil {
		return st, err
	}
	st = RestoreStats{From: first, End: end, Wiped: true, Records: st.Records,
		Why: fmt.Sprintf("local state behind a compacted part of the changelog (%d < %d)", local, end)}
	_, err = c.replay(ctx, p, part, r, &st, false, progress)
	return st, err
}

// replay applies the changelog of a partition from st.From to st.End
// (see Restore). onto a local state, it stops at the first offset missing
// after st.From, a record compacted away, and reports it.
func (c *Coordinator) replay(ctx context.Context, p *store.Partition, part int32, r ChangelogReader, st *RestoreStats, onto bool, progress func(read, total int64)) (compacted bool, err error) {
	end := st.End
	last, err := lastMeta(ctx, r, part, st.From, end)
	if err != nil {
		return false, err
	}
	src, err := r.Open(ctx, part, st.From)
	if err != nil {
		return false, err
	}
	if cl, ok := src.(io.Closer); ok {
		defer cl.Close()
	}
	var (
		pending  []store.Change // changes to apply, not yet written
		run      []store.Change // the changes of the commit being read
		commit   string         // its id
		prev     = int64(-1)    // the offset of the record before
		recs     []Record
		trailing = map[string]bool{}
	)
	for next := st.From; next < end; {
		recs, err = src.Next(ctx, recs[:0])
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read changelog of partition %d at %d: %w", part, next, err)
		}
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= end {
				break
			}
			if onto && rec.Offset != next {
				return true, nil
			}
			next = rec.Offset + 1
			st.Records++
			if rec.Offset > last {
				trailing[string(rec.Key)] = true
				st.Dropped++
				continue
			}
			id := ""
			for _, h := range rec.Headers {
				if h.Key == HeaderCommit {
					id = string(h.Value)
				}
			}
			if id != commit {
				if len(run) > 0 && rec.Offset == prev+1 {
					st.Dropped += int64(len(run)) // never had a meta record
				} else {
					pending = append(pending, run...) // its meta record compacted
				}
				run, commit = run[:0], id
			}
			prev = rec.Offset
			ch := store.Change{Key: append([]byte(nil), rec.Key...), Delete: len(rec.Value) == 0}
			if !ch.Delete {
				if len(rec.Value) == 0 || rec.Value[0] != changelogVersion {
					got := -1
					if len(rec.Value) > 0 {
						got = int(rec.Value[0])
					}
					return false, fmt.Errorf("changelog of partition %d at %d: record of format %d, this binary reads format %d: run the binary that wrote it, or start a new --group (the state is rebuilt from the input)",
						part, rec.Offset, got, changelogVersion)
				}
				ch.Value = append([]byte(nil), rec.Value[1:]...)
			}
			run = append(run, ch)
			if store.IsMetaKey(ch.Key) && !ch.Delete {
				pending = append(pending, run...)
				if err := p.Restore(pending, next); err != nil {
					return false, fmt.Errorf("restore partition %d: %w", part, err)
				}
				st.Commits++
				pending, run = pending[:0], run[:0]
			} else if len(pending) >= restoreChunk {
				if err := p.Restore(pending, -1); err != nil {
					return false, fmt.Errorf("restore partition %d: %w", part, err)
				}
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
	if len(trailing) > 0 {
		keys := make([][]byte, 0, len(trailing))
		for k := range trailing {
			keys = append(keys, []byte(k))
		}
		slices.SortFunc(keys, bytes.Compare)
		c.repairs[part] = keys
		st.Repairs = len(keys)
	}
	return false, nil
}
