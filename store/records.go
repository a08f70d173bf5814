package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/viralityhq/virality/scoring"
)

var errCorrupt = errors.New("store: corrupt record")

const (
	// bucketMS is the span of event time whose like times share a key,
	// once a video has more than inlineEntries.
	bucketMS      = 5 * 60_000
	inlineEntries = 16
	minTime       = math.MinInt64
	maxTime       = math.MaxInt64
	noneDirty     = math.MaxInt64
)

// Meta is what a commit records about its input and outputs.
type Meta struct {
	// Offset is the next input offset to read: of the file stream in a
	// group's meta record.
	Offset int64
	// MaxTS is the largest event time applied to the partition's state.
	MaxTS int64
	// NextTick is the next trending tick, ms (0: none yet).
	NextTick int64
	// Fingerprint names the settings the state was built with.
	Fingerprint string
	// Sinks are output positions at the commit (bytes written to a file),
	// so that a restart can cut outputs back to what the state reflects.
	Sinks []SinkPos
	// Merger is the opaque state of the trending merger.
	Merger []byte
	// Inputs are the sources that feed the partition, by source partition:
	// how far each has been taken, so that a record repeated after a crash
	// is recognised, and the largest event time each has seen, from which
	// the partition's watermark follows.
	Inputs []InputPos
	// Route is the state of the partition as a source: the router that
	// judges its input records and sends them on by video.
	Route RouteState
	// Repartitioned is the next offset to read of the partition's share of
	// the repartition topic (live service).
	Repartitioned int64
	// BufSeq numbers the events held in the reorder buffer.
	BufSeq int64
	// Stage is the state of the partition's account stage.
	Stage StageState
}

// StageState is how far the account stage of a partition got: the
// sources it takes likes from, how many events it has sent on, the
// number of the last like it held, the last bucket of like time it has
// closed (math.MinInt64: none), and the next offset of its share of the
// by-user topic (live service).
type StageState struct {
	Inputs  []InputPos
	Sent    int64
	HeldSeq int64
	Closed  int64
	ByUser  int64
	// Rates is the opaque state of the account threshold that follows
	// the traffic.
	Rates []byte
}

// InputPos is how far a partition has taken one source.
type InputPos struct {
	Source int32
	Offset int64 // next source offset expected
	MaxTS  int64 // the source's largest event time, as it reported it
	Idle   bool
}

// RouteState is the state of a router: the source's next offset, its
// largest agreed event time and the event times that ran ahead of it and
// wait for agreement.
type RouteState struct {
	Offset int64
	MaxTS  int64
	Ahead  []int64
}

// metaVersion is the version of the meta record's encoding; it comes
// first so that a binary never misreads a newer one.
const metaVersion = 3

func (m *Meta) marshal(b []byte) []byte {
	b = append(b, metaVersion)
	b = binary.AppendVarint(b, m.Offset)
	b = binary.AppendVarint(b, m.MaxTS)
	b = binary.AppendVarint(b, m.NextTick)
	b = appendString(b, m.Fingerprint)
	b = binary.AppendUvarint(b, uint64(len(m.Sinks)))
	for _, s := range m.Sinks {
		b = appendString(b, s.Name)
		b = binary.AppendVarint(b, s.Pos)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Merger)))
	b = append(b, m.Merger...)
	b = appendInputs(b, m.Inputs)
	b = binary.AppendVarint(b, m.Route.Offset)
	b = binary.AppendVarint(b, m.Route.MaxTS)
	b = binary.AppendUvarint(b, uint64(len(m.Route.Ahead)))
	for _, t := range m.Route.Ahead {
		b = binary.AppendVarint(b, t)
	}
	b = binary.AppendVarint(b, m.Repartitioned)
	b = binary.AppendVarint(b, m.BufSeq)
	b = appendInputs(b, m.Stage.Inputs)
	b = binary.AppendVarint(b, m.Stage.Sent)
	b = binary.AppendVarint(b, m.Stage.HeldSeq)
	b = binary.AppendVarint(b, m.Stage.Closed)
	b = binary.AppendVarint(b, m.Stage.ByUser)
	b = binary.AppendUvarint(b, uint64(len(m.Stage.Rates)))
	return append(b, m.Stage.Rates...)
}

func appendInputs(b []byte, ins []InputPos) []byte {
	b = binary.AppendUvarint(b, uint64(len(ins)))
	for _, in := range ins {
		b = binary.AppendVarint(b, int64(in.Source))
		b = binary.AppendVarint(b, in.Offset)
		b = binary.AppendVarint(b, in.MaxTS)
		idle := byte(0)
		if in.Idle {
			idle = 1
		}
		b = append(b, idle)
	}
	return b
}

func (r *reader) inputs() []InputPos {
	var ins []InputPos
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		ins = append(ins, InputPos{Source: int32(r.varint()), Offset: r.varint(), MaxTS: r.varint(), Idle: r.byte() == 1})
	}
	return ins
}

func (m *Meta) unmarshal(b []byte) error {
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != metaVersion {
		return fmt.Errorf("%w: meta record version %d, this binary reads %d", ErrFormat, v, metaVersion)
	}
	m.Offset = r.varint()
	m.MaxTS = r.varint()
	m.NextTick = r.varint()
	m.Fingerprint = r.string()
	n := r.uvarint()
	m.Sinks = nil
	for i := uint64(0); i < n && r.err == nil; i++ {
		m.Sinks = append(m.Sinks, SinkPos{Name: r.string(), Pos: r.varint()})
	}
	m.Merger = nil
	if s := r.string(); s != "" {
		m.Merger = []byte(s)
	}
	m.Inputs = r.inputs()
	m.Route.Offset = r.varint()
	m.Route.MaxTS = r.varint()
	n = r.uvarint()
	m.Route.Ahead = nil
	for i := uint64(0); i < n && r.err == nil; i++ {
		m.Route.Ahead = append(m.Route.Ahead, r.varint())
	}
	m.Repartitioned = r.varint()
	m.BufSeq = r.varint()
	m.Stage.Inputs = r.inputs()
	m.Stage.Sent = r.varint()
	m.Stage.HeldSeq = r.varint()
	m.Stage.Closed = r.varint()
	m.Stage.ByUser = r.varint()
	m.Stage.Rates = nil
	if s := r.string(); s != "" {
		m.Stage.Rates = []byte(s)
	}
	return r.done()
}

// SinkPos is an output's position at a commit.
type SinkPos struct {
	Name string
	Pos  int64
}

// Like is one like event as a pair remembers it.
type Like struct {
	TS      int64
	Weight  int64 // account weight, fixed point (scoring.WeightOne)
	Damp    scoring.Damping
	Region  string
	EventID string
}

// appendWeight encodes a weight with its damping signals (dampBits of
// them) in one number.
func appendWeight(b []byte, w int64, d scoring.Damping) []byte {
	return binary.AppendUvarint(b, uint64(w)<<dampBits|uint64(d))
}

// dampBits is the number of damping signals a stored weight carries.
const dampBits = 2

func splitWeight(x uint64) (int64, scoring.Damping) {
	return int64(x >> dampBits), scoring.Damping(x & (1<<dampBits - 1))
}

// Pair is the state of one (user, video) pair: enough to place any later
// event exactly as if all had arrived sorted by event time.
type Pair struct {
	// Liked: a like stands. Like is the standing like: the first like after
	// the last unlike.
	Liked bool
	Like  Like
	// EverLiked: the user gave at least one like.
	EverLiked bool
	// LastUnlike is the event time of the latest unlike (0: none).
	LastUnlike int64
	// Later are likes after Like that a late unlike between the two could
	// still make the standing like; they are dropped once the watermark
	// passes them.
	Later []Like
}

const (
	pairLiked = 1 << iota
	pairEverLiked
)

// Append appends p's encoding, as the store holds it, to b.
func (p *Pair) Append(b []byte) []byte { return p.marshal(b) }

// Decode sets p from its encoding ([Pair.Append]).
func (p *Pair) Decode(b []byte) error { return p.unmarshal(b) }

func (p *Pair) marshal(b []byte) []byte {
	var flags byte
	if p.Liked {
		flags |= pairLiked
	}
	if p.EverLiked {
		flags |= pairEverLiked
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, p.LastUnlike)
	if p.Liked {
		b = appendLike(b, &p.Like)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Later)))
	for i := range p.Later {
		b = appendLike(b, &p.Later[i])
	}
	return b
}

// TrimPair trims, in place, what no event at or after wm can need from a
// pair's encoding ([Pair.Append]): the event ID of a standing like before
// wm, when the pair keeps no later like. The ID only orders likes of one
// pair with the same time (ties go by event ID), and no like at that time
// comes any more. It returns the encoding, shorter or as it was (as
// it was too when it does not read). A pair takes about 22 bytes with
// generated IDs beside its key, 8 of them its event ID, and a UUID takes
// 36: every pair is written once, flushed and compacted.
//
// wm is a watermark: no event before it arrives any more.
func TrimPair(b []byte, wm int64) []byte {
	r := reader{b: b}
	if r.byte()&pairLiked == 0 {
		return b
	}
	r.varint() // LastUnlike
	if ts := r.varint(); ts >= wm {
		return b
	}
	r.uvarint()    // weight and damping
	r.skipString() // region
	at := len(b) - len(r.b)
	r.skipString() // event ID
	if r.err != nil || len(r.b) != 1 || r.b[0] != 0 || at+2 >= len(b) {
		return b // later likes, an empty ID, or not a pair
	}
	b[at], b[at+1] = 0, 0 // an empty ID, no later likes
	return b[:at+2]
}

func appendLike(b []byte, l *Like) []byte {
	b = binary.AppendVarint(b, l.TS)
	b = appendWeight(b, l.Weight, l.Damp)
	b = appendString(b, l.Region)
	return appendString(b, l.EventID)
}

func (r *reader) like() Like {
	l := Like{TS: r.varint()}
	l.Weight, l.Damp = splitWeight(r.uvarint())
	l.Region, l.EventID = r.string(), r.string()
	return l
}

func (p *Pair) unmarshal(b []byte) error {
	r := reader{b: b}
	flags := r.byte()
	p.Liked = flags&pairLiked != 0
	p.EverLiked = flags&pairEverLiked != 0
	p.LastUnlike = r.varint()
	p.Like = Like{}
	if p.Liked {
		p.Like = r.like()
	}
	n := r.uvarint()
	p.Later = nil
	for i := uint64(0); i < n && r.err == nil; i++ {
		p.Later = append(p.Later, r.like())
	}
	return r.done()
}

// Entry is one standing like in a video's like times.
//
// Weights are at most scoring.WeightOne, so an Entry takes 16 bytes, not
// 24: a popular video holds hundreds of thousands of like times of the
// last day, and the like times of a few such videos held 80 MB of a live
// service's heap under a 512 MiB budget (bench/RESULTS.md).
type Entry struct {
	TS     int64
	Weight int32
	Damp   scoring.Damping
}

// RegionCount is a video's standing likes from one region.
type RegionCount struct {
	Region string
	Likes  int64
}

// Video is the state of one video.
type Video struct {
	ID        string
	Clock     int64 // largest event time applied
	FirstLike int64 // event time of the first like (0: none)
	Likes     int64 // standing likes
	Unique    int64 // users with at least one like
	Regions   []RegionCount
	// Entries are the standing likes with like time in (Clock-24h, Clock],
	// sorted by time then weight, after those held sealed (times.go).
	Entries []Entry
	Decay   [scoring.NumHalfLives][]scoring.DecaySum
	// Lockstep is the video's lockstep tracker, encoded by the processor
	// (empty: none). LockFrom .. LockTo (event times, inclusive; 0, 0:
	// none) is the span whose likes count as lockstep because the video
	// was found to be a campaign.
	Lockstep         []byte
	LockFrom, LockTo int64
	// Emission: the last emitted record.
	Seq        int64
	LastEmitTS int64
	LastScore  float64
	Pending    bool // state changed since the last emitted record

	bucketed  bool
	dirtyFrom int64 // like times at or after this changed since the last write
	// buckets: the buckets of like-time keys in the store, [lo, hi]; empty
	// (hi < lo) when there are none. The keys are exactly the buckets of the
	// entries last written, so a write deletes the buckets it no longer has
	// one by one, without reading the store; stored says which buckets of
	// the range hold a key (likes leave gaps).
	bucketsLo, bucketsHi int64
	stored               [storedWords]uint64
	// many are the stored buckets of more than one part, with their
	// number of parts, by bucket.
	many []bucketParts
	// sealed are the like times before Entries, held as the store holds
	// them (times.go); nil: none.
	sealed *sealedTimes
	// written is v's record as SetVideo last wrote it, when writtenOK
	// (its like times inline): AppendPacked, which packs only a video
	// written since its last change, copies it rather than encode v
	// again. Most videos the cache lets go were written at the last
	// commit they changed in, and encoding each again, from memory not
	// touched since, took half of what letting them go cost B1.
	written   []byte
	writtenOK bool
}

// WrittenBytes is the memory v's copy of its written record takes.
func (v *Video) WrittenBytes() int64 { return int64(cap(v.written)) }

// bucketParts is a bucket of like times stored in more than one part.
type bucketParts struct {
	bucket int64
	parts  int32
}

// partEntries is the most like times one key holds. A bucket's like
// times are split into parts of partEntries in order, so that a like
// added at the end of a busy bucket rewrites the bucket's last part, not
// all of its likes (a popular video gets thousands in 5 minutes, and every
// commit would write them all again).
const partEntries = 64

// partsOf returns the number of parts bucket h has in the store.
func (v *Video) partsOf(h int64) int {
	if h < v.bucketsLo || h > v.bucketsHi || !v.storedBucket(h) {
		return 0
	}
	i, ok := slices.BinarySearchFunc(v.many, h, func(b bucketParts, h int64) int { return cmp.Compare(b.bucket, h) })
	if !ok {
		return 1
	}
	return int(v.many[i].parts)
}

// TrackedBytes is the memory v holds to track its keys in the store.
func (v *Video) TrackedBytes() int64 { return 16 * int64(cap(v.many)) }

// storedWords bound the buckets whose keys a video tracks one by one:
// 320, more than a day of like times and the lateness after it. A bucket
// past them is taken to have a key.
const storedWords = 5

// markBucket records that bucket h, at or after bucketsLo, has a key.
func (v *Video) markBucket(h int64) {
	if d := h - v.bucketsLo; d >= 0 && d < storedWords*64 {
		v.stored[d/64] |= 1 << (d % 64)
	}
}

// storedBucket reports whether bucket h of [bucketsLo, bucketsHi] has a
// key.
func (v *Video) storedBucket(h int64) bool {
	d := h - v.bucketsLo
	if d < 0 || d >= storedWords*64 {
		return d >= 0
	}
	return v.stored[d/64]&(1<<(d%64)) != 0
}

// NewVideo returns the state of a video never seen before.
func NewVideo(id string) *Video { return &Video{ID: id, dirtyFrom: minTime, bucketsHi: -1} }

// Reset makes v the state of a new video id (as NewVideo), keeping the
// arrays of its like times, regions, decay sums and lockstep tracker for
// Unpack or Partition.ReadVideo to decode another video into: reading a
// video the cache let go allocated a tenth of B1's bytes. The
// caller must hold no other reference to v's slices.
func (v *Video) Reset(id string) {
	*v = Video{ID: id, Regions: v.Regions[:0], Entries: v.Entries[:0], Decay: v.Decay,
		Lockstep: v.Lockstep[:0], dirtyFrom: minTime, bucketsHi: -1, written: v.written[:0]}
	for h := range v.Decay {
		v.Decay[h] = v.Decay[h][:0]
	}
}

// TimesChanged records that like times at or after ts changed.
func (v *Video) TimesChanged(ts int64) { v.dirtyFrom = min(v.dirtyFrom, ts) }

// marshal appends v's record, as unmarshal reads it. Times are written
// as their distance from Clock, and decay epochs from the epoch Clock is
// in, then from each other: most lie within a day of it, and take one to
// four bytes instead of six (B1's video records a sixth smaller, its
// commits 6% fewer bytes; bench/RESULTS.md).
func (v *Video) marshal(b []byte) []byte {
	b = binary.AppendVarint(b, v.Clock)
	b = binary.AppendVarint(b, v.Clock-v.FirstLike)
	b = binary.AppendVarint(b, v.Likes)
	b = binary.AppendVarint(b, v.Unique)
	b = binary.AppendUvarint(b, uint64(len(v.Regions)))
	for _, rc := range v.Regions {
		b = appendString(b, rc.Region)
		b = binary.AppendVarint(b, rc.Likes)
	}
	for h, sums := range v.Decay {
		b = binary.AppendUvarint(b, uint64(len(sums)))
		prev := scoring.DecayEpoch(v.Clock, scoring.HalfLifeMS[h])
		for _, s := range sums {
			b = binary.AppendVarint(b, s.Epoch-prev)
			b = binary.AppendUvarint(b, s.Sum)
			prev = s.Epoch
		}
	}
	b = binary.AppendVarint(b, v.Seq)
	b = binary.AppendVarint(b, v.Clock-v.LastEmitTS)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.LastScore))
	var flags byte
	if v.Pending {
		flags |= 1
	}
	if v.bucketed {
		flags |= 2
	}
	b = append(b, flags)
	if !v.bucketed {
		b = appendEntryList(b, v.Entries, v.Clock)
	}
	b = binary.AppendVarint(b, v.LockFrom)
	b = binary.AppendVarint(b, v.LockTo)
	return appendString(b, string(v.Lockstep))
}

func (v *Video) unmarshal(b []byte) error {
	r := reader{b: b}
	v.Clock = r.varint()
	v.FirstLike = v.Clock - r.varint()
	v.Likes = r.varint()
	v.Unique = r.varint()
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		v.Regions = append(v.Regions, RegionCount{Region: r.string(), Likes: r.varint()})
	}
	for h := range v.Decay {
		n := r.uvarint()
		epoch := scoring.DecayEpoch(v.Clock, scoring.HalfLifeMS[h])
		for i := uint64(0); i < n && r.err == nil; i++ {
			epoch += r.varint()
			v.Decay[h] = append(v.Decay[h], scoring.DecaySum{Epoch: epoch, Sum: r.uvarint()})
		}
	}
	v.Seq = r.varint()
	v.LastEmitTS = v.Clock - r.varint()
	v.LastScore = math.Float64frombits(r.uint64())
	flags := r.byte()
	v.Pending = flags&1 != 0
	v.bucketed = flags&2 != 0
	v.dirtyFrom = noneDirty
	v.bucketsLo, v.bucketsHi, v.stored, v.many = 0, -1, [storedWords]uint64{}, nil
	if !v.bucketed {
		var err error
		if v.Entries, err = r.entryList(v.Entries, v.Clock); err != nil {
			return err
		}
	}
	v.LockFrom, v.LockTo = r.varint(), r.varint()
	if s := r.string(); s != "" {
		v.Lockstep = []byte(s)
	}
	return r.done()
}

// appendEntryList appends like times with their number and base, the
// base as its distance from ref, as entryList reads them.
func appendEntryList(b []byte, es []Entry, ref int64) []byte {
	base := ref
	if len(es) > 0 {
		base = es[0].TS
	}
	b = binary.AppendVarint(b, ref-base)
	b = binary.AppendUvarint(b, uint64(len(es)))
	return encodeEntries(b, es, base)
}

// entryList appends to dst the like times appendEntryList wrote with ref.
func (r *reader) entryList(dst []Entry, ref int64) ([]Entry, error) {
	base := ref - r.varint()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		return dst, errCorrupt
	}
	return decodeEntriesN(dst, r, base, int(n))
}

// encodeEntries appends entries as deltas from base (entries are sorted).
func encodeEntries(b []byte, es []Entry, base int64) []byte {
	prev := base
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.TS-prev))
		b = appendWeight(b, int64(e.Weight), e.Damp)
		prev = e.TS
	}
	return b
}

func decodeEntries(dst []Entry, b []byte, base int64) ([]Entry, error) {
	r := reader{b: b}
	prev := base
	for len(r.b) > 0 && r.err == nil {
		prev += int64(r.uvarint())
		dst = append(dst, r.entry(prev))
	}
	return dst, r.err
}

// entry reads a like time's weight, at time ts.
func (r *reader) entry(ts int64) Entry {
	w, d := splitWeight(r.uvarint())
	if w > math.MaxInt32 {
		r.fail()
	}
	return Entry{TS: ts, Weight: int32(w), Damp: d}
}

// decodeEntriesN appends n like times to dst, growing it, if it must, with
// room for a quarter more and one: a video is read back for a like that
// is then added, and an array of exactly its like times was copied again
// at once, to twice its size (6% of what B1 allocated, bench/RESULTS.md).
func decodeEntriesN(dst []Entry, r *reader, base int64, n int) ([]Entry, error) {
	prev := base
	if cap(dst)-len(dst) < n {
		dst = append(make([]Entry, 0, len(dst)+n+n/4+1), dst...)
	}
	for i := 0; i < n && r.err == nil; i++ {
		prev += int64(r.uvarint())
		dst = append(dst, r.entry(prev))
	}
	return dst, r.err
}

// Candidate is a video that may appear in trending lists.
type Candidate struct {
	Video    string
	Score    float64
	LastLike int64 // event time of its latest like
	Region   string
}

func (c *Candidate) marshal(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.Score))
	b = binary.AppendVarint(b, c.LastLike)
	return appendString(b, c.Region)
}

func (c *Candidate) unmarshal(b []byte) error {
	r := reader{b: b}
	c.Score = math.Float64frombits(r.uint64())
	c.LastLike = r.varint()
	c.Region = r.string()
	return r.done()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes a record; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() { r.err = errCorrupt; r.b = nil }

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uint64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) skipString() {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return
	}
	r.b = r.b[n:]
}

func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return errCorrupt
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
