package processor

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"unsafe"

	"github.com/viralityhq/virality/event"
)

// RunOptions tune Run.
type RunOptions struct {
	// Decoders is the number of goroutines decoding JSON beside the one
	// applying events; 0 decodes on the reading goroutine.
	Decoders int
	// Progress, if set, is called on the engine's goroutine after each
	// batch of records. It must not keep the Stats map.
	Progress func(Stats)
}

// Batch is a run of records of one source with their own copy of the
// bytes, so that the source can read ahead while earlier batches are
// decoded and applied, and their decoded events.
type Batch struct {
	Recs   []Record
	Events []event.Event
	Errs   []error
	arena  []byte
	hdrs   []Header // the records' headers, one slab
	done   chan struct{}
}

// Run feeds a source that is one stream (files, source 0) through a
// coordinator: one goroutine reads, Decoders goroutines decode, and the
// calling goroutine routes in input order while the partitions apply on
// the coordinator's workers. Records before the resume offset are
// skipped. At the end of a bounded source (io.EOF) it finishes: final
// records and a last commit.
func Run(ctx context.Context, g *Coordinator, src Source, opts RunOptions) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.PipeCreators(true); err != nil {
		return err
	}
	defer func() {
		if perr := g.PipeCreators(false); perr != nil {
			err = errors.Join(err, perr)
		}
	}()
	if err := g.FlyState(ctx, true); err != nil {
		return err
	}
	defer func() {
		if ferr := g.FlyState(context.WithoutCancel(ctx), false); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}()

	const depth = 8
	free := make(chan *Batch, depth+2)
	for range depth + 2 {
		free <- &Batch{done: make(chan struct{}, 1)}
	}
	ordered := make(chan *Batch, depth)
	work := make(chan *Batch, depth)
	var readErr error
	var wg sync.WaitGroup

	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		resume := g.NextOffset(0)
		var recs []Record
		for {
			var err error
			recs, err = src.Next(ctx, recs)
			if len(recs) > 0 {
				var b *Batch
				select {
				case b = <-free:
				case <-ctx.Done():
					readErr = ctx.Err()
					return
				}
				b.Fill(recs, resume)
				if opts.Decoders == 0 {
					b.Decode()
					b.done <- struct{}{}
				}
				ordered <- b
				if opts.Decoders > 0 {
					work <- b
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
		}
	}()
	for range opts.Decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				b.Decode()
				b.done <- struct{}{}
			}
		}()
	}

	var applyErr error
	for b := range ordered {
		<-b.done
		if applyErr == nil {
			if applyErr = g.TakeInput(ctx, 0, b); applyErr != nil {
				cancel()
			}
			if applyErr == nil && opts.Progress != nil {
				opts.Progress(g.Stats())
			}
		}
		free <- b
	}
	wg.Wait()
	if applyErr != nil {
		return applyErr
	}
	if readErr != nil {
		if errors.Is(readErr, context.Canceled) {
			// Stopped on purpose: keep what was done, so a restart resumes.
			return errors.Join(readErr, g.Commit(context.WithoutCancel(ctx)))
		}
		return readErr
	}
	return g.Finish(ctx)
}

// Fill copies the records at or after offset resume into the batch. It
// sizes its arrays once for what they take: grown by append from a
// recycled batch of another size, they were a fifth of all a catch-up
// allocated (bench/RESULTS.md).
func (b *Batch) Fill(recs []Record, resume int64) { b.fill(recs, resume, true) }

// Refer is Fill without a copy of the records' keys, values and header
// values: they must stay unchanged until the batch is filled again or
// dropped. The records and their headers are copied.
func (b *Batch) Refer(recs []Record) { b.fill(recs, 0, false) }

func (b *Batch) fill(recs []Record, resume int64, copyBytes bool) {
	b.Recs = b.Recs[:0]
	b.arena = b.arena[:0]
	clear(b.hdrs)
	b.hdrs = b.hdrs[:0]
	nh, nb, nr := 0, 0, 0
	for i := range recs {
		if recs[i].Offset < resume {
			continue
		}
		nb += len(recs[i].Key) + len(recs[i].Value)
		for _, h := range recs[i].Headers {
			nb += len(h.Value)
		}
		nh += len(recs[i].Headers)
		nr++
	}
	if !copyBytes {
		nb = 0
	}
	if cap(b.arena) < nb {
		b.arena = make([]byte, 0, nb+nb/4)
	}
	if cap(b.Recs) < nr {
		b.Recs = make([]Record, 0, nr+nr/4)
	}
	if copyBytes {
		for i := range recs {
			if recs[i].Offset < resume {
				continue
			}
			b.arena = append(b.arena, recs[i].Key...)
			b.arena = append(b.arena, recs[i].Value...)
			for _, h := range recs[i].Headers {
				b.arena = append(b.arena, h.Value...)
			}
		}
	}
	b.hdrs = slices.Grow(b.hdrs, nh)
	off := 0
	take := func(p []byte) []byte {
		if !copyBytes {
			return p
		}
		n := len(p)
		s := b.arena[off : off+n : off+n]
		off += n
		return s
	}
	for i := range recs {
		r := recs[i]
		if r.Offset < resume {
			continue
		}
		r.Key = take(r.Key)
		r.Value = take(r.Value)
		if len(r.Headers) > 0 {
			j := len(b.hdrs)
			for _, h := range r.Headers {
				b.hdrs = append(b.hdrs, Header{Key: h.Key, Value: take(h.Value)})
			}
			r.Headers = b.hdrs[j:len(b.hdrs):len(b.hdrs)]
		}
		b.Recs = append(b.Recs, r)
	}
	b.Events, b.Errs = b.Events[:0], b.Errs[:0]
}

// Bytes is about what the batch holds on the heap: its arena and the
// arrays of its records, headers, events and errors, at their capacity
// (a batch is reused, so what it once grew to stays).
func (b *Batch) Bytes() int64 {
	return int64(cap(b.arena)) + int64(cap(b.Recs))*int64(unsafe.Sizeof(Record{})) +
		int64(cap(b.hdrs))*int64(unsafe.Sizeof(Header{})) +
		int64(cap(b.Events))*int64(unsafe.Sizeof(event.Event{})) + int64(cap(b.Errs))*int64(unsafe.Sizeof(error(nil)))
}

// Decode decodes every record of the batch into Events and Errs. Until
// then they are empty: the records of the live service's internal topics
// are decoded by the coordinator, and their batches' arrays of events,
// sized at every fill, were 5% of all a catch-up allocated
// (bench/RESULTS.md).
func (b *Batch) Decode() {
	if cap(b.Events) < len(b.Recs) {
		n := len(b.Recs) + len(b.Recs)/4
		b.Events = make([]event.Event, n)
		b.Errs = make([]error, n)
	}
	b.Events = b.Events[:len(b.Recs)]
	b.Errs = b.Errs[:len(b.Recs)]
	for i := range b.Recs {
		b.Errs[i] = event.Decode(b.Recs[i].Value, b.Recs[i].Time, &b.Events[i])
	}
}
