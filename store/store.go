// Package store keeps virality's state in Pebble and hides its key layout.
//
// State is kept per input partition, under a 5-byte prefix ('P' and the
// partition number), so that a partition's state can be read, written and
// dropped on its own:
//
//	P<part> 'm'                          meta: input offset, watermark, tick, sink positions
//	P<part> 'p' <len(video)> video user  one (user, video) pair
//	P<part> 'v' video                    a video's header
//	P<part> 't' <len(video)> video bucket part  a part of a video's standing like times of one 5-minute bucket
//	P<part> 'a' epoch user               an account's recent like counts (the account stage), under the epoch of its newest like
//	P<part> 'e' video                    marker: the video has state newer than its last record
//	P<part> 'k' video                    a trending candidate
//	P<part> 'r' tick part                a partition's trending lists of a tick, not yet merged
//	P<part> 'b' ts seq                   an event held in the reorder buffer until the watermark passes it
//	P<part> 'h' ts seq                   a like held by the account stage until its weight can be given
//	P<part> 'c', 'q', 'y'                creators: see creators.go
//	"\x00format"                         the version of this layout, checked at open
//
// Like times of a video live inline in its header while there are few;
// beyond that they move to one key per 5-minute bucket of event time, so
// that a commit rewrites only the buckets that changed (most often the
// last) and old buckets are dropped by key, without a scan. A bucket is
// split into parts of 64 like times, so that a like added to a busy bucket
// rewrites its last part. (Until format 7 the buckets were hours, until
// format 8 whole: a popular video's current bucket, kilobytes, was
// rewritten at every commit, and the rewrites were most of what the live
// service wrote, logged and compacted.)
//
// Everything one commit changes is written by one [Writer] into one Pebble
// batch, together with the meta record naming the input offset it reflects:
// state and offsets are committed together or not at all.
package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrFormat is returned when a state directory was written in a format
// this binary does not read.
var ErrFormat = errors.New("store: unsupported state format")

// FormatVersion is the version of the key layout and records. A state
// directory records it when created; Open refuses any other, so that an
// older binary never misreads newer state, nor a newer one older state.
//
// 3: creator state (creators.go).
// 4: an account's recent like counts in one record keyed by the account
// (kindAccounts), read with one lookup, instead of one per (bucket, account).
// 5: accounts are kept by the partition of their user (the account stage),
// which holds likes until their weight can be given (kindHeld); buffered
// events carry their weight.
// 6: lockstep groups: each like and like time carries its damping signals
// (Like.Damp, Entry.Damp), an account its newest like's key in each bucket
// (AccountBucket.Key, .Sec), a video its lockstep tracker (Video.Lockstep).
// 7: a video's like times are kept in 5-minute buckets of event time (were
// hours), inline while 16 or fewer (were 64).
// 8: a bucket of like times is split into parts of 64 like times (the key
// ends with the part's number); the creator tally is a chunk per commit
// of what changed (a count of 0 deletes), not the whole tally again.
// 9: the account stages' key sketches (sketch.go); buffered and held
// events, and lockstep trackers, carry each key's popularity.
// 10: the live service's trending merger stores none of the partitions'
// reports it reads from the partials topic: its state says from which
// offset to read them again (the first not yet merged).
// 11: a video's record holds its times as distances from its clock, and
// its decay epochs as distances from its clock's and from each other.
// 12: an account's record is keyed by the epoch of its newest like first
// (Writer.SetAccount), so that the records no like can read any more are
// dropped an epoch at a time (Writer.DeleteAccountEpochs); they were kept
// for ever, a record for every account ever seen.
const FormatVersion = 12

var formatKey = []byte("\x00format")

// Options configure the Pebble database.
type Options struct {
	// CacheBytes is the size of Pebble's block cache.
	CacheBytes int64
	// MemTableBytes is the size of each memtable.
	MemTableBytes uint64
	// Sync makes each commit wait for its WAL to reach stable storage. Without
	// it a commit survives a crash of the process (kill -9) but not of the
	// machine.
	Sync bool
	// L0Flushes is how many flushed memtables level 0 gathers before they
	// are compacted into the level below (0: Pebble's 4). Each flush spans
	// every kind of key (pairs, videos, accounts, creators), so each
	// compaction out of level 0 rewrites all of the level below, and then
	// more of the last: a backfill of 1.3M likes wrote 1.4 GB of tables
	// for 86 MB of state at 4, 0.8 GB at 8, with 20% less CPU (before
	// the engine's pair cache was encoded; 8% less after). But a point
	// read checks a table of level 0 more for each, and a catch-up on the
	// broker ran 8-10% slower at 8 (bench/RESULTS.md).
	L0Flushes int
	// FS, if set, replaces the operating system's file system (tests use
	// vfs.NewMem()).
	FS vfs.FS
}

// DefaultOptions are sized for a 512 MiB process.
func DefaultOptions() Options {
	return Options{CacheBytes: 64 << 20, MemTableBytes: 32 << 20}
}

// Validate reports options a user must fix.
func (o Options) Validate() error {
	if o.CacheBytes < 1<<20 {
		return fmt.Errorf("store: cache size %d is below 1 MiB", o.CacheBytes)
	}
	if o.MemTableBytes < 1<<20 {
		return fmt.Errorf("store: memtable size %d is below 1 MiB", o.MemTableBytes)
	}
	if o.L0Flushes < 0 || o.L0Flushes > 64 {
		return fmt.Errorf("store: %d flushes gathered in level 0: must be between 0 (Pebble's 4) and 64", o.L0Flushes)
	}
	return nil
}

// DB is an open state directory.
type DB struct {
	db  *pebble.DB
	wo  *pebble.WriteOptions
	dir string
	// broken is set once a commit failed inside Pebble (it panics when its
	// log cannot be written, holding its locks): nothing more may touch
	// the database, whose state on disk stays that of the last commit.
	broken error
	// lastCommit is the size of the last Writer's batch: the next starts
	// with room for a little more. A batch that starts small doubles its
	// buffer as it grows: the live service's commits of a few MiB a
	// second were 14% of all it allocated, 10% when sized so.
	lastCommit atomic.Int64
	// spare is the last committed batch, reset, for the next Writer with
	// the buffer it grew to: a catch-up allocated every commit's buffer
	// anew, and grew it, 12% of all it allocated. Pebble takes a batch
	// larger than half a memtable whole, buffer and all; retain, half a
	// memtable, bounds what a spare keeps.
	spare  atomic.Pointer[pebble.Batch]
	retain int
	// forks are the batches of joined forks, reset, for the next Fork
	// with the buffers they grew to (a commit forks one for each of its
	// partitions); forkBytes is what their buffers hold in all (see
	// releaseFork).
	forks     chan *pebble.Batch
	forkBytes atomic.Int64
	// onDisk: the state is in the operating system's file system, whose
	// free space a commit checks (see commit).
	onDisk bool
}

// maxForks is how many joined forks' batches are kept.
const maxForks = 16

// forkBatch returns a kept fork's batch, or a new one.
func (d *DB) forkBatch() *pebble.Batch {
	select {
	case b := <-d.forks:
		d.forkBytes.Add(-int64(cap(b.Repr())))
		return b
	default:
		return d.db.NewBatch(pebble.WithMaxRetainedSizeBytes(max(d.retain, 1<<20)))
	}
}

// releaseFork keeps a fork's batch, reset, for the next, or closes it.
//
// Each keeps a buffer of up to retain, and all of them together up to
// twice a commit as large as the last (the forks of a commit are its
// partitions' shares of it, in buffers that doubled as they grew) or twice
// retain, whichever is more. Kept to an eighth of retain each, the forks
// of a backfill's commits (1.5 MB a partition in B1, against 1 MiB) were
// let go at every commit and grown again from nothing, doubling: 5.4 of
// the 27 GB B1 allocated (bench/RESULTS.md).
func (d *DB) releaseFork(b *pebble.Batch) {
	b.Reset()
	n := int64(cap(b.Repr()))
	if d.forkBytes.Add(n) <= 2*max(int64(d.retain), d.lastCommit.Load()) {
		select {
		case d.forks <- b:
			return
		default:
		}
	}
	d.forkBytes.Add(-n)
	_ = b.Close()
}

// batchRoom is what a new commit's batch starts with.
func (d *DB) batchRoom() int { return int(d.lastCommit.Load() * 9 / 8) }

// newBatch returns the spare batch if it has room for a commit like the
// last, or a new one that has.
func (d *DB) newBatch() *pebble.Batch {
	room := d.batchRoom()
	if b := d.spare.Swap(nil); b != nil {
		if cap(b.Repr()) >= min(room, d.retain) {
			return b
		}
		_ = b.Close()
	}
	return d.db.NewBatchWithSize(room, pebble.WithMaxRetainedSizeBytes(d.retain))
}

// commit applies a batch, turning Pebble's panic on a failed log write
// into an error that names the disk's trouble.
//
// First it checks that the file system has room for the batch twice (in
// the log, then in the table its flush writes) and a MiB: where Pebble
// fails to write its log while it switches to a new one (for a batch
// larger than half a memtable, or a full memtable), it panics with a lock
// released that its unwinding releases again, a runtime fatal error no
// recover catches. A backfill under the default budget, whose memtables
// are 1/64 of it, commits such batches (TestDiskFull).
func (d *DB) commit(b *pebble.Batch) (err error) {
	if d.broken != nil {
		return d.broken
	}
	if d.onDisk {
		need := 2*uint64(len(b.Repr())) + 1<<20
		if free, ferr := FreeBytes(d.dir); ferr == nil && free < need {
			err := &DiskError{Dir: d.dir, Cause: "no space left on device",
				Err: fmt.Errorf("%d KiB free, a commit of %d KiB needs %d KiB: %w", free>>10, len(b.Repr())>>10, need>>10, syscall.ENOSPC)}
			return errors.Join(err, b.Close())
		}
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				e = fmt.Errorf("%v", r)
			}
			d.broken = diskError(d.dir, fmt.Errorf("commit: %w", e))
			err = d.broken
		}
	}()
	if err := b.Commit(d.wo); err != nil {
		return diskError(d.dir, errors.Join(err, b.Close()))
	}
	b.Reset()
	if !d.spare.CompareAndSwap(nil, b) {
		return diskError(d.dir, b.Close())
	}
	return nil
}

// lbaseMaxBytes bounds the level that flushed memtables are compacted
// into. The keys of pairs are random, so every compaction out of level 0
// rewrites all of that level: while the state was smaller than this bound
// (256 MiB until this was measured), that level was all of it, and a live
// service at 5,000 likes/s rewrote its whole state every 30 seconds, more
// each minute as it grew (bench/RESULTS.md).
const lbaseMaxBytes = 64 << 20

// memTablesHeld is the most memtables the store holds, as --memory-budget
// counts them: one filling, one flushing.
const memTablesHeld = 2

// Open opens (creating if needed) the state in dir.
func Open(dir string, o Options) (*DB, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Pebble reserves the memtables' memory out of its block cache (so
	// that one size bounds both): a cache of CacheBytes alone, smaller
	// than two memtables, held no block at all, and every read of a key
	// the caches above had let go went to the file system, its filter
	// blocks too (26 us a read of an account, against 4 us with the
	// blocks cached: bench/RESULTS.md). The cache is sized for the
	// memtables --memory-budget counts (one filling, one flushing) on top
	// of CacheBytes.
	cache := pebble.NewCache(o.CacheBytes + memTablesHeld*int64(o.MemTableBytes))
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                o.MemTableBytes,
		FormatMajorVersion:          pebble.FormatNewest,
		L0CompactionThreshold:       cmp.Or(o.L0Flushes, 4),
		L0StopWritesThreshold:       1000,
		LBaseMaxBytes:               lbaseMaxBytes,
		CompactionConcurrencyRange:  func() (int, int) { return 1, 2 },
		MemTableStopWritesThreshold: memTablesHeld,
		Logger:                      quietLogger{dir: dir},
		FS:                          o.FS,
	}
	// Bloom filters above the last level only: a point read of a video
	// or an account the caches do not hold mostly finds it in the last
	// level, where the filter says "maybe" at the cost of reading it. A
	// table's filter is one block of about 1.25 bytes a key, and the block
	// cache, churned by random reads, did not keep them: reading the last
	// level's filters again took 6% of the live service's CPU at 5,000
	// likes/s (bench/RESULTS.md). A key that is in no level (a new
	// account or video; new pairs mostly stop at the engine's own filter)
	// costs an index and a data block of the last level instead.
	for i := range opts.Levels[:len(opts.Levels)-1] {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Tables are not compressed: the state is varints, hashes and short
	// IDs (which the tables' columns already share prefixes of), so
	// Snappy saved 8% of B1's state (678 against 732 MB) while
	// decompressing every block read back and compressing every block
	// compacted took 7% of its CPU; B1 ran at 31,313 likes/s against
	// 29,380 without it (bench/RESULTS.md). Tables written compressed by
	// an earlier build are read as they are.
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	db, err := pebble.Open(dir, opts)
	cache.Unref()
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, diskError(dir, err))
	}
	wo := pebble.NoSync
	if o.Sync {
		wo = pebble.Sync
	}
	d := &DB{db: db, wo: wo, dir: dir, retain: int(opts.MemTableSize / 2), forks: make(chan *pebble.Batch, maxForks), onDisk: o.FS == nil}
	if err := d.checkFormat(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return d, nil
}

// checkFormat records the format version in a new state directory and
// checks it in an existing one.
func (d *DB) checkFormat() error {
	v, closer, err := d.db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		it, err := d.db.NewIter(nil)
		if err != nil {
			return err
		}
		empty := !it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: state %s was written by an older version of virality (no format version); start with an empty --state-dir", ErrFormat, d.dir)
		}
		return d.db.Set(formatKey, binary.AppendUvarint(nil, FormatVersion), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read format of state %s: %w", d.dir, err)
	}
	got, n := binary.Uvarint(v)
	_ = closer.Close()
	switch {
	case n <= 0:
		return fmt.Errorf("%w: state %s has a corrupt format record", ErrFormat, d.dir)
	case got > FormatVersion:
		return fmt.Errorf("%w: state %s has format %d, newer than this binary's %d: run a newer virality or start with an empty --state-dir", ErrFormat, d.dir, got, FormatVersion)
	case got < FormatVersion:
		return fmt.Errorf("%w: state %s has format %d, older than this binary's %d: start with an empty --state-dir (the state can be rebuilt by a replay)", ErrFormat, d.dir, got, FormatVersion)
	}
	return nil
}

// Close closes the database.
func (d *DB) Close() error {
	if d.db == nil {
		return ErrClosed
	}
	if d.broken != nil {
		// Pebble may hold its locks: leave it to the process's exit.
		d.db = nil
		return nil
	}
	err := d.db.Close()
	d.db = nil
	if err != nil {
		return fmt.Errorf("close state %s: %w", d.dir, err)
	}
	return nil
}

// Stats are what Pebble reports of the state: its size, and the bytes it
// wrote since the state was opened. Flushes and compactions are the
// store's write amplification: a live service that falls behind while its
// compactions grow writes too much, or with too random keys.
type Stats struct {
	DiskBytes, MemTableBytes uint64
	// WALBytes went to the write-ahead log (every commit's batch).
	WALBytes uint64
	// FlushedBytes are the tables written from full memtables.
	FlushedBytes uint64
	// CompactedBytes are the tables compactions wrote.
	CompactedBytes uint64
	// CacheHits and CacheMisses count the blocks reads found in the
	// block cache and those they read from the file system.
	CacheHits, CacheMisses uint64
}

// Stats reports the state's size and what Pebble wrote.
func (d *DB) Stats() Stats {
	m := d.db.Metrics()
	s := Stats{DiskBytes: m.DiskSpaceUsage(), MemTableBytes: m.MemTable.Size, WALBytes: m.WAL.BytesIn,
		CacheHits: uint64(m.BlockCache.Hits), CacheMisses: uint64(m.BlockCache.Misses)}
	for _, l := range m.Levels {
		s.FlushedBytes += l.TableBytesFlushed + l.BlobBytesFlushed
		s.CompactedBytes += l.TableBytesCompacted + l.BlobBytesCompacted
	}
	return s
}

// Partition returns the state of one input partition.
func (d *DB) Partition(id int32) *Partition {
	p := &Partition{db: d}
	p.prefix[0] = 'P'
	binary.BigEndian.PutUint32(p.prefix[1:], uint32(id))
	return p
}

// Partition is the state of one input partition. It is not safe for
// concurrent use: one goroutine owns a partition.
type Partition struct {
	db     *DB
	prefix [5]byte
	key    []byte // scratch for building keys
}

const (
	kindMeta      = 'm'
	kindPair      = 'p'
	kindVideo     = 'v'
	kindTimes     = 't'
	kindAccounts  = 'a' // 'u', one key per (bucket, account), until format 4
	kindPending   = 'e'
	kindCandidate = 'k'
	kindReport    = 'r'
	kindBuffered  = 'b'
	kindHeld      = 'h'
)

func (p *Partition) keyOf(kind byte, parts ...string) []byte {
	k := append(p.key[:0], p.prefix[:]...)
	k = append(k, kind)
	for i, s := range parts {
		if i < len(parts)-1 {
			k = binary.AppendUvarint(k, uint64(len(s)))
		}
		k = append(k, s...)
	}
	p.key = k
	return k
}

// get copies the value at key into dst, reporting whether it exists.
func (p *Partition) get(key []byte, dst []byte) ([]byte, bool, error) {
	if p.db.db == nil {
		return nil, false, ErrClosed
	}
	v, closer, err := p.db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, err
	}
	dst = append(dst[:0], v...)
	return dst, true, closer.Close()
}

// scan calls fn with each key (without the partition and kind prefix) and
// value under kind.
func (p *Partition) scan(kind byte, fn func(key, value []byte) error) error {
	if p.db.db == nil {
		return ErrClosed
	}
	lo := append(append([]byte{}, p.prefix[:]...), kind)
	hi := append(append([]byte{}, p.prefix[:]...), kind+1)
	it, err := p.db.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()[len(lo):], it.Value()); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// Meta returns the partition's meta record.
func (p *Partition) Meta() (Meta, bool, error) {
	v, ok, err := p.get(p.keyOf(kindMeta), nil)
	if !ok || err != nil {
		return Meta{}, ok, err
	}
	var m Meta
	if err := m.unmarshal(v); err != nil {
		return Meta{}, false, fmt.Errorf("read meta of partition: %w", err)
	}
	return m, true, nil
}

// Pair returns the state of the (user, video) pair.
func (p *Partition) Pair(video, user string) (Pair, bool, error) {
	v, ok, err := p.get(p.keyOf(kindPair, video, user), nil)
	if !ok || err != nil {
		return Pair{}, ok, err
	}
	var pr Pair
	if err := pr.unmarshal(v); err != nil {
		return Pair{}, false, fmt.Errorf("read pair %q/%q: %w", video, user, err)
	}
	return pr, true, nil
}

// ScanPairs calls fn with the key of every stored pair, as [PairKey]
// builds it.
func (p *Partition) ScanPairs(fn func(key []byte)) error {
	return p.scan(kindPair, func(k, _ []byte) error { fn(k); return nil })
}

// ScanVideoKeys calls fn with the [VideoKey] of every stored video.
func (p *Partition) ScanVideoKeys(fn func(key []byte)) error {
	return p.scanIDs(kindVideo, VideoKey, fn)
}

// ScanAccountKeys calls fn with the [AccountKey] of every stored account
// (once for each epoch it has a record in).
func (p *Partition) ScanAccountKeys(fn func(key []byte)) error {
	var key []byte
	return p.scan(kindAccounts, func(k, _ []byte) error {
		_, user, err := splitAccountKey(k)
		if err != nil {
			return err
		}
		key = AccountKey(key[:0], string(user))
		fn(key)
		return nil
	})
}

// scanIDs calls fn with the key that as makes of each stored id of kind.
func (p *Partition) scanIDs(kind byte, as func(dst []byte, id string) []byte, fn func(key []byte)) error {
	var key []byte
	return p.scan(kind, func(k, _ []byte) error {
		key = as(key[:0], string(k))
		fn(key)
		return nil
	})
}

// AccountKey appends the identity of an account to dst: the [PairKey] of
// the empty video and the user, which no pair or video has.
func AccountKey(dst []byte, user string) []byte { return PairKey(dst, "", user) }

// VideoKey appends the identity of a video to dst: the [PairKey] of the
// video and the empty user, which no pair has (a like's user is never
// empty), so that one filter of keys can hold both.
func VideoKey(dst []byte, video string) []byte { return PairKey(dst, video, "") }

// PairKey appends the identity of a (user, video) pair to dst, as
// [Partition.ScanPairs] reports it.
func PairKey(dst []byte, video, user string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(video)))
	dst = append(dst, video...)
	return append(dst, user...)
}

// Video returns a video's state with its like times.
func (p *Partition) Video(id string) (*Video, bool, error) {
	v := new(Video) // ReadVideo resets it
	if ok, err := p.ReadVideo(v, id); !ok || err != nil {
		return nil, ok, err
	}
	return v, true, nil
}

// ReadVideo reads a video's state into vid, reusing the arrays it holds
// (see Video.Reset); ok is false if the video has none, and vid is then a
// new video.
func (p *Partition) ReadVideo(vid *Video, id string) (ok bool, err error) {
	vid.Reset(id)
	v, ok, err := p.get(p.keyOf(kindVideo, id), nil)
	if !ok || err != nil {
		return ok, err
	}
	if err := vid.unmarshal(v); err != nil {
		return false, fmt.Errorf("read video %q: %w", id, err)
	}
	if vid.bucketed {
		prefix := binary.AppendUvarint(nil, uint64(len(id)))
		prefix = append(prefix, id...)
		parts := int32(0) // of bucket vid.bucketsHi
		err := p.scanPrefix(kindTimes, prefix, func(k, val []byte) error {
			if len(k) != len(prefix)+12 {
				return fmt.Errorf("bad like-time key for video %q", id)
			}
			bucket := int64(binary.BigEndian.Uint64(k[len(prefix):]))
			part := int32(binary.BigEndian.Uint32(k[len(prefix)+8:]))
			switch {
			case vid.bucketsHi < vid.bucketsLo || bucket != vid.bucketsHi:
				if parts > 1 {
					vid.many = append(vid.many, bucketParts{vid.bucketsHi, parts})
				}
				if vid.bucketsHi < vid.bucketsLo {
					vid.bucketsLo = bucket
				}
				vid.bucketsHi, parts = bucket, 0
				vid.markBucket(bucket)
			}
			if part != parts {
				return fmt.Errorf("like times of video %q: bucket %d has part %d after %d parts", id, bucket, part, parts)
			}
			parts++
			var err error
			vid.Entries, err = decodeEntries(vid.Entries, val, bucket*bucketMS)
			return err
		})
		if parts > 1 {
			vid.many = append(vid.many, bucketParts{vid.bucketsHi, parts})
		}
		if err != nil {
			return false, fmt.Errorf("read like times of video %q: %w", id, err)
		}
	}
	return true, nil
}

func (p *Partition) scanPrefix(kind byte, prefix []byte, fn func(key, value []byte) error) error {
	lo := append(append(append([]byte{}, p.prefix[:]...), kind), prefix...)
	hi := append(append([]byte{}, lo...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	it, err := p.db.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	base := len(p.prefix) + 1
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()[base:], it.Value()); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// AccountBucket is an account's likes in one bucket of event time, and the
// lockstep key of its newest like there with Sec, 1 + that like's second
// in the bucket (0: no key kept).
type AccountBucket struct {
	Bucket, N int64
	Key       uint32
	Sec       uint16
}

// An account's record is kept under an epoch, a number its writer
// gives (the account stage: the span of event time its newest like is
// in), first in its key: the records of an epoch are one range of keys,
// which DeleteAccountEpochs drops whole once no like can read them.

// accountKey returns the key of user's record in epoch, in p.key or
// w.key's array.
func accountKey(dst []byte, prefix [5]byte, epoch int64, user string) []byte {
	dst = append(append(dst[:0], prefix[:]...), kindAccounts)
	dst = binary.BigEndian.AppendUint64(dst, uint64(epoch)^1<<63) // in order, negative ones too
	return append(dst, user...)
}

// splitAccountKey returns the epoch and the user of an account's key
// without its partition and kind (as accountKey writes them).
func splitAccountKey(k []byte) (epoch int64, user []byte, err error) {
	if len(k) < 8 {
		return 0, nil, fmt.Errorf("read account key %q: %w", k, errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(k) ^ 1<<63), k[8:], nil
}

// AccountEpochs returns the epochs the stored accounts' records are in,
// in order.
func (p *Partition) AccountEpochs() ([]int64, error) {
	if p.db.db == nil {
		return nil, ErrClosed
	}
	lo := append(append([]byte{}, p.prefix[:]...), kindAccounts)
	hi := append(append([]byte{}, p.prefix[:]...), kindAccounts+1)
	it, err := p.db.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var eps []int64
	for ok := it.First(); ok; {
		ep, _, err := splitAccountKey(it.Key()[len(lo):])
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		eps = append(eps, ep)
		if ep == math.MaxInt64 {
			break
		}
		ok = it.SeekGE(accountKey(nil, p.prefix, ep+1, ""))
	}
	return eps, errors.Join(it.Error(), it.Close())
}

// Account appends an account's stored like counts to dst, oldest bucket
// first: those of its record in the latest of epochs (in order) from hi
// down to lo that has one.
func (p *Partition) Account(user string, epochs []int64, lo, hi int64, dst []AccountBucket) ([]AccountBucket, error) {
	var v []byte
	found := false
	for i := len(epochs) - 1; !found && i >= 0 && epochs[i] >= lo; i-- {
		if epochs[i] > hi {
			continue
		}
		p.key = accountKey(p.key, p.prefix, epochs[i], user)
		var err error
		if v, found, err = p.get(p.key, nil); err != nil {
			return dst, err
		}
	}
	if !found {
		return dst, nil
	}
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)) {
		return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
	}
	v = v[k:]
	var b int64
	for i := range n {
		d, k := binary.Varint(v)
		if k <= 0 {
			return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
		}
		v = v[k:]
		c, k := binary.Uvarint(v)
		if k <= 0 {
			return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
		}
		v = v[k:]
		key, k := binary.Uvarint(v)
		if k <= 0 || key > math.MaxUint32 {
			return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
		}
		v = v[k:]
		sec, k := binary.Uvarint(v)
		if k <= 0 || sec > math.MaxUint16 {
			return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
		}
		v = v[k:]
		if i == 0 {
			b = d
		} else {
			b += d
		}
		dst = append(dst, AccountBucket{Bucket: b, N: int64(c), Key: uint32(key), Sec: uint16(sec)})
	}
	if len(v) != 0 {
		return dst, fmt.Errorf("read account %q: %w", user, errCorrupt)
	}
	return dst, nil
}

// ScanPending calls fn with each video marked as having state newer than
// its last emitted record, in key order.
func (p *Partition) ScanPending(fn func(video string) error) error {
	return p.scan(kindPending, func(k, _ []byte) error { return fn(string(k)) })
}

// ScanCandidates calls fn with each trending candidate, in key order.
func (p *Partition) ScanCandidates(fn func(c Candidate) error) error {
	return p.scan(kindCandidate, func(k, v []byte) error {
		c := Candidate{Video: string(k)}
		if err := c.unmarshal(v); err != nil {
			return fmt.Errorf("read candidate %q: %w", k, err)
		}
		return fn(c)
	})
}

// ScanReports calls fn with every stored trending report, by tick then
// partition.
func (p *Partition) ScanReports(fn func(tick int64, part int32, value []byte) error) error {
	return p.scan(kindReport, func(k, v []byte) error {
		if len(k) != 12 {
			return errCorrupt
		}
		return fn(int64(binary.BigEndian.Uint64(k)), int32(binary.BigEndian.Uint32(k[8:])), v)
	})
}

// ScanBuffered calls fn with every event held in the reorder buffer, in
// event-time order.
func (p *Partition) ScanBuffered(fn func(value []byte) error) error {
	return p.scan(kindBuffered, func(_, v []byte) error { return fn(v) })
}

// ScanHeld calls fn with every like held by the account stage, in
// event-time order.
func (p *Partition) ScanHeld(fn func(value []byte) error) error {
	return p.scan(kindHeld, func(_, v []byte) error { return fn(v) })
}

// Writer collects the changes of one commit in one batch.
type Writer struct {
	p       *Partition
	b       *pebble.Batch
	fork    bool // the batch is its own, to Join into another's
	logged  bool // for a changelog: see Fork
	buf     []byte
	key     []byte
	bucket  []byte
	times   []byte  // the prefix of a video's like-time keys
	entries []Entry // scratch for a sealed bucket's like times
	// unlogged are ranges of keys deleted in the store but not in the
	// changelog (DeleteAccountEpochs): deleted at the end of the commit's
	// batch, after the changes a changelog reads from it.
	unlogged [][2][]byte
}

// Change is one change of state as a changelog carries it: a key and its
// new value, or a deletion (Delete). Ranges deleted in the store become
// one Change per key they held, so that a compacted changelog forgets
// them too.
type Change struct {
	Key, Value []byte
	Delete     bool
}

// NewWriter starts a commit.
func (p *Partition) NewWriter() *Writer {
	return &Writer{p: p, b: p.db.newBatch()}
}

// For returns a writer of partition q that adds to the same batch as w, so
// that the state of several partitions is committed at once. Commit the
// batch through w.
func (w *Writer) For(q *Partition) *Writer {
	return &Writer{p: q, b: w.b}
}

// Fork returns a writer of partition q with a batch of its own, so that
// partitions can write their changes on goroutines of their own; Join adds
// a fork's changes to w's batch. A logged fork writes its changes as a
// changelog carries them (a range deletion becomes a deletion of each key
// the range holds), and Changes lists them: its batch is the partition's
// changes of the commit, in order.
func (w *Writer) Fork(q *Partition, logged bool) *Writer {
	return &Writer{p: q, b: q.db.forkBatch(), fork: true, logged: logged}
}

// Changes calls fn with each change of a fork, in order; the key and
// value are good until the fork is joined or aborted.
func (w *Writer) Changes(fn func(c Change) error) error {
	if !w.fork {
		return errors.New("store: only a fork lists its changes")
	}
	for r := w.b.Reader(); ; {
		c, ok, err := nextChange(&r)
		if !ok {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

// Count is the number of changes in w's batch: in a logged fork's, the
// changes Changes lists.
func (w *Writer) Count() int { return int(w.b.Count()) }

// ChangeReader reads the changes of a commit's batch in order, as
// Changes lists a fork's: those of the logged forks joined into it come
// first, each fork's in a row, in the order they were joined. A copy
// keeps its place. Keys and values are good until the commit is made or
// aborted.
type ChangeReader struct{ r batchrepr.Reader }

// ChangeReader returns a reader of w's batch from its first change.
func (w *Writer) ChangeReader() ChangeReader { return ChangeReader{w.b.Reader()} }

// Next returns the next change; ok is false at the end (err nil) or when
// the batch holds a change a changelog cannot carry (err says which).
func (r *ChangeReader) Next() (c Change, ok bool, err error) { return nextChange(&r.r) }

func nextChange(r *batchrepr.Reader) (Change, bool, error) {
	kind, k, v, ok, err := r.Next()
	if !ok {
		return Change{}, false, err
	}
	switch kind {
	case pebble.InternalKeyKindSet:
		return Change{Key: k, Value: v}, true, nil
	case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete:
		return Change{Key: k, Delete: true}, true, nil
	}
	return Change{}, false, fmt.Errorf("store: a logged commit holds a change of kind %v", kind)
}

// Join adds the changes of fork f to w's batch, after those already in it,
// and releases f.
func (w *Writer) Join(f *Writer) error {
	if !f.fork || w.fork {
		return errors.New("store: only a fork joins, and only into the commit's writer")
	}
	err := w.b.Apply(f.b, nil)
	f.p.db.releaseFork(f.b)
	f.b = nil
	w.unlogged = append(w.unlogged, f.unlogged...)
	f.unlogged = nil
	return err
}

func (w *Writer) set(k, v []byte, _ *pebble.WriteOptions) error {
	return w.b.Set(k, v, nil)
}

func (w *Writer) delete(k []byte, _ *pebble.WriteOptions) error {
	return w.b.Delete(k, nil)
}

// singleDelete deletes a key set once: a held or buffered event, whose key
// holds its event time and a number never given twice, and is written
// once, by the commit after it was taken (Restore keeps this true). When
// Pebble's flush or compaction brings a single deletion and its value
// together, both go: an event held for a few seconds then never leaves
// the memtable, where a deletion would have stayed as a tombstone through
// every level, and its value until the tombstone reached it.
func (w *Writer) singleDelete(k []byte) error {
	return w.b.SingleDelete(k, nil)
}

func (w *Writer) deleteRange(lo, hi []byte, _ *pebble.WriteOptions) error {
	if !w.logged {
		return w.b.DeleteRange(lo, hi, nil)
	}
	// A logged commit deletes the keys the range holds one by one, in key
	// order, as the changelog has them: a range tombstone would be
	// forgotten by a compacted changelog. The keys it holds are those the
	// state has that this commit did not delete, and those this commit
	// set. The batch is not indexed to find the latter (the index of every
	// key a commit writes was 6% of all a catch-up allocated and 2% of its
	// CPU, for this one reader): the fork's batch, the partition's changes
	// of the commit, says which keys of the range it set or deleted last,
	// and range deletions are few (a merger's reports, a video's like
	// times only when their buckets span more than maxPointDeletes).
	last := map[string]bool{} // key of the range -> set (true) or deleted last in this commit
	if err := w.Changes(func(c Change) error {
		if bytes.Compare(c.Key, lo) >= 0 && bytes.Compare(c.Key, hi) < 0 {
			last[string(c.Key)] = !c.Delete
		}
		return nil
	}); err != nil {
		return err
	}
	var keys []string
	it, err := w.p.db.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if _, touched := last[string(it.Key())]; !touched {
			keys = append(keys, string(it.Key()))
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for k, set := range last {
		if set {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := w.b.Delete([]byte(k), nil); err != nil {
			return err
		}
	}
	return nil
}

// SetChangelogEnd records, beside the partition's state and outside it
// (it is not itself logged), the changelog offset the state reflects.
func (w *Writer) SetChangelogEnd(off int64) error {
	return w.b.Set(w.p.clogKey(), binary.AppendVarint(nil, off), nil)
}

func (p *Partition) clogKey() []byte {
	return append([]byte("\x00clog"), p.prefix[1:]...)
}

// ChangelogEnd is the changelog offset the partition's local state
// reflects (0: none recorded).
func (p *Partition) ChangelogEnd() (int64, error) {
	v, ok, err := p.get(p.clogKey(), nil)
	if !ok || err != nil {
		return 0, err
	}
	off, n := binary.Varint(v)
	if n <= 0 {
		return 0, errCorrupt
	}
	return off, nil
}

// IsMetaKey reports whether a changelog key is a partition's meta record:
// the last change of every commit.
func IsMetaKey(key []byte) bool {
	return len(key) == 6 && key[0] == 'P' && key[5] == kindMeta
}

// setOnce reports whether a key (without its partition's prefix) is of a
// kind written once and removed with a single deletion (Writer.singleDelete).
func setOnce(k []byte) bool {
	return len(k) > 0 && (k[0] == kindBuffered || k[0] == kindHeld)
}

// Wipe drops every piece of the partition's local state.
func (p *Partition) Wipe() error {
	if p.db.db == nil {
		return ErrClosed
	}
	lo := p.prefix[:]
	hi := append(append([]byte{}, p.prefix[:]...), 0xff)
	b := p.db.db.NewBatch()
	if err := errors.Join(b.DeleteRange(lo, hi, nil), b.Delete(p.clogKey(), nil)); err != nil {
		return errors.Join(err, b.Close())
	}
	return p.db.commit(b)
}

// Restore applies changes read back from the changelog, then records end
// as the changelog offset they reach; with end < 0 it leaves the offset
// recorded as it is (a restore applies a long run of changes in parts,
// and records the offset at the end of a complete commit).
func (p *Partition) Restore(changes []Change, end int64) error {
	if p.db.db == nil {
		return ErrClosed
	}
	b := p.db.db.NewBatch()
	for _, c := range changes {
		if !bytes.HasPrefix(c.Key, p.prefix[:]) {
			b.Close()
			return fmt.Errorf("store: changelog key %q is not of this partition", c.Key)
		}
		var err error
		switch {
		case c.Delete:
			err = b.Delete(c.Key, nil)
		case setOnce(c.Key[len(p.prefix):]):
			// A commit whose changelog records were sent but whose batch
			// was lost (a crash in between) may have set this event's
			// key again, with the same number, in the commit that
			// replaced it: the changelog can hold two values of it. A
			// deletion before each keeps the single deletion that will
			// drop it from bringing back the older one.
			err = errors.Join(b.Delete(c.Key, nil), b.Set(c.Key, c.Value, nil))
		default:
			err = b.Set(c.Key, c.Value, nil)
		}
		if err != nil {
			b.Close()
			return err
		}
	}
	if end >= 0 {
		if err := b.Set(p.clogKey(), binary.AppendVarint(nil, end), nil); err != nil {
			b.Close()
			return err
		}
	}
	return p.db.commit(b)
}

// KeyPartition returns the partition a store key, as the changelog
// names it, belongs to.
func KeyPartition(key []byte) (int32, bool) {
	if len(key) < 5 || key[0] != 'P' {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(key[1:5])), true
}

// Committed reads a key of the partition, as the changelog names it, as
// it is committed (appended to dst), to write it to the changelog again.
func (p *Partition) Committed(key, dst []byte) ([]byte, bool, error) {
	if !bytes.HasPrefix(key, p.prefix[:]) {
		return dst, false, fmt.Errorf("store: changelog key %q is not of this partition", key)
	}
	return p.get(key, dst)
}

func (w *Writer) keyOf(kind byte, parts ...string) []byte {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kind)
	for i, s := range parts {
		if i < len(parts)-1 {
			w.key = binary.AppendUvarint(w.key, uint64(len(s)))
		}
		w.key = append(w.key, s...)
	}
	return w.key
}

// SetMeta writes the meta record.
func (w *Writer) SetMeta(m *Meta) error {
	w.buf = m.marshal(w.buf[:0])
	return w.set(w.keyOf(kindMeta), w.buf, nil)
}

// SetPairEncoded writes a pair given as its [PairKey] and its encoding
// ([Pair.Append]).
func (w *Writer) SetPairEncoded(key, enc []byte) error {
	w.key = append(append(append(w.key[:0], w.p.prefix[:]...), kindPair), key...)
	return w.set(w.key, enc, nil)
}

// SetAccount writes an account's recent like counts, oldest bucket first,
// as its record in epoch; with none it deletes that record.
func (w *Writer) SetAccount(epoch int64, user string, bs []AccountBucket) error {
	w.key = accountKey(w.key, w.p.prefix, epoch, user)
	k := w.key
	if len(bs) == 0 {
		return w.delete(k, nil)
	}
	w.buf = binary.AppendUvarint(w.buf[:0], uint64(len(bs)))
	prev := int64(0)
	for _, b := range bs {
		w.buf = binary.AppendVarint(w.buf, b.Bucket-prev)
		w.buf = binary.AppendUvarint(w.buf, uint64(b.N))
		w.buf = binary.AppendUvarint(w.buf, uint64(b.Key))
		w.buf = binary.AppendUvarint(w.buf, uint64(b.Sec))
		prev = b.Bucket
	}
	return w.set(k, w.buf, nil)
}

// DeleteAccountEpochs deletes the accounts' records of every epoch before
// below. A logged commit does not log it: the changelog keeps the
// records, as it kept every account's before format 12, and a state
// restored from it deletes them again at its first commit. Logged as a
// deletion of each record, the epochs a catch-up dropped wrote as many
// tombstones into the store, and it took 40% more CPU a like
// (bench/RESULTS.md).
func (w *Writer) DeleteAccountEpochs(below int64) error {
	lo := accountKey(nil, w.p.prefix, math.MinInt64, "")
	hi := accountKey(nil, w.p.prefix, below, "")
	if w.logged {
		w.unlogged = append(w.unlogged, [2][]byte{lo, hi})
		return nil
	}
	return w.b.DeleteRange(lo, hi, nil)
}

// SetReport stores a partition's trending lists of a tick until merged.
func (w *Writer) SetReport(tick int64, part int32, value []byte) error {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kindReport)
	w.key = binary.BigEndian.AppendUint64(w.key, uint64(tick))
	w.key = binary.BigEndian.AppendUint32(w.key, uint32(part))
	return w.set(w.key, value, nil)
}

// DeleteReportsThrough drops the stored reports of every tick up to and
// including tick: one range deletion.
func (w *Writer) DeleteReportsThrough(tick int64) error {
	lo := append(append([]byte{}, w.p.prefix[:]...), kindReport)
	hi := binary.BigEndian.AppendUint64(append([]byte{}, lo...), uint64(tick+1))
	return w.deleteRange(lo, hi, nil)
}

// SetBuffered stores an event held in the reorder buffer; seq makes the
// key unique among events of one time.
func (w *Writer) SetBuffered(ts, seq int64, value []byte) error {
	return w.set(w.bufferedKey(kindBuffered, ts, seq), value, nil)
}

// DeleteBuffered drops one buffered event, once applied.
func (w *Writer) DeleteBuffered(ts, seq int64) error {
	return w.singleDelete(w.bufferedKey(kindBuffered, ts, seq))
}

// SetHeld stores a like held by the account stage; seq makes the key
// unique among likes of one time.
func (w *Writer) SetHeld(ts, seq int64, value []byte) error {
	return w.set(w.bufferedKey(kindHeld, ts, seq), value, nil)
}

// DeleteHeld drops one held like, once weighed and sent on.
func (w *Writer) DeleteHeld(ts, seq int64) error {
	return w.singleDelete(w.bufferedKey(kindHeld, ts, seq))
}

// bufferedKey is the key of a buffered event or a held like, in w.key.
func (w *Writer) bufferedKey(kind byte, ts, seq int64) []byte {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kind)
	w.key = binary.BigEndian.AppendUint64(w.key, uint64(ts))
	w.key = binary.BigEndian.AppendUint64(w.key, uint64(seq))
	return w.key
}

// SetPending marks or unmarks a video as having unemitted state.
func (w *Writer) SetPending(video string, pending bool) error {
	k := w.keyOf(kindPending, video)
	if pending {
		return w.set(k, nil, nil)
	}
	return w.delete(k, nil)
}

// SetCandidate writes a trending candidate.
func (w *Writer) SetCandidate(c *Candidate) error {
	w.buf = c.marshal(w.buf[:0])
	return w.set(w.keyOf(kindCandidate, c.Video), w.buf, nil)
}

// DeleteCandidate removes a trending candidate.
func (w *Writer) DeleteCandidate(video string) error {
	return w.delete(w.keyOf(kindCandidate, video), nil)
}

// SetVideo writes a video's header and the like times changed since it
// was last written, then marks it clean.
//
// Like times are stored by bucket of event time, each bucket in parts of
// partEntries, in order: P<part> 't' video bucket part. A write rewrites
// the parts from the one that holds the first changed like time, and
// deletes the parts and buckets the video no longer has; the video tracks
// which buckets, and how many parts of each, are in the store, so that
// nothing is read to find them.
func (w *Writer) SetVideo(v *Video) error {
	wasBucketed := v.bucketed
	v.bucketed = len(v.Entries)+v.SealedLen() > inlineEntries
	if v.sealed != nil && (!v.bucketed || v.dirtyFrom < v.SealedEnd()) {
		// Not expected (Seal and the engine keep the changes after the
		// sealed like times); should it happen, Entries' write covers all.
		v.Unseal(minTime)
	}
	w.buf = v.marshal(w.buf[:0])
	if err := w.set(w.keyOf(kindVideo, v.ID), w.buf, nil); err != nil {
		return err
	}
	if !v.bucketed && !wasBucketed {
		v.dirtyFrom = noneDirty
		v.written, v.writtenOK = append(v.written[:0], w.buf...), true
		return nil
	}
	v.writtenOK = false
	w.times = append(w.times[:0], w.keyOf(kindTimes, v.ID, "")...)
	partKey := func(h int64, j int) []byte {
		k := append(w.bucket[:0], w.times...)
		k = binary.BigEndian.AppendUint64(k, uint64(h))
		k = binary.BigEndian.AppendUint32(k, uint32(j))
		w.bucket = k
		return k
	}
	if err := w.setSealed(v, partKey); err != nil {
		return err
	}
	es := v.Entries
	bucketOf := func(i int) int64 { return floorDiv(es[i].TS, bucketMS) }
	// firstOf is the index of the first like time at or after ts.
	firstOf := func(ts int64) int {
		i, _ := slices.BinarySearchFunc(es, ts, func(e Entry, ts int64) int { return cmp.Compare(e.TS, ts) })
		return i
	}
	firstBucket := int64(math.MaxInt64) // buckets before the first standing like are gone
	if v.sealed != nil {
		firstBucket = v.sealed.buckets[0].bucket
	} else if v.bucketed && len(es) > 0 {
		firstBucket = bucketOf(0)
	}
	// What to write: the buckets from fromBucket on (none when the entries
	// move back in), from the like time at i (the start of the part that
	// holds the first changed one).
	fromBucket, i := int64(math.MaxInt64), len(es)
	if v.bucketed && v.dirtyFrom != noneDirty {
		fromBucket, i = math.MinInt64, 0
		if wasBucketed && v.dirtyFrom != minTime {
			fromBucket = floorDiv(v.dirtyFrom, bucketMS)
			// The oldest bucket may have lost like times at its start
			// that its stored parts still hold (they are dropped when
			// read): a change there rewrites it whole.
			if fromBucket > firstBucket {
				// From the start of the part before the first changed
				// like time (of the last part when the changes removed
				// every like after it, whose parts must go).
				start := firstOf(fromBucket * bucketMS)
				i = start + (max(firstOf(v.dirtyFrom)-start, 1)-1)/partEntries*partEntries
			}
		}
	}
	// Delete the stored buckets that are before the first like or will be
	// rewritten without likes.
	if v.bucketsLo <= v.bucketsHi {
		if v.bucketsHi-v.bucketsLo > maxPointDeletes {
			// Entries span a day at most, so this is not expected; should
			// it happen, two range deletions bound the work, and the
			// buckets from fromBucket are written whole.
			keep := min(firstBucket, fromBucket, v.bucketsHi+1)
			if err := w.deleteBuckets(v.bucketsLo, keep); err != nil {
				return err
			}
			if err := w.deleteBuckets(max(fromBucket, v.bucketsLo), v.bucketsHi+1); err != nil {
				return err
			}
			v.bucketsLo, v.bucketsHi = 0, -1 // v.many keeps the buckets before fromBucket
			if fromBucket != math.MaxInt64 && fromBucket != math.MinInt64 {
				i = firstOf(fromBucket * bucketMS)
			}
		}
		j := i
		for h := v.bucketsLo; h <= v.bucketsHi; h++ {
			if !v.storedBucket(h) {
				continue // no key: a gap between likes
			}
			for j < len(es) && bucketOf(j) < h {
				j++
			}
			rewritten := h >= fromBucket && j < len(es) && bucketOf(j) == h
			if (h < firstBucket || h >= fromBucket) && !rewritten {
				for k := range v.partsOf(h) {
					if err := w.delete(partKey(h, k), nil); err != nil {
						return err
					}
				}
			}
		}
	}
	// Rewrite every bucket from the first changed one, each from its part
	// that holds i, and delete the parts it no longer has.
	var many []bucketParts
	for i < len(es) {
		h := bucketOf(i)
		start := i
		if h == fromBucket {
			start = firstOf(h * bucketMS)
		}
		end := i
		for end < len(es) && bucketOf(end) == h {
			end++
		}
		for k := (i - start) / partEntries; i < end; k++ {
			next := min(i+partEntries, end)
			w.buf = encodeEntries(w.buf[:0], es[i:next], h*bucketMS)
			if err := w.set(partKey(h, k), w.buf, nil); err != nil {
				return err
			}
			i = next
		}
		parts := (end - start + partEntries - 1) / partEntries
		for k, was := parts, v.partsOf(h); k < was; k++ {
			if err := w.delete(partKey(h, k), nil); err != nil {
				return err
			}
		}
		if parts > 1 {
			many = append(many, bucketParts{h, int32(parts)})
		}
	}
	// What the store holds now: the buckets of the like times; the parts of
	// those before fromBucket as they were, of the others as written.
	if v.bucketed && (len(es) > 0 || v.sealed != nil) {
		kept := v.many[:0]
		for _, b := range v.many {
			if b.bucket >= firstBucket && b.bucket < fromBucket {
				kept = append(kept, b)
			}
		}
		v.many = append(kept, many...)
		v.bucketsLo = firstBucket
		if len(es) > 0 {
			v.bucketsHi = bucketOf(len(es) - 1)
		} else {
			v.bucketsHi = v.sealed.buckets[len(v.sealed.buckets)-1].bucket
		}
		v.stored = [storedWords]uint64{}
		if v.sealed != nil {
			for _, b := range v.sealed.buckets {
				v.markBucket(b.bucket)
			}
		}
		for k := 0; k < len(es); k = firstOf((bucketOf(k) + 1) * bucketMS) {
			v.markBucket(bucketOf(k))
		}
	} else {
		v.bucketsLo, v.bucketsHi, v.stored, v.many = 0, -1, [storedWords]uint64{}, nil
	}
	v.dirtyFrom = noneDirty
	return nil
}

// setSealed rewrites the sealed buckets of v that changed since written,
// whole, deletes the parts they no longer have, and lets go of those left
// empty.
func (w *Writer) setSealed(v *Video, partKey func(h int64, j int) []byte) error {
	s := v.sealed
	if s == nil || !s.dirty {
		return nil
	}
	empty := false
	for i := range s.buckets {
		b := &s.buckets[i]
		if !b.dirty {
			continue
		}
		w.entries = b.decode(w.entries[:0])
		parts := 0
		for k := 0; k < len(w.entries); k += partEntries {
			w.buf = encodeEntries(w.buf[:0], w.entries[k:min(k+partEntries, len(w.entries))], b.bucket*bucketMS)
			if err := w.set(partKey(b.bucket, parts), w.buf, nil); err != nil {
				return err
			}
			parts++
		}
		for k, was := parts, v.partsOf(b.bucket); k < was; k++ {
			if err := w.delete(partKey(b.bucket, k), nil); err != nil {
				return err
			}
		}
		v.setParts(b.bucket, parts)
		b.dirty = false
		empty = empty || b.n == 0
	}
	s.dirty = false
	if empty {
		s.buckets = slices.DeleteFunc(s.buckets, func(b sealedBucket) bool { return b.n == 0 })
		s.gen++
		if len(s.buckets) == 0 {
			v.sealed = nil
		}
	}
	return nil
}

// setParts records that bucket h has the given number of parts in the
// store (0: none; its stored bit is set by the caller).
func (v *Video) setParts(h int64, parts int) {
	i, ok := slices.BinarySearchFunc(v.many, h, func(b bucketParts, h int64) int { return cmp.Compare(b.bucket, h) })
	switch {
	case parts > 1 && ok:
		v.many[i].parts = int32(parts)
	case parts > 1:
		v.many = slices.Insert(v.many, i, bucketParts{h, int32(parts)})
	case ok:
		v.many = slices.Delete(v.many, i, i+1)
	}
}

// deleteBuckets deletes the like-time keys of buckets [lo, hi) under the
// video's prefix, w.times.
func (w *Writer) deleteBuckets(lo, hi int64) error {
	if lo >= hi {
		return nil
	}
	k := func(h int64) []byte {
		return binary.BigEndian.AppendUint64(append([]byte{}, w.times...), uint64(max(h, 0)))
	}
	return w.deleteRange(k(lo), k(hi), nil)
}

// maxPointDeletes is the most buckets of like times a write deletes one by
// one; a longer stretch goes in one range deletion.
const maxPointDeletes = 576 // two days

// Len is the size of the batch so far, in bytes.
func (w *Writer) Len() int { return w.b.Len() }

// Commit applies the batch atomically.
func (w *Writer) Commit() error {
	if w.fork {
		return errors.New("store: a fork is committed by joining it")
	}
	if w.p.db.db == nil {
		return ErrClosed
	}
	for _, r := range w.unlogged {
		if err := w.b.DeleteRange(r[0], r[1], nil); err != nil {
			return err
		}
	}
	w.unlogged = nil
	w.p.db.lastCommit.Store(int64(w.b.Len()))
	return w.p.db.commit(w.b)
}

// Abort discards the batch (a fork's is kept for the next fork).
func (w *Writer) Abort() error {
	switch {
	case w.b == nil: // a joined fork
		return nil
	case w.fork:
		w.p.db.releaseFork(w.b)
		w.b = nil
		return nil
	}
	return w.b.Close()
}

// quietLogger drops Pebble's routine messages; a fatal one ends the
// process with one clear line (see fatal).
type quietLogger struct{ dir string }

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (l quietLogger) Fatalf(format string, args ...interface{}) {
	fatal(l.dir, fmt.Sprintf(format, args...))
}
