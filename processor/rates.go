package processor

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// The account threshold that follows the traffic (Config.AccountThreshold
// 0). The threshold for likes in bucket b is scoring.AutoAccountThreshold
// of the accounts active in buckets b-13 .. b-2, each counted in each
// bucket it liked in by its likes in the hour before (the "recent" its
// weight read), weighed 1/k if it liked in k of that hour's buckets, so
// that an account counts about once an hour however often it likes (a
// farm liking every minute weighs no more than a person liking once): a
// histogram summed over every partition's account stage, so that the
// threshold, and every weight, is the same for any partitioning.
//
// A stage reports its histogram of bucket c to every stage once all of its
// likes of c are weighed: once its own watermark has closed c and it holds
// no like of c or before. A report says "through r" and carries the
// histograms of the buckets since its last. Each stage sums the reports;
// G, the smallest "through" of all stages, is the last bucket every stage
// has reported, and a like of bucket b is weighed once G >= b-2 (which
// also closes the buckets its own count reads). A held like of bucket b
// keeps its stage's reports at b-1, so G never passes it: G reaches the
// oldest held bucket minus one, which frees it, so nothing waits forever.
// Reports travel as the stages' other messages do (in process, or on the
// by-user topic), are numbered by "through" (one sent again after a crash
// is recognised), and are part of a stage's input, so its output stays a
// function of its input order.
//
// With a fixed threshold (Config.AccountThreshold above 0) the histograms
// are not counted, but the reports still go to every stage: they carry
// the key sketches of lockstep's popular keys (popular.go).

// ratesVersion is the version of a stage's stored rates and of reports.
// 2: reports carry key sketches (popular.go), and stages report to each
// other with a fixed threshold too.
const ratesVersion = 2

// rateReport is a stage's report: the buckets after its last report up to
// through are complete, with these histograms (empty buckets left out).
type rateReport struct {
	from    int32
	through int64
	hists   []bucketHist
}

type bucketHist struct {
	bucket int64
	h      scoring.RateHist
	keys   *keySketch // nil: no like of the bucket
}

// rates is a stage's part of the threshold that follows the traffic.
type rates struct {
	id       int32
	fixed    int64   // likes an hour; 0: follow the traffic
	reported int64   // this stage's reports are through this bucket
	peers    []int64 // every stage's last report ("through"); nil: fixed
	g        int64   // G: the smallest of peers (fixed: reported)
	own      map[int64]*scoring.RateHist
	global   map[int64]*scoring.RateHist
	cache    map[int64]int64
	out      []*rateReport // reports to send to the other stages

	// Key sketches (popular.go): this stage's of the buckets it has not
	// reported, and every stage's summed, kept for keep buckets before G.
	// They are stored one record a bucket; changed lists those to write
	// (or delete) at the next commit.
	ownKeys, globalKeys map[int64]*keySketch
	keep                int64
	changed             map[sketchRef]bool
	counted             int64 // the last bucket countKey marked changed since the last save
}

// sketchRef names a stored key sketch.
type sketchRef struct {
	global bool
	bucket int64
}

// newRates: keep is how many buckets before G a like's keys may be read
// from (a late like's too).
func newRates(id int32, fixed int64, partitions int, keep int64) *rates {
	r := &rates{id: id, fixed: fixed, reported: math.MinInt64, g: math.MinInt64, own: map[int64]*scoring.RateHist{},
		global: map[int64]*scoring.RateHist{}, cache: map[int64]int64{},
		ownKeys: map[int64]*keySketch{}, globalKeys: map[int64]*keySketch{}, keep: keep, changed: map[sketchRef]bool{},
		counted: math.MinInt64}
	r.peers = make([]int64, partitions)
	for i := range r.peers {
		r.peers[i] = math.MinInt64
	}
	return r
}

// closed is G: the last bucket every stage has reported.
func (r *rates) closed() int64 { return r.g }

// update recomputes G after a report.
func (r *rates) update() { r.g = slices.Min(r.peers) }

// threshold is the threshold in likes an hour for likes in bucket b.
func (r *rates) threshold(b int64) int64 {
	if r.fixed > 0 {
		return r.fixed
	}
	if t, ok := r.cache[b]; ok {
		return t
	}
	var sum scoring.RateHist
	for k := b - accountLag - accountBuckets + 1; k <= b-accountLag; k++ {
		if h := r.global[k]; h != nil {
			for i, n := range h {
				sum[i] += n
			}
		}
	}
	t := scoring.AutoAccountThreshold(&sum)
	if b-accountLag <= r.closed() {
		r.cache[b] = t // complete: it cannot change
	}
	return t
}

// count counts an account active in bucket b with recent likes in the
// hour before, in active of its buckets, unless b is reported already (a
// late like).
func (r *rates) count(b, recent int64, active int) {
	if r.fixed > 0 || b <= r.reported {
		return
	}
	h := r.own[b]
	if h == nil {
		h = new(scoring.RateHist)
		r.own[b] = h
	}
	h[scoring.RateBin(recent)] += scoring.RateUnit / uint64(max(active, 1))
}

// countKey counts a like of key in bucket b, the first of its account
// there if first, unless b is reported already (a late like).
func (r *rates) countKey(b int64, key uint32, first bool) {
	if b <= r.reported {
		return
	}
	s := r.ownKeys[b]
	if s == nil {
		s = new(keySketch)
		r.ownKeys[b] = s
	}
	s.add(key)
	if first {
		s.accounts++
	}
	if b != r.counted { // likes come mostly in one bucket: not a map write each
		r.changed[sketchRef{false, b}] = true
		r.counted = b
	}
}

// popularity is the popularity byte of key in bucket b, a bucket every
// stage has reported; 0 (no evidence) if its sketch is gone.
func (r *rates) popularity(b int64, key uint32) uint8 {
	return r.globalKeys[b].popularity(key)
}

// report reports this stage's buckets through upTo.
func (r *rates) report(upTo int64) {
	if upTo <= r.reported {
		return
	}
	rep := &rateReport{from: r.id, through: upTo}
	for b, h := range r.own {
		if b <= upTo {
			rep.hists = append(rep.hists, bucketHist{bucket: b, h: *h, keys: r.ownKeys[b]})
			delete(r.own, b)
		}
	}
	for b, s := range r.ownKeys {
		if b <= upTo {
			if !slices.ContainsFunc(rep.hists, func(x bucketHist) bool { return x.bucket == b }) {
				rep.hists = append(rep.hists, bucketHist{bucket: b, keys: s})
			}
			delete(r.ownKeys, b)
			r.changed[sketchRef{false, b}] = true
		}
	}
	slices.SortFunc(rep.hists, func(x, y bucketHist) int { return cmp.Compare(x.bucket, y.bucket) })
	r.reported = upTo
	r.absorb(rep)
	r.out = append(r.out, rep)
}

// absorb adds a report of any stage; one seen already is skipped.
func (r *rates) absorb(rep *rateReport) {
	if int(rep.from) >= len(r.peers) || rep.through <= r.peers[rep.from] {
		return
	}
	r.peers[rep.from] = rep.through
	r.update()
	for _, x := range rep.hists {
		if x.keys != nil {
			s := r.globalKeys[x.bucket]
			if s == nil {
				s = new(keySketch)
				r.globalKeys[x.bucket] = s
			}
			s.merge(x.keys)
			r.changed[sketchRef{true, x.bucket}] = true
		}
		if x.h == (scoring.RateHist{}) {
			continue
		}
		h := r.global[x.bucket]
		if h == nil {
			h = new(scoring.RateHist)
			r.global[x.bucket] = h
		}
		for i, n := range x.h {
			h[i] += n
		}
	}
	// No later like can read buckets before G-13, nor a threshold before
	// G-1 still be asked for but by a late like.
	g := r.closed()
	if g > math.MinInt64 {
		for b := range r.global {
			if b < g-accountKeep {
				delete(r.global, b)
			}
		}
		for b := range r.cache {
			if b < g-accountKeep {
				delete(r.cache, b)
			}
		}
		for b := range r.globalKeys {
			if b < g-r.keep {
				delete(r.globalKeys, b)
				r.changed[sketchRef{true, b}] = true
			}
		}
	}
}

// saveSketches writes the sketches changed since the last commit, and
// deletes those dropped.
func (r *rates) saveSketches(w *store.Writer) error {
	refs := make([]sketchRef, 0, len(r.changed))
	for ref := range r.changed {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(x, y sketchRef) int {
		return cmp.Or(cmp.Compare(boolInt(x.global), boolInt(y.global)), cmp.Compare(x.bucket, y.bucket))
	})
	var buf []byte
	for _, ref := range refs {
		m := r.ownKeys
		if ref.global {
			m = r.globalKeys
		}
		var err error
		if s := m[ref.bucket]; s != nil {
			buf = s.marshal(buf[:0])
			err = w.SetKeySketch(ref.global, ref.bucket, buf)
		} else {
			err = w.DeleteKeySketch(ref.global, ref.bucket)
		}
		if err != nil {
			return err
		}
	}
	clear(r.changed)
	r.counted = math.MinInt64
	return nil
}

// loadSketch loads a stored sketch.
func (r *rates) loadSketch(global bool, bucket int64, v []byte) error {
	s, rest, err := readSketch(v)
	if err == nil && len(rest) != 0 {
		err = errSketch
	}
	if err != nil {
		return fmt.Errorf("key sketch of bucket %d: %w", bucket, err)
	}
	if global {
		r.globalKeys[bucket] = s
	} else {
		r.ownKeys[bucket] = s
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func appendHist(b []byte, h *scoring.RateHist) []byte {
	n := 0
	for _, c := range h {
		if c > 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i, c := range h {
		if c > 0 {
			b = binary.AppendUvarint(b, uint64(i))
			b = binary.AppendUvarint(b, c)
		}
	}
	return b
}

func appendHists(b []byte, m map[int64]*scoring.RateHist) []byte {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendVarint(b, k)
		b = appendHist(b, m[k])
	}
	return b
}

// marshal encodes the stage's rates for its meta record.
func (r *rates) marshal(b []byte) []byte {
	b = append(b, ratesVersion)
	b = binary.AppendVarint(b, r.reported)
	b = binary.AppendUvarint(b, uint64(len(r.peers)))
	for _, p := range r.peers {
		b = binary.AppendVarint(b, p)
	}
	b = appendHists(b, r.own)
	return appendHists(b, r.global)
}

var errRates = errors.New("processor: corrupt account rates")

type ratesReader struct {
	b   []byte
	bad bool
}

func (d *ratesReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *ratesReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *ratesReader) hist(h *scoring.RateHist) {
	n := d.uvarint()
	for range n {
		i, c := d.uvarint(), d.uvarint()
		if d.bad || i >= scoring.RateBins {
			d.bad = true
			return
		}
		h[i] = c
	}
}

func (d *ratesReader) hists() map[int64]*scoring.RateHist {
	m := map[int64]*scoring.RateHist{}
	n := d.uvarint()
	for i := uint64(0); i < n && !d.bad; i++ {
		k := d.varint()
		h := new(scoring.RateHist)
		d.hist(h)
		m[k] = h
	}
	return m
}

// unmarshal loads stored rates (none: a fresh stage).
func (r *rates) unmarshal(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if b[0] != ratesVersion {
		return fmt.Errorf("%w: version %d, this binary reads %d", errRates, b[0], ratesVersion)
	}
	d := &ratesReader{b: b[1:]}
	r.reported = d.varint()
	n := d.uvarint()
	if d.bad || n != uint64(len(r.peers)) {
		return fmt.Errorf("%w: %d stages, this run has %d", errRates, n, len(r.peers))
	}
	for i := range n {
		r.peers[i] = d.varint()
	}
	r.own, r.global = d.hists(), d.hists()
	if d.bad || len(d.b) != 0 {
		return errRates
	}
	r.update()
	return nil
}

// appendReport encodes a report for the by-user topic.
func appendReport(b []byte, rep *rateReport) []byte {
	b = append(b, ratesVersion)
	b = binary.AppendVarint(b, int64(rep.from))
	b = binary.AppendVarint(b, rep.through)
	b = binary.AppendUvarint(b, uint64(len(rep.hists)))
	for i := range rep.hists {
		b = binary.AppendVarint(b, rep.hists[i].bucket)
		b = appendHist(b, &rep.hists[i].h)
		if s := rep.hists[i].keys; s != nil {
			b = append(b, 1)
			b = s.marshal(b)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func decodeReport(b []byte) (*rateReport, error) {
	if len(b) == 0 || b[0] != ratesVersion {
		return nil, errRates
	}
	d := &ratesReader{b: b[1:]}
	rep := &rateReport{from: int32(d.varint()), through: d.varint()}
	n := d.uvarint()
	for i := uint64(0); i < n && !d.bad; i++ {
		x := bucketHist{bucket: d.varint()}
		d.hist(&x.h)
		if d.bad || len(d.b) == 0 || d.b[0] > 1 {
			return nil, errRates
		}
		has := d.b[0] == 1
		d.b = d.b[1:]
		if has {
			var err error
			if x.keys, d.b, err = readSketch(d.b); err != nil {
				return nil, err
			}
		}
		rep.hists = append(rep.hists, x)
	}
	if d.bad || len(d.b) != 0 {
		return nil, errRates
	}
	return rep, nil
}
